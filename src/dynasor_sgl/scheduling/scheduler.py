"""The scheduler: ready programs in a heap, keyed by the configured order.

Owns each program's scheduling state (units left, tokens and pace so far, ready requests) and
the order; what remaining work costs is `dynasor_sgl.scheduling.cost`. No I/O, no clock: `now`
comes from the caller. See `dynasor_sgl.scheduling` for the orders and the starvation bound.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
from collections import deque
from collections.abc import Sequence

from dynasor_sgl.scheduling.config import Order, SchedulerConfig
from dynasor_sgl.scheduling.cost import CostModel
from dynasor_sgl.scheduling.state import Dispatch, ProgramState

logger = logging.getLogger(__name__)


class Scheduler:
    """Orders ready programs for one worker. Not thread-safe; the caller serializes."""

    def __init__(self, config: SchedulerConfig | None = None) -> None:
        self.config = config or SchedulerConfig()
        self._programs: dict[str, ProgramState] = {}
        self._ready: list[tuple[float, float, int, int, str]] = []  # key, tie, seq, version, id
        self._late: list[tuple[float, float, int, int, str]] = []  # deadline order only
        self._seq = itertools.count()
        self.cost = CostModel(self.config)

    def __contains__(self, program_id: str) -> bool:
        return program_id in self._programs

    def __len__(self) -> int:
        return len(self._programs)

    # -- the program table ----------------------------------------------------------------

    def add(
        self,
        program_id: str,
        now: float,
        remaining_units: int,
        *,
        algorithm: str = "sc",
        deadline_at: float | None = None,
        tokens_per_unit: float | None = None,
    ) -> None:
        """Registers a program with its knob budget (e.g. its policy's cap). `tokens_per_unit`
        fixes its cost per unit (a plain request's max_new_tokens); else it is learned."""
        if program_id in self._programs:
            raise ValueError(f"program {program_id!r} is already scheduled")
        if remaining_units < 0:
            raise ValueError(f"remaining_units must be >= 0, got {remaining_units!r}")
        if tokens_per_unit is not None and not tokens_per_unit > 0:
            raise ValueError(f"tokens_per_unit must be > 0, got {tokens_per_unit!r}")
        state = ProgramState(
            program_id,
            algorithm,
            now,
            remaining_units,
            deadline_at,
            tokens_per_unit,
            seq=next(self._seq),
        )
        self._programs[program_id] = state
        logger.debug(
            "program %s added (%s), remaining units %d", program_id, algorithm, remaining_units
        )

    def enqueue(self, program_id: str, request_ids: Sequence[str], now: float) -> None:
        """Marks requests of a program ready; its wait starts at its oldest ready request."""
        prog = self._get(program_id)
        was_ready = bool(prog.pending)
        prog.pending.extend((rid, now) for rid in request_ids)
        if prog.pending and not was_ready:
            self._push(prog)

    def on_report(
        self,
        program_id: str,
        tokens: int,
        units: int = 1,
        remaining_units: int | None = None,
        now: float | None = None,
    ) -> None:
        """Records `tokens` used over `units` knob units, the new remaining units if known, and
        (with `now`) the program's pace in seconds per unit. Unknown program ids are ignored:
        a report may race with the end of its program."""
        if tokens < 0 or units < 0:
            raise ValueError(f"tokens and units must be >= 0, got {tokens!r}, {units!r}")
        prog = self._programs.get(program_id)
        if prog is None:
            return
        self.cost.learn(prog, tokens, units, now)
        prog.remaining_units = (
            max(0, prog.remaining_units - units)
            if remaining_units is None
            else max(0, remaining_units)
        )
        if prog.pending:
            self._push(prog)  # its key changed; the old heap entry is now stale

    def on_served(self, program_id: str, tokens: int, now: float | None = None) -> None:
        """A request of the program completed with `tokens` generated: its attained service
        grows (what plas orders by). Unknown program ids are ignored."""
        if tokens < 0:
            raise ValueError(f"tokens must be >= 0, got {tokens!r}")
        prog = self._programs.get(program_id)
        if prog is None:
            return
        prog.served += tokens
        if prog.pending and self.config.order is Order.PLAS:
            self._push(prog)  # its key changed; the old heap entry is now stale

    def on_finish(self, program_id: str) -> None:
        """Forgets a program (unknown ids are ignored: finish may race with abort)."""
        self._programs.pop(program_id, None)

    def abort(self, program_id: str) -> list[str]:
        """Forgets a program and returns its undispatched request ids."""
        prog = self._programs.pop(program_id, None)
        return [rid for rid, _ in prog.pending] if prog else []

    def withdraw(self, program_id: str, request_id: str) -> bool:
        """Removes one ready request of a program (its caller went away)."""
        prog = self._programs.get(program_id)
        if prog is None:
            return False
        kept = [(rid, t) for rid, t in prog.pending if rid != request_id]
        if len(kept) == len(prog.pending):
            return False
        prog.pending = deque(kept)
        prog.version += 1
        if prog.pending:
            self._push(prog)
        return True

    def detach(self, program_id: str) -> ProgramState | None:
        """Removes a program with its history and ready requests, for `attach` elsewhere."""
        return self._programs.pop(program_id, None)

    def attach(self, state: ProgramState) -> None:
        """Takes over a program detached from another scheduler (a move between workers)."""
        if state.program_id in self._programs:
            raise ValueError(f"program {state.program_id!r} is already scheduled")
        self._programs[state.program_id] = state
        if state.pending:
            self._push(state)

    def pending(self, program_id: str) -> list[str]:
        prog = self._programs.get(program_id)
        return [rid for rid, _ in prog.pending] if prog else []

    # -- predictions ------------------------------------------------------------------------

    def tokens_per_unit(self, program_id: str) -> float:
        return self.cost.tokens_per_unit(self._get(program_id))

    def predicted_work(self, program_id: str) -> float:
        """Remaining units × tokens per unit, clamped to `work_cap` (`CostModel.work`)."""
        return self.cost.work(self._get(program_id))

    def predicted_time(self, program_id: str, units: int | None = None) -> float:
        """Seconds `units` more knob units (default: all remaining) will take (`CostModel.time`)."""
        return self.cost.time(self._get(program_id), units)

    # -- ordering ---------------------------------------------------------------------------

    def _key(self, prog: ProgramState) -> float:
        """The time-invariant ordering key of a ready program (lower first)."""
        cfg = self.config
        since = prog.ready_since if prog.ready_since is not None else prog.arrival
        if cfg.order is Order.FIFO:
            return float(prog.seq)
        if cfg.order is Order.FCFS:
            return since
        if cfg.order is Order.DEADLINE:
            return self._latest_start(prog, since)
        if cfg.order is Order.PLAS:
            return self._attained(prog) + cfg.aging_rate * since
        return self.predicted_work(prog.program_id) + cfg.aging_rate * since

    def _attained(self, prog: ProgramState) -> float:
        """The program's attained service, clamped to `work_cap` (the starvation bound)."""
        return min(float(prog.served), self.config.work_cap)

    def _latest_start(self, prog: ProgramState, since: float) -> float:
        if prog.deadline_at is None:
            return since + self.config.starvation_bound_s
        return prog.deadline_at - self.predicted_time(prog.program_id)

    def _push(self, prog: ProgramState) -> None:
        prog.version += 1
        since = prog.ready_since if prog.ready_since is not None else prog.arrival
        entry = (self._key(prog), since, prog.seq, prog.version, prog.program_id)
        heapq.heappush(self._ready, entry)

    def _live(self, entry: tuple[float, float, int, int, str]) -> ProgramState | None:
        prog = self._programs.get(entry[4])
        if prog is None or prog.version != entry[3] or not prog.pending:
            return None
        return prog

    def _peek(self, heap: list[tuple[float, float, int, int, str]]) -> ProgramState | None:
        while heap:
            prog = self._live(heap[0])
            if prog is not None:
                return prog
            heapq.heappop(heap)
        return None

    def _move_late(self, now: float) -> None:
        """deadline: programs that can no longer make it leave the feasible heap."""
        cfg = self.config
        while (prog := self._peek(self._ready)) is not None and self._ready[0][0] < now:
            heapq.heappop(self._ready)
            since = prog.ready_since if prog.ready_since is not None else now
            sjf = self.predicted_work(prog.program_id) + cfg.aging_rate * since
            heapq.heappush(self._late, (sjf, since, prog.seq, prog.version, prog.program_id))

    def _pick(self, now: float) -> ProgramState | None:
        if self.config.order is not Order.DEADLINE:
            return self._peek(self._ready)
        self._move_late(now)
        late = self._peek(self._late)
        waited = now - late.ready_since if late and late.ready_since is not None else 0.0
        if late is not None and waited > self.config.starvation_bound_s:
            return late  # the escape that bounds every wait
        return self._peek(self._ready) or late

    def next(self, now: float) -> Dispatch | None:
        """Dispatches the first ready program: all its ready requests (one under fcfs)."""
        prog = self._pick(now)
        if prog is None:
            return None
        priority = self.priority(prog.program_id, now)
        if self.config.order is Order.FCFS:
            batch = [prog.pending.popleft()[0]]
        else:
            batch = [rid for rid, _ in prog.pending]
            prog.pending.clear()
        prog.version += 1  # every heap entry of it is stale now
        if prog.pending:
            self._push(prog)
        logger.debug(
            "program %s dispatched with %d requests at priority %d",
            prog.program_id,
            len(batch),
            priority,
        )
        return Dispatch(prog.program_id, batch, priority)

    def score(self, program_id: str, now: float) -> float:
        """Lower goes first. sjf: predicted work − aging; plas: attained service − aging;
        deadline: slack in seconds; fifo: the arrival rank; fcfs: when the oldest ready request
        became ready."""
        prog = self._get(program_id)
        cfg = self.config
        since = prog.ready_since if prog.ready_since is not None else now
        if cfg.order is Order.SJF:
            return self.predicted_work(program_id) - cfg.aging_rate * (now - since)
        if cfg.order is Order.PLAS:
            return self._attained(prog) - cfg.aging_rate * (now - since)
        if cfg.order is Order.DEADLINE:
            return self._latest_start(prog, since) - now
        return self._key(prog)

    def priority(self, program_id: str, now: float) -> int:
        """SGLang `priority` for the program's requests now (higher = earlier), in
        [0, max_priority] for any state: it is computed on every grant, so it never raises."""
        cfg = self.config
        if cfg.order in (Order.FIFO, Order.FCFS):
            return cfg.max_priority // 2
        try:
            score = self.score(program_id, now)
        except OverflowError:  # work past float range: the least urgent there is
            score = math.inf
        if cfg.order is Order.DEADLINE:
            score *= cfg.prior_token_rate  # seconds of slack as tokens of work
        level = cfg.max_priority - score / cfg.tokens_per_level
        if math.isnan(level):
            return 0
        # Clamped before rounding: round() of an infinite level raises.
        return round(min(float(cfg.max_priority), max(0.0, level)))

    def order(self, now: float) -> list[str]:
        """Ready programs in dispatch order (for inspection; O(P log P))."""
        ready = [p for p in self._programs.values() if p.pending]
        if self.config.order is Order.DEADLINE:

            def key(p: ProgramState) -> tuple[float, ...]:
                slack = self.score(p.program_id, now)
                waited = now - (p.ready_since or now)
                if slack >= 0:
                    return (1, slack, p.seq)
                first = 0 if waited > self.config.starvation_bound_s else 2
                return (first, self._sjf_at(p, now), p.seq)

            return [p.program_id for p in sorted(ready, key=key)]
        return [p.program_id for p in sorted(ready, key=lambda p: (self._key(p), p.seq))]

    def _sjf_at(self, prog: ProgramState, now: float) -> float:
        since = prog.ready_since if prog.ready_since is not None else now
        return self.predicted_work(prog.program_id) - self.config.aging_rate * (now - since)

    def _get(self, program_id: str) -> ProgramState:
        prog = self._programs.get(program_id)
        if prog is None:
            raise KeyError(f"unknown program {program_id!r}")
        return prog
