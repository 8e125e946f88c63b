"""Scheduler settings: the orders it can keep, the per-algorithm priors, one frozen config.

See `dynasor_sgl.scheduling` for what each order does and the starvation bound.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum


class Order(StrEnum):
    """The orders the scheduler keeps (the router's `--scheduling`)."""

    FCFS = "fcfs"
    FIFO = "fifo"
    SJF = "sjf"
    DEADLINE = "deadline"
    PLAS = "plas"


# Tokens one knob unit costs before any program of the algorithm has reported: an SC or
# best-of-N sample is a whole answer; a CoT unit is one token; an MCTS iteration expands two
# 64-token steps and judges them; a REBASE or beam unit is one 64-token step plus its judge.
# "plain" is a request outside any program (its own max_new_tokens is used instead).
PRIOR_TOKENS_PER_UNIT: dict[str, float] = {
    "sc": 256.0,
    "bon": 256.0,
    "cot": 1.0,
    "mcts": 160.0,
    "rebase": 72.0,
    "beam": 72.0,
    "plain": 128.0,
}


@dataclass(frozen=True)
class SchedulerConfig:
    """order: the order waiting work goes in (`Order`; a scheduling order, not a program
      policy).
    aging_rate: tokens of predicted work (plas: of attained service) forgiven per second a
      program waits (> 0).
    starvation_bound_s: predicted work (plas: attained service) is clamped to aging_rate ×
      this, so no ready program
      waits longer than this plus one dispatch per program ahead of it (> 0).
    prior_token_rate: tokens/s a program is assumed to progress at before its first report;
      only the deadline order reads it (> 0).
    prior_weight: weight of each new report in an algorithm's running tokens-per-unit average,
      in (0, 1].
    tokens_per_level / max_priority: SGLang priority = max_priority − score / tokens_per_level,
      clamped to [0, max_priority] (higher = earlier); under fifo and fcfs every request gets
      max_priority / 2 (the dispatch order is the order the worker sees)."""

    order: Order = Order.SJF
    aging_rate: float = 64.0
    starvation_bound_s: float = 300.0
    prior_token_rate: float = 32.0
    prior_weight: float = 0.2
    tokens_per_level: float = 64.0
    max_priority: int = 1000

    def __post_init__(self) -> None:
        if self.order not in tuple(Order):
            choices = ", ".join(Order)
            raise ValueError(f"order must be one of {choices}, got {self.order!r}")
        object.__setattr__(self, "order", Order(self.order))
        for name in ("aging_rate", "starvation_bound_s", "prior_token_rate", "tokens_per_level"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        if not 0 < self.prior_weight <= 1:
            raise ValueError(f"prior_weight must be in (0, 1], got {self.prior_weight!r}")
        if self.max_priority < 1:
            raise ValueError(f"max_priority must be >= 1, got {self.max_priority!r}")

    @property
    def work_cap(self) -> float:
        """The most predicted work (tokens) any program is charged: aging_rate × bound."""
        return self.aging_rate * self.starvation_bound_s
