"""ASGI middleware: API key on every route, and a bound on request body size.

Pure ASGI (not Starlette's BaseHTTPMiddleware) to keep the per-request cost down.
"""

from __future__ import annotations

import hmac
from typing import Any

import orjson

from dynasor_sgl.router.errors import ApiError

Scope = dict[str, Any]


async def send_error(send: Any, error: ApiError) -> None:
    body = orjson.dumps(error.body())
    await send(
        {
            "type": "http.response.start",
            "status": error.status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class Guard:
    """Refuse requests without the API key (401) or with a body over `max_body` bytes (413)."""

    def __init__(self, app: Any, max_body: int, api_key: str | None) -> None:
        self.app = app
        self.max_body = max_body
        self.expected = f"Bearer {api_key}".encode() if api_key else None

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        if self.expected is not None and not hmac.compare_digest(
            headers.get(b"authorization", b""), self.expected
        ):
            await send_error(send, ApiError(401, "missing or wrong API key", "unauthorized"))
            return
        too_large = ApiError(413, f"request body over {self.max_body} bytes", "too_large")
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            await send_error(send, too_large)
            return
        seen = 0
        started = False

        async def counting_receive() -> Any:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    raise too_large  # an ApiError: the app's handler answers 413
            return message

        async def tracking_send(message: Any) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except ApiError as exc:  # raised outside a route, where no handler caught it
            if not started:
                await send_error(send, exc)
