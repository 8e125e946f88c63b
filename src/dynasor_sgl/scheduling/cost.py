"""The scheduler's cost model: what a program's remaining work costs in tokens and seconds.

Owns the per-algorithm running priors of tokens per knob unit and the learning from reports: a
program's own average once it has reported, its algorithm's prior before, a fixed cost for a
plain request. Knows nothing about queues or ordering (`dynasor_sgl.scheduling.scheduler`).
"""

from __future__ import annotations

from dynasor_sgl.scheduling.config import PRIOR_TOKENS_PER_UNIT, SchedulerConfig
from dynasor_sgl.scheduling.state import ProgramState


class CostModel:
    """Tokens and seconds per knob unit, learned from reports. Not thread-safe."""

    def __init__(self, config: SchedulerConfig) -> None:
        self.config = config
        self._priors = dict(PRIOR_TOKENS_PER_UNIT)

    def learn(self, prog: ProgramState, tokens: int, units: int, now: float | None) -> None:
        """`tokens` generated over `units` more knob units; with `now`, the pace (seconds per
        unit since arrival). Moves the algorithm's prior towards what this program showed."""
        prog.tokens += tokens
        prog.units += units
        if now is not None and prog.units:
            prog.seconds_per_unit = max(0.0, now - prog.arrival) / prog.units
        if units and prog.tokens_per_unit is None:
            w = self.config.prior_weight
            old = self._priors.get(prog.algorithm, PRIOR_TOKENS_PER_UNIT["sc"])
            self._priors[prog.algorithm] = (1 - w) * old + w * (tokens / units)

    def tokens_per_unit(self, prog: ProgramState) -> float:
        if prog.tokens_per_unit is not None:
            return prog.tokens_per_unit
        if prog.units:
            return prog.tokens / prog.units
        return self._priors.get(prog.algorithm, PRIOR_TOKENS_PER_UNIT["sc"])

    def work(self, prog: ProgramState) -> float:
        """Remaining units × tokens per unit, clamped to `work_cap`."""
        return min(prog.remaining_units * self.tokens_per_unit(prog), self.config.work_cap)

    def time(self, prog: ProgramState, units: int | None = None) -> float:
        """Seconds `units` more knob units (default: all remaining) will take: the program's
        own pace so far (seconds per unit at its last report), before that its work at
        `prior_token_rate`."""
        n = prog.remaining_units if units is None else units
        if prog.seconds_per_unit is not None:
            return n * prog.seconds_per_unit
        return n * self.tokens_per_unit(prog) / self.config.prior_token_rate
