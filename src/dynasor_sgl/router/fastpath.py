"""The door of every POST that reaches a worker, served as raw ASGI.

`/generate`, `/programs/<id>/generate`, `/v1/completions` and `/v1/chat/completions` are served
here without FastAPI's routing and response objects (they cost a few hundred microseconds a
request); everything else goes on to the FastAPI app. Each request goes through
`Router.forward` (or, for a chat completion that asks for early exit, through `chat`). A client
that disconnects before its answer is complete has its request cancelled, which aborts it in
the worker and frees its slot; unexpected errors answer the same JSON 500 as the app.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncGenerator, Coroutine
from typing import Any

from dynasor_sgl import protocol
from dynasor_sgl.router import chat, dialect
from dynasor_sgl.router.core import Router, parse_body
from dynasor_sgl.router.errors import ApiError, bad_request, internal_error
from dynasor_sgl.router.forward import Reply
from dynasor_sgl.router.middleware import send_error
from dynasor_sgl.router.table import Program
from dynasor_sgl.router.validation import (
    is_batch,
    is_parallel,
    validate_generate,
    validate_openai,
)

logger = logging.getLogger(__name__)
BRANCH_HEADER = protocol.BRANCH_HEADER.lower()  # as ASGI hands headers over
_PROGRAM_PATH = re.compile(r"/programs/([^/]+)/generate")
_JSON = [(b"content-type", b"application/json")]
_SSE = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
_ENDPOINTS = {
    dialect.NATIVE: "generate",
    dialect.COMPLETIONS: "completions",
    dialect.CHAT: "chat_completions",
}
Result = Reply | AsyncGenerator[bytes, None]


async def run_generate(
    router: Router, raw: bytes, program_id: str | None, branch: str | None
) -> Result:
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
    if prog is not None and (is_batch(body) or is_parallel(body)):
        # SGLang names the sequences of a batch `{rid}_{i}` and those of n > 1 with fresh
        # uuids, so the program's rid could neither stop nor trim them, and one slot would
        # hold many: each sequence goes as a request of its own.
        raise bad_request(
            "a program's /generate carries one prompt and one sample (n = 1) per request: "
            "send each sample as its own request (one per branch)"
        )
    return await router.forward(dialect.NATIVE, body, prog, branch or "main")


async def run_openai(router: Router, path: str, raw: bytes) -> Result:
    """One OpenAI completion or chat completion; a chat that asks for early exit runs as a
    chain-of-thought program in the router."""
    body = parse_body(raw)
    validate_openai(body)
    if path == dialect.CHAT:
        plan = chat.plan_of(body, router.config.default_effort)
        if plan is not None:
            return await chat.complete(router, body, plan)
        body.pop("dynasor", None)
    return await router.forward(path, body)


async def run_post(
    router: Router, path: str, raw: bytes, program_id: str | None, branch: str | None
) -> Result:
    """Any POST that reaches a worker; counted in the requests metric by route and status."""
    if path in dialect.OPENAI_ROUTES:
        result = await run_openai(router, path, raw)
    else:
        result = await run_generate(router, raw, program_id, branch)
    status = str(result.status) if isinstance(result, Reply) else "stream"
    router.metrics.requests.labels(_ENDPOINTS.get(path, "generate"), status).inc()
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
        target = _target(scope)
        if target is None:
            await self.app(scope, receive, send)
            return
        if not target[0]:
            await send_error(send, ApiError(405, "Method Not Allowed", "http_error"))
            return
        try:
            raw = await _read(receive)
        except ApiError as exc:
            await send_error(send, exc)
            return
        await _until_disconnect(self._respond(send, target, raw), receive, scope["path"])

    async def _respond(
        self, send: Any, target: tuple[str, str | None, str | None], raw: bytes
    ) -> None:
        path, program_id, branch = target
        try:
            result = await run_post(self.router, path, raw, program_id, branch)
        except ApiError as exc:
            await send_error(send, exc)
            return
        except Exception as exc:  # the same answer as the app's handler gives
            logger.exception("unhandled error: %s", exc)
            await send_error(send, internal_error(exc))
            return
        if isinstance(result, Reply):
            headers = [(k.lower().encode(), v.encode()) for k, v in result.headers.items()]
            start = {"type": "http.response.start", "status": result.status}
            await send({**start, "headers": headers or _JSON})
            await send({"type": "http.response.body", "body": result.body})
            return
        try:
            await send({"type": "http.response.start", "status": 200, "headers": _SSE})
            async for chunk in result:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        except OSError as exc:  # sending to the client failed: it is gone
            logger.info("stream to the client broke: %s", exc)
        finally:
            await result.aclose()  # frees its slot and aborts what it left running


def _target(scope: dict[str, Any]) -> tuple[str, str | None, str | None] | None:
    """(route, program id, branch) of a POST this door serves, else None."""
    if scope["type"] != "http":
        return None
    path: str = scope["path"]
    m = None if path in dialect.WORKER_POSTS else _PROGRAM_PATH.fullmatch(path)
    if m is None and path not in dialect.WORKER_POSTS:
        return None
    if scope["method"] != "POST":
        return "", None, None  # answered 405
    if m is None:
        return path, None, None
    raw = dict(scope["headers"]).get(BRANCH_HEADER.encode())
    return dialect.NATIVE, m.group(1), raw.decode("latin-1") if raw else None


async def _until_disconnect(work: Coroutine[Any, Any, None], receive: Any, path: str) -> None:
    """Run `work` in this task, cancelled if the client goes away first (one watcher task:
    the cheapest way to hear ASGI's http.disconnect while the response is being made)."""
    me = asyncio.current_task()
    assert me is not None
    state = {"working": True, "gone": False}

    async def watch() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        if state["working"]:  # not the disconnect some servers report once the response is done
            state["gone"] = True
            logger.info("client of %s went away; cancelling its request", path)
            me.cancel()

    watcher = asyncio.ensure_future(watch())
    try:
        await work
    except asyncio.CancelledError:
        if not state["gone"]:
            raise
        me.uncancel()
    finally:
        state["working"] = False
        watcher.cancel()


async def _read(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ApiError(400, "client disconnected before sending the body", "invalid_request")
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)
