"""What the scheduler keeps per program, and what it hands out at each dispatch."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass
class ProgramState:
    """One program as the scheduler sees it; `detach` hands it over to another scheduler."""

    program_id: str
    algorithm: str
    arrival: float
    remaining_units: int
    deadline_at: float | None = None
    tokens_per_unit: float | None = None  # a fixed prior (plain requests), else learned
    units: int = 0
    tokens: int = 0
    seconds_per_unit: float | None = None  # observed: time since arrival / units, at reports
    served: int = 0  # tokens its completed requests generated: its attained service (plas)
    pending: deque[tuple[str, float]] = field(default_factory=deque)  # (request id, ready at)
    seq: int = 0
    version: int = 0

    @property
    def ready_since(self) -> float | None:
        return self.pending[0][1] if self.pending else None


@dataclass(frozen=True)
class Dispatch:
    """What `next` sends: a program, its request ids (a gang, or one under fcfs), and the SGLang
    priority they go with (computed before the wait is reset, so aging reaches it)."""

    program_id: str
    request_ids: list[str]
    priority: int
