"""Replaying a policy over a recorded run: the one engine calibration and eval use.

A recorded run is a list of points, strictly increasing in knob units used, at which a report
can be made (SC: after each sample; CoT: after each probe). The replay walks it the way the live
program would: the first report at the first point with at least `initial` units, then, after
each decision that does not stop, at the first point with at least `used + grant` units, until
the policy stops or the run ends. Because it runs the real `ProgramPolicy`, a replay stops where
the router would have. Also the oracle (the earliest point after which the answer no longer
changes). Pure: no I/O, no clock; it knows nothing about how the points were recorded.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from dynasor_sgl.answers import equivalence as _answers
from dynasor_sgl.policy.machine import Action, PolicyConfig, ProgramPolicy, Report


@dataclass(frozen=True)
class Replayed:
    """Where a replay ended: the point's index and knob units, why (a stop reason, or "cap"
    when the run ended first), and the certaindex read on the way ([{"used": knob units at
    the reading, signal: value}]; older results files call those units "step", and
    `eval.report` reads both)."""

    index: int
    used: int
    exit_reason: str
    certaindex: list[dict[str, Any]] = field(default_factory=list)


def replay_run(
    config: PolicyConfig, used: Sequence[int], report_at: Callable[[int], Report]
) -> Replayed:
    """Replays `config` over a run whose points are at `used` (strictly increasing, at least
    one); `report_at(i)` is the report the program made at point i."""
    if not used:
        raise ValueError("a replayed run needs at least one point")
    policy = ProgramPolicy(config)
    i = first_at(used, config.initial)
    trajectory: list[dict[str, Any]] = []
    while True:
        decision = policy.decide(report_at(i))
        if decision.values:
            trajectory.append({"used": used[i], **decision.values})
        if decision.action is Action.STOP or i == len(used) - 1:
            reason = str(decision.reason) if decision.reason else "cap"
            return Replayed(i, used[i], reason, trajectory)
        i = first_at(used, used[i] + decision.grant)


def first_at(used: Sequence[int], units: int) -> int:
    """The first point with at least `units` used; the last point if none has (where a fixed
    cap of `units` stops: `replay.holdout.fixed_cap`, `replay.sampled.replay_cap`)."""
    return min(bisect.bisect_left(used, units), len(used) - 1)


def oracle_index(answers: Sequence[str | None]) -> int:
    """Earliest index after which the answer equals the final one at every later record."""
    final = answers[-1]
    i = len(answers) - 1
    while i > 0 and same_answer(answers[i - 1], final):
        i -= 1
    return i


def same_answer(a: str | None, b: str | None) -> bool:
    """Whether two answers are the same outcome: equivalent, or both no answer at all."""
    return (not _answers.normalize(a) and not _answers.normalize(b)) or _answers.equivalent(a, b)
