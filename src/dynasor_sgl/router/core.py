"""The router's engine: send a generate request to the right worker and enforce decisions.

Owns the path of one request (pick a worker, wait for admission, tag it with its program's rid
and priority, forward, account its tokens, retry once elsewhere if the worker died before
anything was streamed) and the enforcement of stop / trim (aborts in the workers). The HTTP
routes live in `app`; the decisions come from the pure policy through `programs`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson

from dynasor_sgl.policy import Action, Decision, Report
from dynasor_sgl.router.admission import Admission
from dynasor_sgl.router.config import RouterConfig
from dynasor_sgl.router.errors import ApiError, bad_request, conflict, not_found, unavailable
from dynasor_sgl.router.forward import Forwarder, Reply, WorkerFailed
from dynasor_sgl.router.metrics import Metrics
from dynasor_sgl.router.pool import Worker, WorkerPool
from dynasor_sgl.router.programs import RID_SEP, InFlight, Program, ProgramStatus, ProgramTable
from dynasor_sgl.scheduling.admission import slots_per_unit
from dynasor_sgl.scheduling.reports import Progress, settle, slack_units

logger = logging.getLogger(__name__)
MAX_ATTEMPTS = 2


class Router:
    def __init__(self, config: RouterConfig) -> None:
        self.config = config
        self.pool = WorkerPool(config.worker_urls, config.max_inflight_per_worker)
        self.admission = Admission(self.pool, config.scheduler())
        self.programs = ProgramTable(config.max_programs)
        self.forwarder = Forwarder(config.request_timeout_s)
        self.metrics = Metrics()
        self._plain_rids: dict[str, Worker] = {}  # client rids outside programs -> worker
        self._health_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.pool.check_all(self.forwarder.session)
        self._health_task = asyncio.create_task(self._health_loop())

    async def close(self) -> None:
        if self._health_task is not None:
            self._health_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._health_task
        await self.forwarder.close()

    async def _health_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.health_interval_s)
            try:
                await self.pool.check_all(self.forwarder.session)
                for w in self.pool.workers:
                    if not w.healthy:
                        self.admission.fail_worker(w, unavailable(f"worker {w.index} is down"))
                await self.reap()
            except Exception:  # the loop must outlive any one failure; logged and counted
                logger.exception("health check round failed")
                self.metrics.health_errors.inc()

    async def reap(self) -> int:
        """Ends programs idle past the TTL (their client went away) as `abandoned`."""
        idle = self.programs.idle(self.config.program_ttl_s)
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

    def _worker_down(self, worker: Worker, exc: Exception) -> None:
        self.pool.mark_down(worker, str(exc))
        self.admission.fail_worker(worker, unavailable(f"worker {worker.index} failed: {exc}"))

    # -- generate -------------------------------------------------------------------------

    async def generate(self, body: dict[str, Any], prog: Program | None, branch: str) -> Any:
        """Forward one /generate; returns a Reply, or an async byte iterator when streaming."""
        if prog is not None:
            self.programs.admit(prog, branch)
        for attempt in range(1, MAX_ATTEMPTS + 1):
            worker = self.pool.worker_for(prog.program_id if prog else None)
            if worker is None:
                raise unavailable("no healthy SGLang worker")
            try:
                return await self._generate_on(worker, body, prog, branch)
            except WorkerFailed as exc:
                self._worker_down(worker, exc)
                if attempt == MAX_ATTEMPTS or not self.pool.healthy():
                    raise unavailable(f"worker {worker.index} failed: {exc}") from exc
                logger.warning(
                    "retrying request of %s on another worker", prog.program_id if prog else "-"
                )
        raise AssertionError("unreachable")

    async def _generate_on(
        self, worker: Worker, body: dict[str, Any], prog: Program | None, branch: str
    ) -> Any:
        pid = prog.program_id if prog else None
        if prog is not None:
            self.admission.ensure_program(
                worker,
                prog.program_id,
                prog.remaining_units,
                prog.config.algorithm,
                prog.deadline_at,
            )
        max_new = _max_new_tokens(body)
        priority = await self.admission.acquire(worker, uuid.uuid4().hex, pid, max_new)
        entry: InFlight | None = None
        released = False
        try:
            if prog is not None:
                self.programs.admit(prog, branch)  # it may have stopped while we waited
                client_rid = body.get("rid") if isinstance(body.get("rid"), str) else None
                entry = self.programs.start(prog, branch, worker.index, max_new, client_rid)
                body["rid"] = entry.rid
            elif isinstance(body.get("rid"), str):
                self._plain_rids[body["rid"]] = worker
            if self.config.worker_priority:
                body["priority"] = priority
            payload = orjson.dumps(body)
            if body.get("stream"):
                resp = await self.forwarder.open_stream(worker, "/generate", payload)
                released = True  # from here on the stream's generator releases the slot
                return self._relay(worker, resp, prog, entry, body)
            reply = await self.forwarder.request(worker, "POST", "/generate", payload)
            self._account(prog, entry, reply)
            entry = None
            return reply
        finally:
            if not released:
                self._finish_request(worker, prog, entry, None, body)

    def _finish_request(
        self,
        worker: Worker,
        prog: Program | None,
        entry: InFlight | None,
        meta: dict[str, Any] | None,
        body: dict[str, Any],
    ) -> None:
        self.admission.release(worker)
        if prog is not None and entry is not None:
            self.programs.end(prog, entry, meta)
            self._settle(prog)
        rid = body.get("rid")
        if prog is None and isinstance(rid, str):
            self._plain_rids.pop(rid, None)

    def _account(self, prog: Program | None, entry: InFlight | None, reply: Reply) -> None:
        if prog is None or entry is None:
            return
        meta = None
        if reply.status == 200:
            with contextlib.suppress(Exception):
                meta = reply.json().get("meta_info")
        self._count_tokens(meta)
        self.programs.end(prog, entry, meta)
        self._settle(prog)

    def _count_tokens(self, meta: dict[str, Any] | None) -> None:
        if not meta:
            return
        for kind in ("prompt_tokens", "completion_tokens", "cached_tokens"):
            self.metrics.tokens.labels(kind.removesuffix("_tokens")).inc(int(meta.get(kind) or 0))

    async def _relay(
        self,
        worker: Worker,
        resp: Any,
        prog: Program | None,
        entry: InFlight | None,
        body: dict[str, Any],
    ) -> AsyncIterator[bytes]:
        tail = b""
        try:
            async for chunk in self.forwarder.iter_stream(worker, resp):
                tail = (tail + chunk)[-262144:]
                yield chunk
        except WorkerFailed as exc:
            self._worker_down(worker, exc)
            err = unavailable(f"worker {worker.index} failed while streaming: {exc}")
            yield b"data: " + orjson.dumps(err.body()) + b"\n\n"
        except ApiError as exc:  # e.g. the worker timed out mid-stream
            yield b"data: " + orjson.dumps(exc.body()) + b"\n\n"
        finally:
            meta = _last_meta(tail)
            if prog is not None:
                self._count_tokens(meta)
            self._finish_request(worker, prog, entry, meta, body)

    # -- decisions ------------------------------------------------------------------------

    def slack(self, prog: Program) -> int:
        """Knob units the program could add now: free request slots on its worker (none while
        anything waits), less those reserved for other programs' expansion, in its units."""
        worker = self.pool.pinned(prog.program_id) or self.pool.least_loaded()
        if worker is None:
            return 0
        return slack_units(self.admission.queue, worker.index, prog.config.algorithm)

    async def report(
        self, prog: Program, report: Report, auto_slack: bool = False
    ) -> tuple[Decision, int]:
        """Decide on a report and enforce it; returns the decision and requests aborted.
        Reports of one program are applied one at a time, in the order they arrived. With
        `auto_slack` the report's slack is the free capacity the router sees, held for the
        program while the policy decides, so concurrent reports do not count it twice."""
        async with prog.lock:
            self.programs.check_open(prog)
            per_unit = slots_per_unit(prog.config.algorithm)
            if auto_slack:
                report = dataclasses.replace(report, slack=self.slack(prog))
                self.admission.reserve(prog.program_id, report.slack * per_unit)
            try:
                decision = await asyncio.to_thread(prog.policy.decide, report)
                self.programs.check_open(prog)  # an abort or the reaper may have ended it
            finally:
                self.admission.reserve(prog.program_id, 0)
            return await self._apply(prog, report, decision)

    async def _apply(
        self, prog: Program, report: Report, decision: Decision
    ) -> tuple[Decision, int]:
        # The scheduler learns the program's own tokens per knob unit (SJF) and its pace (the
        # deadline order and stop) from what it generated since its last report.
        progress = Progress(
            prog.program_id,
            prog.config.algorithm,
            prog.config.cap,
            prog.step,
            report.step,
            prog.completion_tokens - prog.tokens_at_report,
            prog.deadline_at,
        )
        prog.tokens_at_report = prog.completion_tokens
        settled = settle(
            self.admission.queue,
            progress,
            decision,
            self.admission.clock(),
            self.config.deadline_stop,
        )
        decision = settled.decision
        self.programs.apply(prog, report, decision)
        self.metrics.decisions.labels(str(decision.action)).inc()
        aborted = 0
        if decision.action is Action.STOP:
            aborted = await self.abort_program(prog, "stop")
            self.metrics.program_ended(prog)
            self._settle(prog)
        else:
            if settled.reserve_slots:
                self.admission.reserve(prog.program_id, settled.reserve_slots)
            if decision.trim:
                entries = self.programs.rids_to_abort(prog, set(decision.trim))
                aborted = await self._abort_entries(entries, "trim")
        return decision, aborted

    async def end_program(self, prog: Program, end: Callable[[], None], cause: str) -> int:
        """Run `end` (finish or stop it in the table), abort what it still has in flight, and
        count it as ended once; returns the requests aborted."""
        was_running = prog.status is ProgramStatus.RUNNING
        end()
        aborted = await self.abort_program(prog, cause)
        if was_running:
            self.metrics.program_ended(prog)
        self._settle(prog)
        return aborted

    def _settle(self, prog: Program) -> None:
        """Counts a program's saving in the metrics once its last request is back."""
        saved = prog.settle()
        if saved:
            self.metrics.tokens_saved.inc(saved)

    async def abort_program(self, prog: Program, cause: str) -> int:
        """Abort every in-flight and waiting request of a program in the workers now."""
        error = conflict(
            f"program {prog.program_id} was stopped ({prog.exit_reason})", "program_stopped"
        )
        self.admission.fail_program(prog.program_id, error)
        aborted = await self._abort_entries(self.programs.rids_to_abort(prog), cause)
        self.admission.forget_program(prog.program_id)
        if cause == "abandoned":
            self.metrics.programs_abandoned.inc()
        self.pool.unpin(prog.program_id)
        return aborted

    async def _abort_entries(self, entries: list[InFlight], cause: str) -> int:
        workers = {w.index: w for w in self.pool.workers}
        results = await asyncio.gather(
            *(self.forwarder.abort(workers[e.worker], e.rid) for e in entries)
        )
        self.metrics.aborts.labels(cause).inc(sum(results))
        return sum(results)

    async def abort_request(self, body: dict[str, Any]) -> list[Reply | BaseException]:
        """SGLang's /abort_request. `abort_all` goes to every worker. A rid aborts what it
        names: a plain request's rid, a program request's own or client-chosen rid, or a
        prefix `<program>` / `<program>::<branch>` (all its requests in flight); each goes to
        the worker running it. A rid that names nothing in flight is a 404."""
        if not self.pool.healthy():
            raise unavailable("no healthy SGLang worker")
        rid = body.get("rid")
        if not isinstance(rid, str):
            return await self.forwarder.fan_out(
                self.pool.healthy(), "POST", "/abort_request", orjson.dumps(body)
            )
        targets = self._abort_targets(rid)
        if not targets:
            raise not_found(f"no request in flight with rid {rid!r}")
        return list(
            await asyncio.gather(
                *(
                    self.forwarder.request(
                        worker, "POST", "/abort_request", orjson.dumps({**body, "rid": worker_rid})
                    )
                    for worker, worker_rid in targets
                ),
                return_exceptions=True,
            )
        )

    def _abort_targets(self, rid: str) -> list[tuple[Worker, str]]:
        plain = self._plain_rids.get(rid)
        if plain is not None:
            return [(plain, rid)]
        prog = self.programs.find(rid.split(RID_SEP)[0])
        if prog is None:
            return []
        named = [
            e
            for e in prog.inflight.values()
            if rid in (e.rid, e.client_rid, prog.program_id) or e.rid.startswith(rid + RID_SEP)
        ]
        return [(self.pool.workers[e.worker], e.rid) for e in named]


def _max_new_tokens(body: dict[str, Any]) -> int:
    """The request's max_new_tokens (SGLang's default 128 when unset or a batch's list)."""
    params = body.get("sampling_params")
    value = params.get("max_new_tokens") if isinstance(params, dict) else None
    return value if isinstance(value, int) and value > 0 else 128


def _last_meta(tail: bytes) -> dict[str, Any] | None:
    """meta_info of the last `data: {...}` event in a stream's tail, if any."""
    for line in reversed(tail.split(b"\n")):
        if line.startswith(b"data: {"):
            with contextlib.suppress(Exception):
                meta = orjson.loads(line[6:]).get("meta_info")
                return meta if isinstance(meta, dict) else None
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
