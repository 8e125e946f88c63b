"""The /generate entry: `run_generate` (plain or program-scoped), and the hot path that serves
POST /generate as raw ASGI, without FastAPI's routing and response objects (they cost a few
hundred microseconds a request). The FastAPI routes call the same `run_generate`, so behaviour
is identical; every other request goes on to the FastAPI app.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

from dynasor_sgl import protocol
from dynasor_sgl.router.core import Router, parse_body
from dynasor_sgl.router.errors import ApiError, bad_request
from dynasor_sgl.router.forward import Reply
from dynasor_sgl.router.middleware import send_error
from dynasor_sgl.router.programs import Program
from dynasor_sgl.router.validation import is_batch, validate_generate

BRANCH_HEADER = protocol.BRANCH_HEADER.lower()  # as ASGI hands headers over
_PROGRAM_PATH = re.compile(r"/programs/([^/]+)/generate")
_JSON = [(b"content-type", b"application/json")]
_SSE = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]


async def run_generate(
    router: Router, raw: bytes, program_id: str | None, branch: str | None
) -> Reply | AsyncIterator[bytes]:
    """One /generate, plain or program-scoped: a Reply, or the chunks of a stream."""
    body = parse_body(raw)
    validate_generate(body)
    prog: Program | None = None
    if program_id is not None:
        prog = router.programs.get(program_id)
    elif isinstance(body.get("rid"), str):
        owner = router.programs.owner_of(body["rid"])
        if owner is not None:
            prog, branch = owner
    if prog is not None and is_batch(body):
        raise bad_request("a program's /generate carries one prompt per request (one per branch)")
    result = await router.generate(body, prog, branch or "main")
    status = str(result.status) if isinstance(result, Reply) else "stream"
    router.metrics.requests.labels("generate", status).inc()
    return result


class GenerateFastPath:
    def __init__(self, app: Any, router: Router) -> None:
        self.app = app
        self.router = router

    @property
    def state(self) -> Any:
        """The FastAPI app's state (holds the Router), as if this were the app."""
        return self.app.state

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        program_id = branch = None
        if path != "/generate":
            m = _PROGRAM_PATH.fullmatch(path)
            if m is None:
                await self.app(scope, receive, send)
                return
            program_id = m.group(1)
            raw = dict(scope["headers"]).get(BRANCH_HEADER.encode())
            branch = raw.decode("latin-1") if raw else None
        try:
            result = await run_generate(self.router, await _read(receive), program_id, branch)
        except ApiError as exc:
            await send_error(send, exc)
            return
        if isinstance(result, Reply):
            headers = [(k.lower().encode(), v.encode()) for k, v in result.headers.items()]
            await send(
                {
                    "type": "http.response.start",
                    "status": result.status,
                    "headers": headers or _JSON,
                }
            )
            await send({"type": "http.response.body", "body": result.body})
            return
        await send({"type": "http.response.start", "status": 200, "headers": _SSE})
        async for chunk in result:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})


async def _read(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ApiError(400, "client disconnected before sending the body", "invalid_request")
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)
