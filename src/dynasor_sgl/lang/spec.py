"""What a run is given and what it returns: `ProgramSpec` (a program and how to call it) and
`ProgramResult` (its outcome), with the exit reasons a run can end with.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from sglang.lang.ir import SglFunction

# threshold, posterior, cap, deadline: the router's stop decisions; abandoned: the router
# reaped the program after its client went quiet past the TTL.
EXIT_REASONS = (
    "threshold",
    "posterior",
    "decided",
    "cap",
    "deadline",
    "completed",
    "trimmed",
    "aborted",
    "abandoned",
    "timeout",
    "error",
)


@dataclass(frozen=True)
class ProgramSpec:
    """A shipped (or user) program: its CLI name, the policy algorithm whose defaults it uses,
    the `@sgl.function` (called with question=... and `params`), what its knob counts, the
    signal `--threshold` sets, and default extra arguments."""

    name: str
    algorithm: str
    function: SglFunction
    knob: str
    signal: str
    description: str = ""
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class ProgramResult:
    """The outcome of one run. status "ok" or "error" (then `error` has the message and the
    answer is None). exit_reason: one of EXIT_REASONS. steps: knob units used. certaindex: the
    trajectory [{"used", signal: value}] (with "step", deprecated, for one release). tokens:
    reasoning, probe, reward, total (+ detail). router_tokens: the router's own count for the
    program (None if it could not be read, or without a router). wait_s: mean seconds a
    request spent outside the worker (the router's admission queue and transport; None when
    the worker reports no latency)."""

    program: str
    program_id: str
    question: str
    status: str
    answer: str | None
    exit_reason: str
    steps: int
    cap: int
    certaindex: list[dict[str, Any]]
    tokens: dict[str, int]
    router_tokens: dict[str, int] | None
    elapsed_s: float
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    wait_s: float | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
