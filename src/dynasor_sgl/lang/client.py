"""A small synchronous client for the router's program endpoints (register, report, finish).

The HTTP side of `dynasor_sgl.lang`; generation requests go through `DynasorEndpoint`. One
`httpx.Client` per router, shared by threads (httpx clients are thread-safe).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import httpx

from dynasor_sgl.lang.errors import BackendError
from dynasor_sgl.protocol import API_KEY_ENV, DEFAULT_ROUTER_URL

logger = logging.getLogger(__name__)

DEFAULT_ROUTER = DEFAULT_ROUTER_URL


def _timeout(read: float | None) -> httpx.Timeout:
    return httpx.Timeout(connect=10.0, read=read, write=30.0, pool=None)


class RouterClient:
    """Program endpoints of one router. `api_key` defaults to $DYNASOR_SGL_API_KEY."""

    def __init__(
        self, url: str = DEFAULT_ROUTER, api_key: str | None = None, timeout_s: float | None = 60.0
    ) -> None:
        self.url = url.rstrip("/")
        self.api_key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        # Generation requests may run for minutes: no read timeout on that client.
        self.http = httpx.Client(headers=headers, timeout=_timeout(timeout_s))
        self.generate_http = httpx.Client(
            headers=headers,
            timeout=_timeout(None),
            limits=httpx.Limits(max_connections=256, max_keepalive_connections=64),
        )

    def close(self) -> None:
        self.http.close()
        self.generate_http.close()

    def __enter__(self) -> RouterClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        """One JSON call; an error status or an unreachable router raises `BackendError`."""
        try:
            reply = self.http.request(method, self.url + path, json=body)
        except httpx.HTTPError as exc:
            raise BackendError(f"router {self.url} unreachable: {exc}") from exc
        return check(reply)

    def model_info(self) -> dict[str, Any]:
        return dict(self.request("GET", "/get_model_info"))

    def register(
        self,
        algorithm: str,
        policy: Mapping[str, Any] | None = None,
        program_id: str | None = None,
        deadline_s: float | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"algorithm": algorithm, "policy": dict(policy or {})}
        if program_id is not None:
            body["program_id"] = program_id
        if deadline_s is not None:
            body["deadline_s"] = deadline_s
        return dict(self.request("POST", "/programs", body))

    def report(self, program_id: str, report: Mapping[str, Any]) -> dict[str, Any]:
        return dict(self.request("POST", f"/programs/{program_id}/report", report))

    def finish(self, program_id: str, answer: str | None) -> dict[str, Any]:
        return dict(self.request("POST", f"/programs/{program_id}/finish", {"answer": answer}))

    def abort(self, program_id: str) -> dict[str, Any]:
        return dict(self.request("POST", f"/programs/{program_id}/abort"))

    def show(self, program_id: str) -> dict[str, Any]:
        return dict(self.request("GET", f"/programs/{program_id}"))


def check(reply: httpx.Response) -> Any:
    """The JSON body of a 2xx reply; otherwise the fitting `BackendError`."""
    try:
        body = reply.json()
    except ValueError:
        body = None
    if reply.is_success:
        if body is None:
            raise BackendError(f"HTTP {reply.status_code}: reply is not JSON", reply.status_code)
        return body
    raise BackendError.from_response(reply.status_code, body, reply.text[:500])
