"""The serving side of one simulated system: the workers' engines and, for a router system,
the router's own decision code on the virtual clock.

A router system runs what `dynasor-sgl router` runs: `WorkerPool` pinning (a program stays on
its worker, spilling only under overload), the `AdmissionQueue` (per-worker bound, the
scheduling order, gangs, SGLang priorities, expansion reservations), and the report step
(auto slack held while the policy decides, then `scheduling.reports.settle`). SGLang alone
(`direct`) sends every request straight to the engine at the default priority, a program
pinned to the least-loaded engine when it starts. Every request spends
`profile.request_overhead_s` outside the engine before it gets there (client, HTTP), and
`router_overhead_s` more behind a router, whose own CPU work (on a shared CPU) makes each
step `router_cpu_s` longer per request admitted.
Knows nothing about traces or records (`sim.program` drives it).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from dynasor_sgl.policy.machine import Action, Decision, ProgramPolicy, Report
from dynasor_sgl.router.pool import WorkerPool
from dynasor_sgl.scheduling import Order, SchedulerConfig
from dynasor_sgl.scheduling.admission import AdmissionQueue, Grant, slots_per_unit
from dynasor_sgl.scheduling.limiter import LimiterConfig
from dynasor_sgl.scheduling.reports import Progress, settle, slack_units
from dynasor_sgl.sim.engine import Engine
from dynasor_sgl.sim.loop import EventLoop
from dynasor_sgl.sim.profile import Profile
from dynasor_sgl.sim.queue import Finished, QueueOrder, Request

logger = logging.getLogger(__name__)

OnDone = Callable[[Finished], None]


class Served(Protocol):
    """What the cluster needs to know of a program (`sim.program.SimProgram`)."""

    program_id: str
    used: int
    completion_tokens: int
    tokens_at_report: int
    deadline_at: float | None
    policy: ProgramPolicy

    @property
    def algorithm(self) -> str: ...

    @property
    def cap(self) -> int: ...


@dataclass(frozen=True)
class Setup:
    """How one system serves. scheduling: the router's order (None: SGLang alone). bound: the
    router's in-flight bound per worker (where an adaptive limit starts). limiter: how each
    worker's limit is kept (None: fixed at bound); the router's own `InflightLimiter`, fed
    every request that leaves an engine. engine_order: the workers' waiting-queue order
    (SGLang's --schedule-policy). worker_priority: the router passes its priorities to the
    engines. deadline_stop: the router stops programs that can no longer meet their
    deadline."""

    scheduling: str | None
    bound: int = 12
    engine_order: QueueOrder = QueueOrder.FCFS
    worker_priority: bool = False
    deadline_stop: bool = False
    limiter: LimiterConfig | None = None


class Cluster:
    """Engines plus, for a router system, the router's pool, admission and report step."""

    def __init__(
        self,
        loop: EventLoop,
        profile: Profile,
        workers: int,
        setup: Setup,
        speed: Sequence[tuple[float, float]] = (),
    ) -> None:
        """speed: every engine's speed schedule (`Engine`); empty: the profile's."""
        self.loop = loop
        self.profile = profile
        self.setup = setup
        if setup.scheduling is not None and profile.router_cpu_s:
            per_new = profile.per_new_request_s + profile.router_cpu_s
            profile = dataclasses.replace(profile, per_new_request_s=per_new)
        self.engines = [Engine(profile, setup.engine_order, speed) for _ in range(workers)]
        self._done: dict[str, tuple[OnDone, float]] = {}  # rid -> (callback, sent at)
        self._waiting: dict[str, Request] = {}  # rid -> a request waiting for admission
        self._where: dict[str, int] = {}  # rid -> worker, while in an engine
        self._granted: dict[str, float] = {}  # rid -> when it went to its engine
        self._pins: dict[str, int] = {}  # direct: program -> engine
        self.waits: dict[str, float] = {}  # rid -> seconds outside the engine
        router = profile.router_overhead_s if setup.scheduling is not None else 0.0
        self._overhead = profile.request_overhead_s + router
        self.pool: WorkerPool | None = None
        self.queue: AdmissionQueue | None = None
        if setup.scheduling is not None:
            self.pool = WorkerPool(tuple(f"sim://{i}" for i in range(workers)), setup.bound)
            for w in self.pool.workers:
                w.healthy = True
            sched = SchedulerConfig(order=Order(setup.scheduling))
            slots = [w.slots for w in self.pool.workers]
            self.queue = AdmissionQueue(slots, setup.bound, sched, setup.limiter)

    # -- requests -------------------------------------------------------------------------

    def send(self, prog: Served, req: Request, on_done: OnDone) -> None:
        """Send a request of `prog`; `on_done` gets it back when it ends (or is aborted)."""
        self._done[req.rid] = (on_done, self.loop.now)
        self.loop.at(self.loop.now + self._overhead, self._arrive, prog, req)

    def _arrive(self, prog: Served, req: Request) -> None:
        now = self.loop.now
        if self.queue is None or self.pool is None:
            w = self._pins.get(prog.program_id)
            if w is None:
                w = min(range(len(self.engines)), key=lambda i: self.engines[i].load())
                self._pins[prog.program_id] = w
            self._to_engine(req, w)
            return
        worker = self.pool.worker_for(prog.program_id)
        assert worker is not None, "simulated workers never go down"
        grants = self.queue.ensure_program(
            worker.index,
            prog.program_id,
            now,
            max(0, prog.cap - prog.used),
            prog.algorithm,
            prog.deadline_at,
        )
        self._grant(grants)
        priority = self.queue.submit(worker.index, req.rid, prog.program_id, now, req.max_new)
        if priority is None:
            self._waiting[req.rid] = req
        else:
            req.priority = priority if self.setup.worker_priority else 0
            self._to_engine(req, worker.index)

    def _grant(self, grants: list[Grant]) -> None:
        # A grant names the worker whose slot it holds: a program that moved while its
        # request waited is granted on its new worker, and the request must run (and be
        # released) there, as in the router.
        for g in grants:
            req = self._waiting.pop(g.request_id)
            req.priority = g.priority if self.setup.worker_priority else 0
            self._to_engine(req, g.worker)

    def _to_engine(self, req: Request, worker: int) -> None:
        _, sent = self._done[req.rid]
        self.waits[req.rid] = self.loop.now - sent
        self._where[req.rid] = worker
        self._granted[req.rid] = self.loop.now
        engine = self.engines[worker]
        engine.submit(req, self.loop.now)
        self._schedule(worker)

    def _schedule(self, worker: int) -> None:
        engine = self.engines[worker]
        if engine.busy:
            self.loop.at(engine.wake_at, self._wake, worker, engine.version)

    def _wake(self, worker: int, version: int) -> None:
        engine = self.engines[worker]
        if engine.version != version or not engine.busy:
            return  # superseded by a later plan
        for f in engine.on_wake(self.loop.now):
            self._finish(f, worker)
        self._schedule(worker)

    def _finish(self, f: Finished, worker: int) -> None:
        """A request left its engine: as in the router, a completion (not an abort) teaches
        the worker's limiter and credits its program's attained service."""
        req, now = f.request, self.loop.now
        self._where.pop(req.rid, None)
        granted = self._granted.pop(req.rid, now)
        on_done, _ = self._done.pop(req.rid)
        if self.queue is not None:
            latency = None if f.aborted else now - granted
            grants = self.queue.release(worker, now, latency, req.generated, req.program_id)
            self._grant(grants)
        on_done(f)

    # -- programs -------------------------------------------------------------------------

    def report(self, prog: Served, report: Report) -> Decision:
        """The decision on a report, enforced (a stop ends the program here)."""
        if self.queue is None or self.pool is None:
            return prog.policy.decide(report)  # SGLang alone: no slack, no router
        now, pid, alg = self.loop.now, prog.program_id, prog.algorithm
        worker = self.pool.pinned(pid) or self.pool.least_loaded()
        slack = slack_units(self.queue, worker.index, alg) if worker is not None else 0
        self.queue.reserve(pid, slack * slots_per_unit(alg), now)
        decision = prog.policy.decide(dataclasses.replace(report, slack=slack))
        self._grant(self.queue.reserve(pid, 0, now))
        tokens = prog.completion_tokens - prog.tokens_at_report
        progress = Progress(pid, alg, prog.cap, prog.used, report.used, tokens, prog.deadline_at)
        settled = settle(self.queue, progress, decision, now, self.setup.deadline_stop)
        if settled.decision.action is Action.STOP:
            self.end(prog)
        elif settled.reserve_slots:
            self._grant(self.queue.reserve(pid, settled.reserve_slots, now))
        return settled.decision

    def end(self, prog: Served, rids: list[str] | None = None) -> None:
        """A program ended: abort its requests `rids` still waiting or running, forget it."""
        now, pid = self.loop.now, prog.program_id
        for rid in rids or []:
            if rid in self._waiting and self.queue is not None:
                self.queue.cancel(rid)
                self._waiting.pop(rid)
                self._done.pop(rid, None)
            elif rid in self._where:
                worker = self._where[rid]
                gone = self.engines[worker].abort(rid, now)
                self._schedule(worker)
                if gone is not None:
                    self._finish(gone, worker)
        if self.queue is not None and self.pool is not None:
            for _, grants in self.queue.forget_program(pid, now):
                self._grant(grants)
            home = self.pool.pinned(pid)
            self.pool.unpin(pid)
            if home is not None:
                self.engines[home.index].forget_program(pid)
        elif pid in self._pins:
            self.engines[self._pins.pop(pid)].forget_program(pid)
