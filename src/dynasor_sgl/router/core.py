"""The router's engine: the one path every POST to a worker takes, and the router's parts.

Owns the path of one request, native (`/generate`) or OpenAI (`/v1/...`): pick a worker, wait
for admission, tag it with a rid (its program's, or one of the router's own so it can be
aborted) and a priority, forward, account its tokens, retry once elsewhere if the worker died
before anything was streamed, and abort it in the worker when its client goes away. Decisions
and aborts are `enforce`'s; the HTTP routes live in `app` and `fastpath`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import uuid
from collections.abc import AsyncGenerator, Callable, Coroutine
from typing import Any

import aiohttp
import orjson

from dynasor_sgl.router import dialect, watch
from dynasor_sgl.router.config import RouterConfig
from dynasor_sgl.router.enforce import Enforcer
from dynasor_sgl.router.errors import ApiError, bad_request, unavailable
from dynasor_sgl.router.forward import Forwarder, Reply, WorkerFailed
from dynasor_sgl.router.metrics import Metrics
from dynasor_sgl.router.pool import Worker, WorkerPool
from dynasor_sgl.router.served_model import ServedModel
from dynasor_sgl.router.table import InFlight, Program, ProgramTable
from dynasor_sgl.router.waiting import Admission

logger = logging.getLogger(__name__)
MAX_ATTEMPTS = 2
_NO_RID = object()  # the client sent no rid


class Router:
    def __init__(self, config: RouterConfig) -> None:
        if not config.worker_urls:
            raise ValueError("at least one worker URL is required")
        self.config = config
        self.pool = WorkerPool(config.worker_urls, config.max_inflight_per_worker)
        self.admission = Admission(self.pool, config.scheduler(), limiter=config.limiter())
        self.programs = ProgramTable(config.max_programs)
        self.forwarder = Forwarder(config.request_timeout_s)
        self.metrics = Metrics()
        self.metrics.watch_limits(lambda: {w.index: w.slots.limit for w in self.pool.workers})
        self.enforcer = Enforcer(
            config, self.pool, self.admission, self.programs, self.forwarder, self.metrics
        )
        self._plain_rids = self.enforcer.plain_rids  # client rids outside programs -> worker
        self.served_model = ServedModel()  # what an early-exit chat needs of the model
        self._health_task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()  # aborts of requests left behind
        # The decisions, for the routes (one implementation, in `enforce`).
        self.report = self.enforcer.report
        self.end_program = self.enforcer.end_program
        self.abort_program = self.enforcer.abort_program
        self.abort_request = self.enforcer.abort_request
        self.slack = self.enforcer.slack

    async def start(self) -> None:
        await self.pool.check_all(self.forwarder.session)
        self._health_task = asyncio.create_task(self._health_loop())

    async def close(self) -> None:
        if self._health_task is not None:
            self._health_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._health_task
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        await self.forwarder.close()

    async def _health_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.health_interval_s)
            try:
                await self.pool.check_all(self.forwarder.session)
                for w in self.pool.workers:
                    if not w.healthy:
                        self.admission.evacuate(w, unavailable(f"worker {w.index} is down"))
                await self.reap()
            except Exception:  # the loop must outlive any one failure; logged and counted
                logger.exception("health check round failed")
                self.metrics.health_errors.inc()

    async def reap(self) -> int:
        """Ends programs idle past the TTL (their client went away) as `abandoned`. A program
        with a request waiting for a slot is not idle: its client is there, the router is not."""
        idle = [
            prog
            for prog in self.programs.idle(self.config.program_ttl_s)
            if not self.admission.queue.waiting(prog.program_id)
        ]
        for prog in idle:
            logger.warning(
                "program %s idle for %.0f s: abandoned", prog.program_id, self.config.program_ttl_s
            )
            await self.end_program(
                prog, functools.partial(self.programs.stop, prog, "abandoned"), "abandoned"
            )
        return len(idle)

    def any_worker(self) -> Worker:
        worker = self.pool.least_loaded()
        if worker is None:
            raise unavailable("no healthy SGLang worker")
        return worker

    async def worker_info(self, path: str) -> Any:
        """A worker's answer to one of SGLang's read-only info routes (`path`, e.g.
        /get_model_info) as JSON, or None when it did not answer 200."""
        reply = await self.forwarder.request(self.any_worker(), "GET", path)
        return reply.json() if reply.status == 200 else None

    def _worker_down(self, worker: Worker, exc: Exception) -> None:
        self.pool.mark_down(worker, str(exc))
        self.admission.evacuate(worker, unavailable(f"worker {worker.index} failed: {exc}"))

    # -- the forwarding path --------------------------------------------------------------

    async def forward(
        self, path: str, body: dict[str, Any], prog: Program | None = None, branch: str = "main"
    ) -> Reply | AsyncGenerator[bytes, None]:
        """Forward one POST (`path` one of `dialect.WORKER_POSTS`); returns a Reply, or an
        async byte iterator when the worker streams."""
        if prog is not None:
            self.programs.admit(prog, branch)
        watched = watch.prepare(prog, path, body)  # a program that trims by confidence
        sent_rid = body.get("rid", _NO_RID)  # `_tag` replaces it; a retry starts from it again
        for attempt in range(1, MAX_ATTEMPTS + 1):
            worker = self.pool.worker_for(prog.program_id if prog else None)
            if worker is None:
                raise unavailable("no healthy SGLang worker")
            if sent_rid is _NO_RID:
                body.pop("rid", None)
            else:
                body["rid"] = sent_rid
            try:
                return await self._forward_on(worker, path, body, prog, branch, watched)
            except WorkerFailed as exc:
                self._worker_down(exc.worker, exc)
                if attempt == MAX_ATTEMPTS or not self.pool.available():
                    raise unavailable(f"worker {exc.worker.index} failed: {exc}") from exc
                logger.warning(
                    "retrying request of %s on another worker", prog.program_id if prog else "-"
                )
        raise AssertionError("unreachable")

    async def _forward_on(
        self,
        worker: Worker,
        path: str,
        body: dict[str, Any],
        prog: Program | None,
        branch: str,
        watched: watch.Watch | None = None,
    ) -> Reply | AsyncGenerator[bytes, None]:
        pid = prog.program_id if prog else None
        if prog is not None:
            self.admission.ensure_program(
                worker, pid or "", prog.remaining_units, prog.config.algorithm, prog.deadline_at
            )
        max_new = dialect.max_new_tokens(path, body)
        # The slot may be granted on another worker (the program moved while this waited):
        # the request then goes to, and is released on, the worker whose slot it holds.
        worker, priority = await self.admission.acquire(worker, uuid.uuid4().hex, pid, max_new)
        granted_at = self.admission.clock()  # what the worker's limiter measures from
        entry: InFlight | None = None
        finished = False
        try:
            entry = self._tag(worker, path, body, prog, branch, max_new)
            if self.config.worker_priority:
                body["priority"] = priority
            payload = orjson.dumps(body)
            rename = _renaming(entry) if prog is None else None
            if not body.get("stream"):
                reply = _renamed(
                    await self.forwarder.request(worker, "POST", path, payload), rename
                )
            else:
                resp = await self.forwarder.open_stream(worker, path, payload)
                if resp.status == 200:
                    finished = True  # from here on the stream's generator finishes it
                    done = functools.partial(
                        self._finish_request, worker, path, prog, body, entry, granted_at=granted_at
                    )
                    chunks = self._relay(worker, path, resp, body.get("rid"), done, rename)
                    if watched is None or prog is None or entry is None:
                        return chunks
                    trim = functools.partial(self._trim_later, prog, entry)
                    events = watched.relay(chunks, trim)
                    return events if watched.client_stream else await watched.collect(events)
                reply = await self.forwarder.read_reply(worker, resp)  # an error, as it is
            finished = True
            tokens = _reply_tokens(path, reply)
            self._finish_request(worker, path, prog, body, entry, tokens, granted_at)
            return reply
        except asyncio.CancelledError:  # the client went away: stop the work in the worker
            if not finished:  # else the stream's generator does
                self._abort_later(worker, body.get("rid"))
            raise
        finally:
            if not finished:
                self._finish_request(worker, path, prog, body, entry, None)

    def _tag(
        self,
        worker: Worker,
        path: str,
        body: dict[str, Any],
        prog: Program | None,
        branch: str,
        max_new: int,
    ) -> InFlight | None:
        """Give the request the rid it runs under in the worker: its program's, or one of
        the router's own for one generation (so a client that goes away can be aborted, and a
        client's rid, perhaps a prefix of another's, never reaches SGLang's abort-by-prefix;
        the reply shows the client's rid again), or the client's for a batch or n > 1."""
        client_rid = body.get("rid") if isinstance(body.get("rid"), str) else None
        if prog is not None:
            self.programs.admit(prog, branch)  # it may have stopped while we waited
            entry = self.programs.start(prog, branch, worker.index, max_new, client_rid)
            body["rid"] = entry.rid
            return entry
        sent = body.pop("rid", None)
        if dialect.taggable(path, body):
            body["rid"] = uuid.uuid4().hex
            entry = InFlight(body["rid"], "", worker.index, max_new, client_rid)
        else:
            if sent is not None:
                body["rid"] = sent
            if client_rid is None:
                return None
            entry = InFlight(client_rid, "", worker.index, max_new)
        self._plain_rids[client_rid or entry.rid] = (worker, entry.rid)
        return entry

    def _finish_request(
        self,
        worker: Worker,
        path: str,
        prog: Program | None,
        body: dict[str, Any],
        entry: InFlight | None,
        tokens: dict[str, Any] | None,
        granted_at: float | None = None,
    ) -> None:
        """The request ended: its slot is released (a completion, one with token counts,
        teaches the worker's limiter and credits its program's service), its tokens counted
        and its program's books settled."""
        completed = int((tokens or {}).get("completion_tokens") or 0)
        self.admission.release(
            worker,
            granted_at if tokens is not None else None,
            completed,
            prog.program_id if prog is not None else None,
        )
        for kind in ("prompt_tokens", "completion_tokens", "cached_tokens"):
            count = int((tokens or {}).get(kind) or 0)
            if count:
                self.metrics.tokens.labels(kind.removesuffix("_tokens")).inc(count)
        if prog is not None and entry is not None:
            self.programs.end(prog, entry, tokens)
            self.enforcer.settle(prog)
        if prog is None and entry is not None:
            key = entry.client_rid or entry.rid
            if self._plain_rids.get(key, (None, None))[1] == entry.rid:
                del self._plain_rids[key]

    async def _relay(
        self,
        worker: Worker,
        path: str,
        resp: aiohttp.ClientResponse,
        rid: Any,
        done: Callable[[dict[str, Any] | None], None],
        rename: tuple[bytes, bytes] | None = None,
    ) -> AsyncGenerator[bytes, None]:
        tail = b""
        partial = b""  # the start of an event the worker has not finished sending
        left_running = True  # until the worker ended the stream (or died)
        try:
            async for chunk in self.forwarder.iter_stream(worker, resp):
                tail = dialect.keep_tail(tail, chunk)
                whole, partial = _whole_events(partial + chunk if partial else chunk)
                if whole:
                    yield whole.replace(*rename) if rename else whole
            left_running = False
            if partial:  # the worker's last bytes, as it sent them
                yield partial
        except WorkerFailed as exc:
            left_running = False
            self._worker_down(worker, exc)
            err = unavailable(f"worker {worker.index} failed while streaming: {exc}")
            yield b"data: " + orjson.dumps(err.body()) + b"\n\n"  # a partial event is dropped
        except ApiError as exc:  # e.g. the worker timed out mid-stream
            yield b"data: " + orjson.dumps(exc.body()) + b"\n\n"
        finally:
            if left_running:  # the client went away, or timed out: free the worker of it
                self._abort_later(worker, rid)
            done(dialect.last_tokens(path, tail))

    def _trim_later(self, prog: Program, entry: InFlight) -> None:
        """Trim a branch whose confidence fell below its program's threshold (the abort runs
        beside the stream, which goes on until the worker ends it)."""
        self._background_task(self.enforcer.trim_branch(prog, entry, watch.LOW_CONFIDENCE))

    def _background_task(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _abort_later(self, worker: Worker, rid: Any) -> None:
        """Abort `rid` in the worker without waiting (called where awaiting is not safe)."""
        if isinstance(rid, str):
            self._background_task(self._abort_left(worker, rid))

    async def _abort_left(self, worker: Worker, rid: str) -> None:
        if await self.forwarder.abort(worker, rid):
            self.metrics.aborts.labels("client_gone").inc()
            logger.info("request %s aborted in worker %d: its client went away", rid, worker.index)


def _renaming(entry: InFlight | None) -> tuple[bytes, bytes] | None:
    """(the router's rid, the client's as it reads inside a JSON string) of a plain request
    the router renamed; None if it kept the client's rid or there was none."""
    if entry is None or entry.client_rid is None or entry.client_rid == entry.rid:
        return None
    return entry.rid.encode(), orjson.dumps(entry.client_rid)[1:-1]


def _renamed(reply: Reply, rename: tuple[bytes, bytes] | None) -> Reply:
    """The reply as the client expects it: its own rid where the worker echoed the router's
    (a 32-digit random hex that appears nowhere else)."""
    if rename is None:
        return reply
    return Reply(reply.status, reply.body.replace(*rename), reply.headers)


def _whole_events(data: bytes) -> tuple[bytes, bytes]:
    """`data` split after its last complete SSE event (events end in a blank line): what may
    go to the client now, and the start of an event still to come. The router only ever
    relays whole events, so an error event it adds mid-stream is never glued to half of one."""
    end = data.rfind(b"\n\n")
    if end < 0:
        return b"", data
    return data[: end + 2], data[end + 2 :]


def _reply_tokens(path: str, reply: Reply) -> dict[str, Any] | None:
    if reply.status != 200:
        return None
    try:
        return dialect.tokens_of(path, reply.json())
    except orjson.JSONDecodeError:
        return None


def parse_body(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise bad_request(f"request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise bad_request("request body must be a JSON object")
    return body


__all__ = ["ApiError", "Router", "parse_body"]
