"""Carrying decisions out: the report → decision step of a program, stop and trim, and aborts.

Owns the order of a program's reports (one at a time), the scheduler's view of its pace, the
aborts a stop or trim needs in the workers, SGLang's `/abort_request` by rid, and the saving
counted once a program has settled. The decision itself comes from the pure policy through
`programs`; the forwarding of requests is `core`'s.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any

import orjson

from dynasor_sgl.policy.machine import Action, Decision, Report
from dynasor_sgl.router.config import RouterConfig
from dynasor_sgl.router.errors import conflict, not_found, unavailable
from dynasor_sgl.router.forward import Forwarder, Reply
from dynasor_sgl.router.metrics import Metrics
from dynasor_sgl.router.pool import Worker, WorkerPool
from dynasor_sgl.router.table import RID_SEP, InFlight, Program, ProgramStatus, ProgramTable
from dynasor_sgl.router.waiting import Admission
from dynasor_sgl.scheduling.admission import slots_per_unit
from dynasor_sgl.scheduling.reports import Progress, settle, slack_units

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class Enforcer:
    """Decisions and aborts over the router's parts (shared with `core.Router`).

    plain_rids: rids of requests outside programs in flight (the client's, else the
      router's) -> the worker running them and the rid they run under there.
    """

    config: RouterConfig
    pool: WorkerPool
    admission: Admission
    programs: ProgramTable
    forwarder: Forwarder
    metrics: Metrics
    plain_rids: dict[str, tuple[Worker, str]] = dataclasses.field(default_factory=dict)

    def settle(self, prog: Program) -> None:
        """Counts a program's saving in the metrics once its last request is back."""
        saved = prog.settle()
        if saved:
            self.metrics.tokens_saved.inc(saved)

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
        program while the policy decides, so concurrent reports do not count it twice. The
        aborts a decision needs run after the program's lock is let go (a hung worker must
        not hold up the program's next report)."""
        async with prog.lock:
            self.programs.check_open(prog)
            per_unit = slots_per_unit(prog.config.algorithm)
            if auto_slack:
                report = dataclasses.replace(report, slack=self.slack(prog))
                self.admission.reserve(prog.program_id, report.slack * per_unit)
            try:
                started = time.perf_counter()
                with self.metrics.deciding.track_inprogress():
                    decision = await asyncio.to_thread(prog.policy.decide, report)
                self.metrics.decision_seconds.labels(prog.config.algorithm).observe(
                    time.perf_counter() - started
                )
                self.programs.check_open(prog)  # an abort or the reaper may have ended it
            finally:
                self.admission.reserve(prog.program_id, 0)
            decision, entries = self._apply(prog, report, decision)
        if decision.action is Action.STOP:
            aborted = await self.abort_entries(entries, "stop")
            self.metrics.program_ended(prog)
            self.settle(prog)
            return decision, aborted
        return decision, await self.abort_entries(entries, "trim")

    def _apply(
        self, prog: Program, report: Report, decision: Decision
    ) -> tuple[Decision, list[InFlight]]:
        """Apply a decision to the table and admission; returns it (a grant past the deadline
        becomes a stop) and the requests it needs aborted in the workers."""
        # The scheduler learns the program's own tokens per knob unit (SJF) and its pace (the
        # deadline order and stop) from what it generated since its last report.
        progress = Progress(
            prog.program_id,
            prog.config.algorithm,
            prog.config.cap,
            prog.used,
            report.used,
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
        if decision.action is Action.STOP:
            return decision, self._end_admission(prog, "stop")
        if settled.reserve_slots:
            self.admission.reserve(prog.program_id, settled.reserve_slots)
        return decision, self.programs.rids_to_abort(prog, set(decision.trim))

    async def trim_branch(self, prog: Program, entry: InFlight, reason: str) -> None:
        """Cut one branch short mid-generation (confidence trimming): refuse its later
        requests, count it, abort its request in the worker."""
        prog.trimmed.add(entry.branch)
        self.metrics.branches_trimmed.labels(reason).inc()
        logger.info("program %s: branch %s trimmed (%s)", prog.program_id, entry.branch, reason)
        await self.abort_entries([entry], reason)

    async def end_program(self, prog: Program, end: Callable[[], None], cause: str) -> int:
        """Run `end` (finish or stop it in the table), abort what it still has in flight, and
        count it as ended once; returns the requests aborted."""
        was_running = prog.status is ProgramStatus.RUNNING
        end()
        aborted = await self.abort_program(prog, cause)
        if was_running:
            self.metrics.program_ended(prog)
        self.settle(prog)
        return aborted

    async def abort_program(self, prog: Program, cause: str) -> int:
        """Abort every in-flight and waiting request of a program in the workers now."""
        return await self.abort_entries(self._end_admission(prog, cause), cause)

    def _end_admission(self, prog: Program, cause: str) -> list[InFlight]:
        """Fail the program's waiting requests and forget it in admission and the pool;
        returns its requests in flight, for the caller to abort in the workers."""
        error = conflict(
            f"program {prog.program_id} was stopped ({prog.exit_reason})", "program_stopped"
        )
        self.admission.fail_program(prog.program_id, error)
        self.admission.forget_program(prog.program_id)
        if cause == "abandoned":
            self.metrics.programs_abandoned.inc()
        self.pool.unpin(prog.program_id)
        return self.programs.rids_to_abort(prog)

    async def abort_entries(self, entries: list[InFlight], cause: str) -> int:
        if not entries:
            return 0
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
                self.pool.healthy(),
                "POST",
                "/abort_request",
                orjson.dumps(body),
                self.forwarder.abort_timeout,
            )
        targets = self._abort_targets(rid)
        if not targets:
            raise not_found(f"no request in flight with rid {rid!r}")
        return list(
            await asyncio.gather(
                *(
                    self.forwarder.request(
                        worker,
                        "POST",
                        "/abort_request",
                        orjson.dumps({**body, "rid": worker_rid}),
                        self.forwarder.abort_timeout,
                    )
                    for worker, worker_rid in targets
                ),
                return_exceptions=True,
            )
        )

    def _abort_targets(self, rid: str) -> list[tuple[Worker, str]]:
        """What `rid` names, as (worker, rid in that worker): a request's own rid (a plain
        one, or the rid a client sent on any route) first; else a program's rids, all of
        them or those under a prefix (`p`, `p::b`, `p::b::3`; router rids end in RID_SEP)."""
        plain = self.plain_rids.get(rid)
        if plain is not None:
            return [plain]
        own = self.programs.by_client_rid(rid)
        if own:
            return [(self.pool.workers[e.worker], e.rid) for _, e in own]
        prog = self.programs.find(rid.split(RID_SEP)[0])
        if prog is None:
            return []
        prefix = rid.removesuffix(RID_SEP) + RID_SEP
        named = [
            e
            for e in prog.inflight.values()
            if rid in (e.rid, prog.program_id) or e.rid.startswith(prefix)
        ]
        return [(self.pool.workers[e.worker], e.rid) for e in named]
