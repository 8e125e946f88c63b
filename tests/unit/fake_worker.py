"""A fake SGLang worker: a real aiohttp server on 127.0.0.1 speaking SGLang's native API.

Enough of the API for the router's unit tests: /health, /get_model_info, /get_server_info,
/generate (plain and `stream: true` SSE), /abort_request, /flush_cache and the OpenAI routes.
Generation "produces" one token every `token_delay` seconds (after `first_delay`) up to
`max_new_tokens` (capped by `token_cap`), honours the request's `rid`, and ends early with
finish_reason abort when /abort_request names a prefix of its rid (as SGLang matches). With
`script` set, a generation's text is `script(prompt)` one word a token, ending with
finish_reason stop when the words run out. A native request with `return_logprob` and
`top_logprobs_num` k gets SGLang's `output_top_logprobs` (cumulative in a stream, entries
`[logprob, token_id, null]`): the first k of `logprobs(prompt, position)` when set, else a
confident default. Streams carry `output_ids` (token i is id i) and are cumulative, or per
chunk with `incremental` (SGLang's `--incremental-streaming-output`); an abort's last event
carries the whole text and logprobs and only the last id, as SGLang's does. The OpenAI routes
generate the same way (one chat or completion choice, with usage, streamed as OpenAI chunks),
or answer `openai_status` with an error when it is not 200. Everything it saw
is kept for the tests to inspect.
"""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import web

T = TypeVar("T")
KEEP_ALIVE_S = 5.0  # SGLang's idle keep-alive (see `start`)


def _error(status: int, message: str) -> web.Response:
    # SGLang's own error shape.
    body = json.dumps({"error": {"message": message}})
    return web.Response(status=status, text=body, content_type="application/json")


@dataclass
class _Running:
    rid: str
    max_new_tokens: int
    abort: asyncio.Event = field(default_factory=asyncio.Event)
    words: list[str] | None = None  # the scripted completion, if any
    prompt: str = ""
    top_k: int = 0  # top logprobs per position asked for (0: none)

    def text(self, done: int) -> str:
        return " tok" * done if self.words is None else "".join(" " + w for w in self.words[:done])


class FakeWorker:
    """Start with `await worker.start()`, stop with `await worker.stop()` (same event loop)."""

    def __init__(
        self, token_delay: float = 0.002, token_cap: int | None = None, first_delay: float = 0
    ) -> None:
        self.token_delay = token_delay
        self.token_cap = token_cap
        self.first_delay = first_delay  # seconds before /generate answers anything
        self.healthy = True
        self.running: dict[str, _Running] = {}
        self.generate_bodies: list[dict[str, Any]] = []
        self.aborts: list[dict[str, Any]] = []
        self.finished: dict[str, dict[str, Any]] = {}  # rid -> meta_info
        self.flushes = 0
        self.script: Callable[[str], str] | None = None
        self.logprobs: Callable[[str, int], list[float]] | None = None  # (prompt, position)
        self.incremental = False  # streams send each chunk's text, ids and logprobs only
        self.openai_status = 200
        self.abort_gate: asyncio.Event | None = None  # set: /abort_request waits for it
        self.die_mid_event: int | None = None  # a native stream's connection drops at token n
        self.openai_bodies: list[dict[str, Any]] = []
        self.server_args: dict[str, Any] = {}  # more /get_server_info fields (reasoning_parser)
        self.url = ""
        self._runner: web.AppRunner | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self, port: int = 0) -> str:
        """Listen on `port` (0: a free one; pass the old port to come back after stop)."""
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/health", self._health)
        app.router.add_get("/health_generate", self._health)
        app.router.add_get("/get_model_info", self._model_info)
        app.router.add_get("/get_server_info", self._server_info)
        app.router.add_get("/server_info", self._server_info)
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/generate", self._generate)
        app.router.add_post("/abort_request", self._abort)
        app.router.add_post("/flush_cache", self._flush)
        app.router.add_post("/v1/completions", self._openai)
        app.router.add_post("/v1/chat/completions", self._openai)
        # SGLang serves with uvicorn's timeout_keep_alive=SGLANG_TIMEOUT_KEEP_ALIVE, 5 s by
        # default (sglang/srt/entrypoints/http_server.py, sglang/srt/environ.py): a connection
        # idle that long is closed by the worker, and a client reusing it must reconnect.
        self._runner = web.AppRunner(
            app, access_log=None, shutdown_timeout=0.1, keepalive_timeout=KEEP_ALIVE_S
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port, reuse_address=True)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    async def stop(self, crash: bool = False) -> None:
        """Shut down; with `crash`, in-flight requests are cut off mid-way, not finished."""
        if not crash:
            for run in self.running.values():
                run.abort.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def wait_running(self, n: int, timeout: float = 5.0) -> None:
        """Wait until `n` generate requests are in progress here."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while len(self.running) < n:
            if loop.time() > end:
                raise AssertionError(f"expected {n} running requests, have {len(self.running)}")
            await asyncio.sleep(0.005)

    # -- routes -------------------------------------------------------------------------------

    async def _health(self, _: web.Request) -> web.Response:
        return web.Response(status=200 if self.healthy else 503)

    async def _model_info(self, _: web.Request) -> web.Response:
        return web.json_response(
            {"model_path": "fake/model", "tokenizer_path": "fake/model", "is_generation": True}
        )

    async def _server_info(self, _: web.Request) -> web.Response:
        info = {"version": "fake", "max_total_num_tokens": 4096, "reasoning_parser": None}
        return web.json_response({**info, **self.server_args})

    async def _models(self, _: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "fake/model"}]})

    async def _flush(self, _: web.Request) -> web.Response:
        self.flushes += 1
        return web.Response(text="Cache flushed.")

    async def _openai(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "bad json")
        self.openai_bodies.append(body)
        if self.openai_status != 200:
            return _error(self.openai_status, "the fake refuses this request")
        chat = request.path.endswith("/chat/completions")
        prompt = json.dumps(body.get("messages") if chat else body.get("prompt"))
        rid = body.get("rid") if isinstance(body.get("rid"), str) else uuid.uuid4().hex
        max_new = body.get("max_completion_tokens") or body.get("max_tokens") or 16
        run = self._start(rid, prompt, int(max_new))
        if body.get("stream"):
            return await self._openai_stream(request, run, chat)
        done = await self._drain(rid, run)
        return web.json_response(_openai_reply(run, chat, done, len(prompt.split())))

    async def _openai_stream(
        self, request: web.Request, run: _Running, chat: bool
    ) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        done = sent = 0
        try:
            async for done in self._tokens(run):
                delta = run.text(done)[len(run.text(sent)) :]
                sent = done
                piece = {"delta": {"content": delta}} if chat else {"text": delta}
                event = {"id": run.rid, "choices": [{"index": 0, **piece, "finish_reason": None}]}
                await resp.write(b"data: " + json.dumps(event).encode() + b"\n\n")
        finally:
            self.running.pop(run.rid, None)
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    async def _abort(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "bad json")
        self.aborts.append(body)
        if self.abort_gate is not None:  # a hung worker: the abort waits until the gate opens
            await self.abort_gate.wait()
        rid = body.get("rid") if isinstance(body, dict) else None
        if isinstance(body, dict) and body.get("abort_all"):
            targets = list(self.running.values())
        elif isinstance(rid, str) and rid in self.running:
            # As SGLang 0.5.15 does: `TokenizerManager.abort_request`
            # (sglang/srt/managers/tokenizer_manager.py) drops an rid it does not track (so the
            # parent rid of `n > 1` children aborts nothing), and `Scheduler.abort_request`
            # (sglang/srt/managers/scheduler.py) aborts every request whose rid *starts with*
            # the one given (`req.rid.startswith(recv_req.rid)`).
            targets = [run for key, run in self.running.items() if key.startswith(rid)]
        else:
            targets = []
        for run in targets:
            run.abort.set()
        return web.Response(status=200)

    async def _generate(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "request body is not JSON")
        if not isinstance(body, dict):
            return _error(400, "request body must be an object")
        self.generate_bodies.append(body)
        if self.first_delay:
            await asyncio.sleep(self.first_delay)
        prompts = self._prompts(body)
        params = body.get("sampling_params")
        params = params if isinstance(params, dict) else {}
        n = params.get("n")
        n = n if isinstance(n, int) and n > 1 else 1
        ids = body.get("input_ids")
        nested = isinstance(ids, list) and bool(ids) and isinstance(ids[0], list)
        single = n == 1 and not isinstance(body.get("text"), list) and not nested
        rids = self._rids(body.get("rid"), len(prompts), n, single)
        max_new = params.get("max_new_tokens")
        max_new = int(max_new) if isinstance(max_new, int | float) and max_new >= 0 else 128
        texts = body.get("text") if isinstance(body.get("text"), list) else [body.get("text")]
        texts = [str(t or "") for t in texts] if len(texts) == len(prompts) else [""] * len(prompts)
        # SGLang expands each prompt into its n samples, in order (prompt 0's first).
        prompts = [p for p in prompts for _ in range(n)]
        texts = [t for t in texts for _ in range(n)]
        top = body.get("top_logprobs_num") if body.get("return_logprob") is True else 0
        top_k = top if isinstance(top, int) and top > 0 else 0
        if body.get("stream") is True and single:
            return await self._stream(request, rids[0], prompts[0], texts[0], max_new, top_k)
        runs = [
            self._run(r, p, t, max_new, top_k) for r, p, t in zip(rids, prompts, texts, strict=True)
        ]
        outs = await asyncio.gather(*runs)
        payload: Any = outs[0] if single else outs
        return web.Response(text=json.dumps(payload), content_type="application/json")

    @staticmethod
    def _rids(rid: Any, batch: int, n: int, single: bool) -> list[str]:
        """The rids SGLang 0.5.15 runs a request's sequences under. One prompt, n = 1: the
        rid as sent (a fresh uuid without one). A batch: `GenerateReqInput._normalize_rid`
        (sglang/srt/managers/io_struct.py) names its requests `{rid}_{i}`, or takes a list of
        rids as it is. n > 1: `TokenizerManager._handle_batch_request`
        (sglang/srt/managers/tokenizer_manager.py) gives every sample a fresh uuid
        (`regenerate_rid`) and forgets the parent's rid, so no rid the client knows names or
        aborts them."""
        if single:
            return [rid if isinstance(rid, str) else uuid.uuid4().hex]
        if n > 1:
            return [uuid.uuid4().hex for _ in range(batch * n)]
        if isinstance(rid, str):
            return [f"{rid}_{i}" for i in range(batch)]
        if isinstance(rid, list) and len(rid) == batch and all(isinstance(r, str) for r in rid):
            return list(rid)
        return [uuid.uuid4().hex for _ in range(batch)]

    # -- generation ---------------------------------------------------------------------------

    @staticmethod
    def _prompts(body: dict[str, Any]) -> list[int]:
        """Prompt length (in fake tokens) of each prompt in the request."""
        text, ids = body.get("text"), body.get("input_ids")
        if isinstance(text, list):
            return [len(str(t).split()) for t in text] or [0]
        if isinstance(text, str):
            return [len(text.split())]
        if isinstance(ids, list) and ids and isinstance(ids[0], list):
            return [len(i) if isinstance(i, list) else 0 for i in ids]
        return [len(ids) if isinstance(ids, list) else 0]

    def _start(self, rid: str, prompt: str, max_new: int) -> _Running:
        words = self.script(prompt).split() if self.script is not None else None
        if words is not None:
            max_new = min(max_new, len(words))
        if self.token_cap is not None:
            max_new = min(max_new, self.token_cap)
        run = self.running[rid] = _Running(rid, max_new, words=words, prompt=prompt)
        return run

    def _tops(self, run: _Running, done: int) -> list[list[Any]]:
        """SGLang's output_top_logprobs of the first `done` positions."""
        tops = []
        for position in range(done):
            if self.logprobs is not None:
                values = self.logprobs(run.prompt, position)
            else:
                values = [-0.01] + [-6.0] * 19
            tops.append([[v, 1000 + j, None] for j, v in enumerate(values[: run.top_k])])
        return tops

    def _meta(
        self, run: _Running, prompt: int, done: int, reason: dict[str, Any] | None
    ) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "id": run.rid,
            "prompt_tokens": prompt,
            "completion_tokens": done,
            "cached_tokens": 0,
            "finish_reason": reason,
        }
        if run.top_k:
            tops = self._tops(run, done)
            meta["output_token_logprobs"] = [t[0] for t in tops]
            meta["output_top_logprobs"] = tops
        return meta

    def _chunk(
        self, run: _Running, prompt: int, sent: int, done: int, reason: dict[str, Any] | None
    ) -> dict[str, Any]:
        """One stream event after `done` tokens, `sent` of them in earlier events."""
        meta = self._meta(run, prompt, done, reason)
        if not self.incremental:
            return {"text": run.text(done), "output_ids": list(range(done)), "meta_info": meta}
        for key in ("output_token_logprobs", "output_top_logprobs"):
            if key in meta:
                meta[key] = meta[key][sent:]
        text = run.text(done)[len(run.text(sent)) :]
        return {"text": text, "output_ids": list(range(sent, done)), "meta_info": meta}

    async def _tokens(self, run: _Running) -> Any:
        """Yields the number of tokens produced so far; stops early when aborted."""
        for i in range(1, run.max_new_tokens + 1):
            if run.abort.is_set():
                return
            if self.token_delay:
                try:
                    await asyncio.wait_for(run.abort.wait(), self.token_delay)
                    return
                except TimeoutError:
                    pass
            yield i

    async def _drain(self, rid: str, run: _Running) -> int:
        """Generate `run` to its end; the number of tokens it produced."""
        done = 0
        try:
            async for done in self._tokens(run):  # noqa: B007 (the last value is the count)
                pass
        finally:
            self.running.pop(rid, None)
        return done

    async def _run(
        self, rid: str, prompt: int, text: str, max_new: int, top_k: int = 0
    ) -> dict[str, Any]:
        run = self._start(rid, text, max_new)
        run.top_k = top_k
        done = await self._drain(rid, run)
        reason = self._reason(run, done)
        meta = self._meta(run, prompt, done, reason)
        self.finished[rid] = meta
        return {"text": run.text(done), "meta_info": meta}

    @staticmethod
    def _reason(run: _Running, done: int) -> dict[str, Any]:
        if run.abort.is_set() and done < run.max_new_tokens:
            return {"type": "abort", "message": "Abort request " + run.rid}
        if run.words is not None and done == len(run.words):
            return {"type": "stop", "matched": None}
        return {"type": "length", "length": done}

    async def _stream(
        self, request: web.Request, rid: str, prompt: int, text: str, max_new: int, top_k: int = 0
    ) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        run = self._start(rid, text, max_new)
        run.top_k = top_k
        done = sent = 0
        try:
            async for done in self._tokens(run):
                event = self._chunk(run, prompt, sent, done, None)
                sent = done
                data = b"data: " + json.dumps(event).encode() + b"\n\n"
                if done == self.die_mid_event:  # half an event, then the connection drops
                    await resp.write(data[: len(data) // 2])
                    await asyncio.sleep(0.05)  # let the half reach the client first
                    assert request.transport is not None
                    request.transport.abort()
                    return resp
                await resp.write(data)
        finally:
            self.running.pop(rid, None)
        reason = self._reason(run, done)
        if reason["type"] == "abort":  # SGLang's abort event: everything so far, the last id
            event = {"text": run.text(done), "meta_info": self._meta(run, prompt, done, reason)}
            event["output_ids"] = [done - 1] if done else []
        else:
            event = self._chunk(run, prompt, sent, done, reason)
        self.finished[rid] = event["meta_info"]
        await resp.write(b"data: " + json.dumps(event).encode() + b"\n\n")
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp


def _openai_reply(run: _Running, chat: bool, done: int, prompt: int) -> dict[str, Any]:
    reason = "length" if done == run.max_new_tokens and run.words is None else "stop"
    text = run.text(done)
    choice = {"message": {"role": "assistant", "content": text}} if chat else {"text": text}
    return {
        "id": run.rid,
        "object": "chat.completion" if chat else "text_completion",
        "model": "fake/model",
        "choices": [{"index": 0, **choice, "finish_reason": reason}],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": done,
            "total_tokens": prompt + done,
        },
    }


class LoopThread:
    """An event loop in a daemon thread, for tests that keep servers up across many calls."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        fut: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return fut.result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()
