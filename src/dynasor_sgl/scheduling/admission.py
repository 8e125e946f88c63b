"""Admission: how many requests each worker runs, who waits, and who goes when a slot frees.

Each worker takes at most its limit of requests at once (at or below the knee of its
throughput: past the knee more concurrent requests only share the same tokens/s), so the
backlog waits here, where the scheduler can order it, instead of inside the engine's batch.
Below the limit a request goes straight through; above it, it waits, and each freed slot goes
to the program the worker's `Scheduler` puts first: all of that program's waiting requests
together (a gang; one request under fcfs), each with the SGLang priority the scheduler gave it
at dispatch.

Synchronous and clock-injected (`now` is passed in): the router wraps it with futures
(`dynasor_sgl.router.waiting`), a simulator calls it directly. A request outside any program
(plain) is a one-unit job of its own max_new_tokens. Slots can be reserved for expansion a
policy granted, so concurrent reports do not all see the same free capacity.

A worker's limit is its `InflightLimiter`'s (`dynasor_sgl.scheduling.limiter`): fixed at
`bound`, or adaptive, fed the completions `release` is told about. A limit that shrinks below
the requests in flight takes nothing away: no new request goes until enough have ended.

Workers join (`add_worker`) and leave while it runs: `close_worker` stops new work going to
one, the caller moves its programs (`ensure_program` elsewhere) and plain waiters
(`move_plain`), its requests in flight end as usual, and `remove_worker` forgets it once it
holds nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from dynasor_sgl.scheduling.config import SchedulerConfig
from dynasor_sgl.scheduling.limiter import InflightLimiter, LimiterConfig
from dynasor_sgl.scheduling.scheduler import Scheduler
from dynasor_sgl.scheduling.state import Dispatch

logger = logging.getLogger(__name__)

PLAIN_PREFIX = "request:"  # scheduler ids of plain requests
# Concurrent requests one more knob unit takes, to turn free slots into expansion: an SC or
# best-of-N sample, a REBASE or beam node is one request; an MCTS iteration expands two
# children and judges them; a CoT unit is a token of the one chain (it cannot use more slots).
SLOTS_PER_UNIT = {"sc": 1, "bon": 1, "rebase": 1, "beam": 1, "mcts": 3, "cot": 0}


def slots_per_unit(algorithm: str) -> int:
    """Request slots one knob unit of `algorithm` occupies (0: it cannot expand into slots)."""
    return SLOTS_PER_UNIT.get(algorithm, 1)


@dataclass
class Slots:
    """One worker's occupancy: requests running, waiting, and reserved for granted expansion,
    and its current in-flight limit (0 until a queue takes the worker)."""

    index: int
    inflight: int = 0
    queued: int = 0
    reserved: int = 0
    limit: int = field(default=0, compare=False)  # not occupancy: a setting admission keeps


@dataclass(frozen=True)
class Grant:
    """A waiting request let through: its id, the worker whose slot it holds (a program moved
    while the request waited is granted on its new worker) and the SGLang priority it goes
    with."""

    request_id: str
    priority: int
    worker: int


class AdmissionQueue:
    """Per-worker in-flight limits and wait queues. Not thread-safe; the caller serializes.

    bound: every worker's fixed limit, unless `limiter` sets how each worker's limit is kept
    (`LimiterConfig`; an adaptive one starts at its `initial`)."""

    def __init__(
        self,
        workers: list[Slots],
        bound: int,
        config: SchedulerConfig,
        limiter: LimiterConfig | None = None,
    ) -> None:
        if bound < 1:
            raise ValueError(f"bound must be >= 1, got {bound!r}")
        self.bound = bound
        self.limiter = limiter or LimiterConfig.fixed(bound)
        self.config = config
        self.workers: dict[int, Slots] = {}
        self._schedulers: dict[int, Scheduler] = {}
        self._limiters: dict[int, InflightLimiter] = {}
        for w in workers:
            self.add_worker(w)
        self._waiting: dict[str, tuple[int, str]] = {}  # request id -> (worker, scheduler id)
        self._home: dict[str, int] = {}  # program id -> worker whose scheduler holds it
        self._reserved: dict[str, int] = {}  # program id -> slots reserved for it
        self._closed: set[int] = set()  # workers leaving: no new request or program

    # -- workers ----------------------------------------------------------------------------

    def add_worker(self, slots: Slots) -> None:
        """A worker joins, with an index never used before in this queue."""
        if slots.index in self.workers:
            raise ValueError(f"worker {slots.index} is already in the queue")
        self.workers[slots.index] = slots
        self._schedulers[slots.index] = Scheduler(self.config)
        self._limiters[slots.index] = InflightLimiter(self.limiter)
        slots.limit = self._limiters[slots.index].limit

    def limit(self, worker: int) -> int:
        """The in-flight limit of `worker` now."""
        return self.workers[worker].limit

    def limiter_of(self, worker: int) -> InflightLimiter:
        """The limiter that keeps `worker`'s limit (for inspection)."""
        return self._limiters[worker]

    def close_worker(self, worker: int) -> None:
        """`worker` is leaving: it takes no new request, waiting one or program from now on
        (its requests in flight still end here, with `release`)."""
        self._closed.add(worker)

    def open_workers(self) -> list[int]:
        return sorted(i for i in self.workers if i not in self._closed)

    def programs_on(self, worker: int) -> list[str]:
        """Programs whose scheduler state lives on `worker` (waiting or not)."""
        return sorted(pid for pid, home in self._home.items() if home == worker)

    def remove_worker(self, worker: int) -> None:
        """Forgets a closed worker that holds nothing: no request in flight or waiting, no
        program, no reservation. Raises ValueError otherwise (its books would be lost)."""
        w = self.workers[worker]
        if worker not in self._closed:
            raise ValueError(f"worker {worker} must be closed before it is removed")
        if w.inflight or w.queued or w.reserved or self.programs_on(worker):
            raise ValueError(f"worker {worker} still holds work: {w}")
        del self.workers[worker], self._schedulers[worker], self._limiters[worker]
        self._closed.discard(worker)

    def _check_open(self, worker: int) -> None:
        if worker in self._closed:
            raise ValueError(f"worker {worker} is leaving and takes no new work")

    def queue_length(self) -> int:
        return len(self._waiting)

    def scheduler(self, worker: int) -> Scheduler:
        return self._schedulers[worker]

    def programs(self) -> int:
        return len(self._home)

    def home(self, program_id: str) -> int | None:
        """The worker whose scheduler holds the program, if any."""
        return self._home.get(program_id)

    # -- programs ---------------------------------------------------------------------------

    def ensure_program(
        self,
        worker: int,
        program_id: str,
        now: float,
        remaining_units: int,
        algorithm: str,
        deadline_at: float | None = None,
    ) -> list[Grant]:
        """Schedules a program on `worker`. A program already scheduled on another worker
        moves, with its history and waiting requests; returns the grants that frees up."""
        home = self._home.get(program_id)
        if home == worker:
            return []
        self._check_open(worker)
        if home is None:
            self._schedulers[worker].add(
                program_id,
                now,
                max(0, remaining_units),
                algorithm=algorithm,
                deadline_at=deadline_at,
            )
            self._home[program_id] = worker
            return []
        return self._move(program_id, home, worker, now)

    def _move(self, program_id: str, src: int, dst: int, now: float) -> list[Grant]:
        state = self._schedulers[src].detach(program_id)
        self._home[program_id] = dst
        held = self._reserved.get(program_id, 0)
        self.workers[src].reserved -= held
        self.workers[dst].reserved += held
        if state is None:
            return []
        self._schedulers[dst].attach(state)
        for rid, _ in state.pending:
            self._waiting[rid] = (dst, program_id)
            self.workers[src].queued -= 1
            self.workers[dst].queued += 1
        logger.info(
            "program %s moved from worker %d to worker %d with %d waiting requests",
            program_id,
            src,
            dst,
            len(state.pending),
        )
        return self.dispatch(dst, now)

    def on_report(
        self, program_id: str, tokens: int, units: int, remaining_units: int, now: float
    ) -> None:
        home = self._home.get(program_id)
        if home is not None:
            self._schedulers[home].on_report(program_id, tokens, units, remaining_units, now)

    def priority(self, worker: int, program_id: str, now: float) -> int | None:
        """The SGLang priority a program's requests would get on `worker` now (None: unknown)."""
        sched = self._schedulers[worker]
        return sched.priority(program_id, now) if program_id in sched else None

    def predicted_time(self, program_id: str, units: int | None = None) -> float | None:
        home = self._home.get(program_id)
        if home is None or program_id not in self._schedulers[home]:
            return None
        return self._schedulers[home].predicted_time(program_id, units)

    def forget_program(self, program_id: str, now: float) -> list[tuple[int, list[Grant]]]:
        """Forgets a program (its waiting requests must have been failed first) and its
        reservation; returns the grants its freed reservation lets through, per worker."""
        home = self._home.pop(program_id, None)
        if home is None:
            return []
        for rid in self._schedulers[home].abort(program_id):
            if self._waiting.pop(rid, None) is not None:
                self.workers[home].queued -= 1
        held = self._reserved.pop(program_id, 0)
        if held:
            self.workers[home].reserved -= held
            return [(home, self.dispatch(home, now))]
        return []

    # -- requests ---------------------------------------------------------------------------

    def _free(self, w: Slots, program_id: str | None) -> int:
        own = self._reserved.get(program_id, 0) if program_id else 0
        return w.limit - w.inflight - (w.reserved - own)

    def _may_go(self, w: Slots, program_id: str | None) -> bool:
        """Whether a new request may take a slot on `w` now, past the queue's order.

        A program's own reservation is its own: its requests take it even while others wait
        (they would otherwise queue behind the very requests the reservation keeps out). A
        worker with nothing in flight takes any request: no release is coming to dispatch a
        waiting one, so a reservation that covers every free slot would stall it for good.
        Otherwise a request goes only past an empty queue into a slot nobody reserved."""
        if w.inflight >= w.limit:
            return False
        own = self._reserved.get(program_id, 0) if program_id is not None else 0
        if own and self._home.get(program_id or "") == w.index:
            return True
        if w.inflight == 0:
            return True
        return not w.queued and self._free(w, program_id) > 0

    def waiting(self, program_id: str) -> bool:
        """Whether the program has requests waiting for a slot (it is not idle)."""
        home = self._home.get(program_id)
        return home is not None and bool(self._schedulers[home].pending(program_id))

    def submit(
        self,
        worker: int,
        request_id: str,
        program_id: str | None,
        now: float,
        max_new_tokens: int = 128,
    ) -> int | None:
        """A request for `worker`: its priority if it may go now, else None (it waits until a
        `release` or `dispatch` grants it)."""
        self._check_open(worker)
        w = self.workers[worker]
        sid = program_id if program_id is not None else PLAIN_PREFIX + request_id
        sched = self._schedulers[worker]
        if program_id is None:
            sched.add(sid, now, 1, algorithm="plain", tokens_per_unit=max(1, max_new_tokens))
        elif sid not in sched:  # not ensured first (or elsewhere): one unit here
            self.ensure_program(worker, sid, now, 1, "sc")
        if self._may_go(w, program_id):
            priority = sched.priority(sid, now)  # before the slot is counted: it may raise
            w.inflight += 1
            self._consume_reservation(program_id, w)
            if program_id is None:
                sched.on_finish(sid)
            return priority
        sched.enqueue(sid, [request_id], now)
        self._waiting[request_id] = (worker, sid)
        w.queued += 1
        logger.debug("request %s of %s queued on worker %d", request_id, sid, worker)
        return None

    def release(
        self,
        worker: int,
        now: float,
        latency_s: float | None = None,
        tokens: int = 0,
        program_id: str | None = None,
    ) -> list[Grant]:
        """A request on `worker` ended; returns the waiting requests that may go now. With
        `latency_s` (seconds since its slot was granted) it completed, having generated
        `tokens`: the worker's limiter learns from it, and its program (`program_id`) is
        credited the service (`Scheduler.on_served`)."""
        w = self.workers[worker]
        if latency_s is not None:
            limiter = self._limiters[worker]
            w.limit = limiter.on_complete(now, latency_s, tokens, w.inflight, w.queued)
            home = self._home.get(program_id or "")
            if home is not None and tokens > 0:
                self._schedulers[home].on_served(program_id or "", tokens, now)
        w.inflight -= 1
        return self.dispatch(worker, now)

    def dispatch(self, worker: int, now: float) -> list[Grant]:
        w = self.workers[worker]
        sched = self._schedulers[worker]
        grants: list[Grant] = []
        while w.inflight < w.limit and w.queued:
            nxt: Dispatch | None = sched.next(now)
            if nxt is None:
                break
            for rid in nxt.request_ids:  # the whole gang, even past the bound by its size
                if self._waiting.pop(rid, None) is None:
                    continue
                w.queued -= 1
                w.inflight += 1
                grants.append(Grant(rid, nxt.priority, worker))
            pid = nxt.program_id
            if pid.startswith(PLAIN_PREFIX):
                sched.on_finish(pid)
            else:
                self._consume_reservation(pid, w, len(nxt.request_ids))
        return grants

    def cancel(self, request_id: str) -> bool:
        """Withdraws a waiting request (its caller is gone); False if it was not waiting."""
        entry = self._waiting.pop(request_id, None)
        if entry is None:
            return False
        worker, sid = entry
        self.workers[worker].queued -= 1
        sched = self._schedulers[worker]
        if sid.startswith(PLAIN_PREFIX):
            sched.on_finish(sid)
        else:
            sched.withdraw(sid, request_id)
        return True

    def programs_waiting(self, worker: int) -> list[str]:
        """Programs with requests waiting on `worker` (plain requests are not programs)."""
        sids = {sid for w, sid in self._waiting.values() if w == worker}
        return sorted(sid for sid in sids if not sid.startswith(PLAIN_PREFIX))

    def move_plain(self, request_id: str, dst: int, now: float) -> list[Grant]:
        """Moves a waiting plain request to worker `dst` (its worker went down), keeping its
        place in time; returns the grants `dst` can make now."""
        entry = self._waiting.get(request_id)
        if entry is None or entry[0] == dst or not entry[1].startswith(PLAIN_PREFIX):
            return []
        self._check_open(dst)
        src, sid = entry
        state = self._schedulers[src].detach(sid)
        if state is None:
            return []
        self._schedulers[dst].attach(state)
        self._waiting[request_id] = (dst, sid)
        self.workers[src].queued -= 1
        self.workers[dst].queued += 1
        return self.dispatch(dst, now)

    def waiting_of(self, program_id: str | None = None, worker: int | None = None) -> list[str]:
        """Waiting request ids of a program and/or a worker."""
        return [
            rid
            for rid, (w, sid) in self._waiting.items()
            if (program_id is None or sid == program_id) and (worker is None or w == worker)
        ]

    # -- expansion slack --------------------------------------------------------------------

    def slack(self, worker: int) -> int:
        """Request slots free on `worker` with nothing waiting anywhere (else 0)."""
        w = self.workers[worker]
        if self._waiting:
            return 0
        return max(0, w.limit - w.inflight - w.reserved)

    def reserve(self, program_id: str, slots: int, now: float) -> list[Grant]:
        """Holds `slots` on the program's worker for expansion granted to it (replacing what it
        held), until its requests take them; returns the grants a smaller hold lets through."""
        home = self._home.get(program_id)
        if home is None:
            return []
        w = self.workers[home]
        held = self._reserved.pop(program_id, 0)
        w.reserved -= held
        if slots > 0:
            self._reserved[program_id] = slots
            w.reserved += slots
        return self.dispatch(home, now) if slots < held else []

    def _consume_reservation(self, program_id: str | None, w: Slots, n: int = 1) -> None:
        held = self._reserved.get(program_id, 0) if program_id else 0
        if not held or program_id is None:
            return
        used = min(held, n)
        w.reserved = max(0, w.reserved - used)
        if held - used:
            self._reserved[program_id] = held - used
        else:
            del self._reserved[program_id]
