"""Errors the router answers with: always JSON, always a status that fits."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An error for the client: `{"error": {"message", "type", "param", "code"}}` with
    `status`, OpenAI's error object: `type` and `code` name the kind of error (a string, as
    OpenAI's `code` is, never the HTTP status, which is the response's), `param` the request
    field at fault when one is (else null)."""

    def __init__(
        self, status: int, message: str, kind: str = "invalid_request", param: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind
        self.param = param

    def body(self) -> dict[str, Any]:
        error = {"message": self.message, "type": self.kind, "param": self.param}
        return {"error": {**error, "code": self.kind}}


def bad_request(message: str, param: str | None = None) -> ApiError:
    return ApiError(400, message, "invalid_request", param)


def not_found(message: str) -> ApiError:
    return ApiError(404, message, "not_found")


def conflict(message: str, kind: str = "conflict") -> ApiError:
    return ApiError(409, message, kind)


def unavailable(message: str) -> ApiError:
    return ApiError(503, message, "worker_unavailable")


def bad_gateway(message: str) -> ApiError:
    return ApiError(502, message, "worker_error")


def internal_error(exc: BaseException) -> ApiError:
    """What an unexpected failure answers (logged where it is caught), on every route."""
    return ApiError(500, f"internal error: {type(exc).__name__}", "internal")
