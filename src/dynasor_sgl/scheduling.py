"""Program scheduling: approximate shortest-job-first with aging, gang grouping, FIFO baseline.

A plain state machine (add / enqueue / next / on_report / on_finish / abort) over programs and
their ready requests, driven by the caller's clock (`now` in seconds, any monotone origin). The
router maps its output onto SGLang's per-request `priority` and its own admission queue. This
module does no I/O and reads no clock; it knows nothing about HTTP, SGLang or the policy.

SJF score (lower goes first) of a ready program P:
    score = min(remaining_knob × tokens_per_step, work_cap) − aging_rate × (now − ready_since)
where tokens_per_step is P's own average so far (a prior before its first report) and
ready_since is when P's oldest undispatched request became ready. Ties go to the earlier
ready_since, then the earlier arrival, then the id.

Wait bound. Let W ≤ work_cap be P's largest predicted work while it waits and a = aging_rate.
A program Q that becomes ready after t0 + W/a can never be ranked ahead of P (its score is
≥ −a(now − t_Q) > W − a(now − t0) ≥ P's score). So if P is ready from t0 and the caller
dispatches at least every d seconds while anything is ready, P is dispatched by
    t0 + W/a + (N + 1)·d,
N = the number of other programs ready at t0 + W/a (each holds one gang and is dispatched at
most once before P). With W ≤ work_cap the bound is uniform over programs: nothing starves.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

logger = logging.getLogger(__name__)

R = TypeVar("R")


@dataclass(frozen=True)
class SchedulerConfig:
    """policy: "sjf" (approximate SJF with aging) or "fifo" (programs in arrival order).
    prior_tokens_per_step: tokens per knob unit assumed before a program's first report (> 0).
    aging_rate: tokens of predicted work forgiven per second of waiting (> 0).
    work_cap: predicted work is clamped to this many tokens; it bounds every wait (> 0).
    tokens_per_level / max_priority: SGLang priority = max_priority − score / tokens_per_level,
      clamped to [0, max_priority] (higher = earlier)."""

    policy: str = "sjf"
    prior_tokens_per_step: float = 256.0
    aging_rate: float = 256.0
    work_cap: float = 1_000_000.0
    tokens_per_level: float = 64.0
    max_priority: int = 1000

    def __post_init__(self) -> None:
        if self.policy not in ("sjf", "fifo"):
            raise ValueError(f"policy must be 'sjf' or 'fifo', got {self.policy!r}")
        for name in ("prior_tokens_per_step", "aging_rate", "work_cap", "tokens_per_level"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if self.max_priority < 1:
            raise ValueError(f"max_priority must be >= 1, got {self.max_priority!r}")


@dataclass
class _Program:
    program_id: str
    arrival: float
    remaining_knob: int
    steps: int = 0
    tokens: int = 0
    pending: list[str] = field(default_factory=list)
    ready_since: float | None = None


class Scheduler:
    """Orders programs for dispatch; a program's ready requests always go out together."""

    def __init__(self, config: SchedulerConfig | None = None) -> None:
        self.config = config or SchedulerConfig()
        self._programs: dict[str, _Program] = {}

    def __contains__(self, program_id: str) -> bool:
        return program_id in self._programs

    def add(self, program_id: str, now: float, remaining_knob: int) -> None:
        """Registers a program with its knob budget (e.g. the policy's cap)."""
        if program_id in self._programs:
            raise ValueError(f"program {program_id!r} is already scheduled")
        if remaining_knob < 0:
            raise ValueError(f"remaining_knob must be >= 0, got {remaining_knob!r}")
        self._programs[program_id] = _Program(program_id, now, remaining_knob)
        logger.debug("program %s added, remaining knob %d", program_id, remaining_knob)

    def enqueue(self, program_id: str, request_ids: Sequence[str], now: float) -> None:
        """Marks requests of a program ready; its wait starts at its oldest ready request."""
        prog = self._get(program_id)
        if request_ids and prog.ready_since is None:
            prog.ready_since = now
        prog.pending.extend(request_ids)

    def on_report(
        self, program_id: str, tokens: int, steps: int = 1, remaining_knob: int | None = None
    ) -> None:
        """Records `tokens` used over `steps` knob units, and the new remaining knob if known."""
        if tokens < 0 or steps < 0:
            raise ValueError(f"tokens and steps must be >= 0, got {tokens!r}, {steps!r}")
        prog = self._get(program_id)
        prog.tokens += tokens
        prog.steps += steps
        prog.remaining_knob = (
            max(0, prog.remaining_knob - steps)
            if remaining_knob is None
            else max(0, remaining_knob)
        )

    def on_finish(self, program_id: str) -> None:
        """Forgets a finished program (unknown ids are ignored: finish may race with abort)."""
        self._programs.pop(program_id, None)

    def abort(self, program_id: str) -> list[str]:
        """Forgets a program and returns its undispatched request ids."""
        prog = self._programs.pop(program_id, None)
        return list(prog.pending) if prog else []

    def tokens_per_step(self, program_id: str) -> float:
        prog = self._get(program_id)
        return prog.tokens / prog.steps if prog.steps else self.config.prior_tokens_per_step

    def predicted_work(self, program_id: str) -> float:
        """Remaining knob × own average tokens per step, clamped to `work_cap`."""
        prog = self._get(program_id)
        work = prog.remaining_knob * self.tokens_per_step(program_id)
        return min(work, self.config.work_cap)

    def _key(self, prog: _Program, now: float) -> tuple[float, float, float, str]:
        since = prog.ready_since if prog.ready_since is not None else now
        if self.config.policy == "fifo":
            return (prog.arrival, since, prog.arrival, prog.program_id)
        score = self.predicted_work(prog.program_id) - self.config.aging_rate * (now - since)
        return (score, since, prog.arrival, prog.program_id)

    def score(self, program_id: str, now: float) -> float:
        """The SJF score (lower first; for FIFO the arrival time)."""
        return self._key(self._get(program_id), now)[0]

    def order(self, now: float) -> list[str]:
        """Ready programs (with pending requests), in dispatch order."""
        ready = [p for p in self._programs.values() if p.pending]
        return [p.program_id for p in sorted(ready, key=lambda p: self._key(p, now))]

    def next(self, now: float) -> tuple[str, list[str]] | None:
        """Dispatches the first ready program: its id and all its ready requests (a gang)."""
        ready = [p for p in self._programs.values() if p.pending]
        if not ready:
            return None
        prog = min(ready, key=lambda p: self._key(p, now))
        batch, prog.pending, prog.ready_since = prog.pending, [], None
        logger.debug("program %s dispatched with %d requests", prog.program_id, len(batch))
        return prog.program_id, batch

    def priority(self, program_id: str, now: float) -> int:
        """SGLang `priority` for the program's requests now (higher = earlier)."""
        cfg = self.config
        if cfg.policy == "fifo":
            rank = sorted(self._programs.values(), key=lambda p: (p.arrival, p.program_id))
            position = [p.program_id for p in rank].index(program_id)
            return max(0, cfg.max_priority - position)
        level = cfg.max_priority - self.score(program_id, now) / cfg.tokens_per_level
        return int(min(cfg.max_priority, max(0, round(level))))

    def _get(self, program_id: str) -> _Program:
        prog = self._programs.get(program_id)
        if prog is None:
            raise KeyError(f"unknown program {program_id!r}")
        return prog


def gang_order(
    requests: Sequence[tuple[Hashable, R]], program_order: Sequence[Hashable] = ()
) -> list[tuple[Hashable, R]]:
    """Reorders (program_id, request) pairs so each program's requests are contiguous.

    Programs listed in `program_order` come first in that order, the rest in order of first
    appearance; within a program the original order is kept. With no `program_order` this is
    the App-FIFO gang order of the Parrot baseline.
    """
    rank = {pid: i for i, pid in enumerate(program_order)}
    first_seen: dict[Hashable, int] = {}
    for i, (pid, _) in enumerate(requests):
        first_seen.setdefault(pid, i)
    base = len(rank)

    def key(item: tuple[int, tuple[Hashable, R]]) -> tuple[int, int, int]:
        i, (pid, _) = item
        return (rank.get(pid, base), first_seen[pid], i)

    return [req for _, req in sorted(enumerate(requests), key=key)]


def fifo_order(requests: Sequence[R]) -> list[R]:
    """The plain first-come-first-served baseline: requests in arrival order, no grouping."""
    return list(requests)
