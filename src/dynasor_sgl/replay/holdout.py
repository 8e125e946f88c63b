"""A held-out check of calibration: thresholds chosen on one part of the runs, measured on the rest.

The runs are split by a hash of their id (`program_id`, the question id for an eval), so the
split is the same on every machine and run and does not depend on the order of the file. The
chosen policy is replayed over the held-out runs and set beside what the same runs give at the
full budget and at each fixed cap (the even-budget baseline with fewer units), which is the
honest comparison: tokens saved at accuracy measured on questions the thresholds never saw.
Pure: no I/O.
"""

from __future__ import annotations

import bisect
import dataclasses
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dynasor_sgl.answers import equivalence as _answers
from dynasor_sgl.replay.calibration import CalibrationResult, calibrate, replay
from dynasor_sgl.replay.labelled import LabelledRun


def held_out(program_id: str, fraction: float) -> bool:
    """Whether a run is in the held-out part: the first 8 bytes of the SHA-256 of its id, read
    as a number in [0, 1), fall below `fraction`."""
    digest = hashlib.sha256(program_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def split(
    runs: Sequence[LabelledRun], fraction: float
) -> tuple[list[LabelledRun], list[LabelledRun]]:
    """(runs to calibrate on, held-out runs); `fraction` in (0, 1), both parts non-empty."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"holdout fraction must be in (0, 1), got {fraction!r}")
    tune = [r for r in runs if not held_out(r.program_id, fraction)]
    held = [r for r in runs if held_out(r.program_id, fraction)]
    if not tune or not held:
        raise ValueError(
            f"holdout fraction {fraction} splits {len(runs)} runs into {len(tune)} to calibrate "
            f"on and {len(held)} held out; both need at least one"
        )
    return tune, held


@dataclass(frozen=True)
class Point:
    """Accuracy in [0, 1] and total tokens of one policy over the held-out runs."""

    accuracy: float
    tokens: int


@dataclass(frozen=True)
class HoldoutReport:
    """What the policy calibrated on `n_tuned` runs does on `n_held` others.

    policy: the chosen policy (the full budget when calibration chose none). full: every run at
    its cap. caps: knob value -> each run stopped at that fixed cap (or its end), one entry per
    knob value the held-out runs reported at. matched_cap: the most accurate fixed cap that
    uses no more tokens than the policy (None if every cap uses more).
    """

    fraction: float
    n_tuned: int
    n_held: int
    policy: Point
    full: Point
    caps: dict[int, Point]
    matched_cap: int | None

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["caps"] = {str(k): dataclasses.asdict(v) for k, v in self.caps.items()}
        return data


def fixed_cap(runs: Sequence[LabelledRun], cap: int) -> Point:
    """Each run stopped at its first report with at least `cap` units (its last if none)."""
    correct, tokens = 0, 0
    for run in runs:
        used = [r.used for r in run.records]
        record = run.records[min(bisect.bisect_left(used, cap), len(used) - 1)]
        correct += _answers.equivalent(record.final_answer(), run.correct)
        tokens += record.tokens
    return Point(correct / len(runs), tokens)


def measure(
    held: Sequence[LabelledRun],
    result: CalibrationResult,
    n_tuned: int,
    fraction: float,
    probe_window: int = 3,
) -> HoldoutReport:
    """The held-out report of a calibration `result` chosen on `n_tuned` other runs."""
    full = fixed_cap(held, max(r.records[-1].used for r in held))
    policy = full
    if result.thresholds is not None and result.detect_at is not None:
        replayed = replay(
            held, result.thresholds, result.detect_at, result.detect_every, probe_window
        )
        policy = Point(replayed.accuracy, replayed.tokens)
    caps = {k: fixed_cap(held, k) for k in sorted({r.used for run in held for r in run.records})}
    within = [k for k, p in caps.items() if p.tokens <= policy.tokens]
    matched = max(within, key=lambda k: (caps[k].accuracy, k)) if within else None
    return HoldoutReport(fraction, n_tuned, len(held), policy, full, caps, matched)


def calibrate_held_out(
    runs: Sequence[LabelledRun], fraction: float, **options: Any
) -> tuple[CalibrationResult, HoldoutReport]:
    """Calibrate on the runs not held out (`options` go to `calibrate`), measure on the rest."""
    tune, held = split(runs, fraction)
    result = calibrate(tune, **options)
    window = int(options.get("probe_window", 3))
    return result, measure(held, result, len(tune), fraction, window)


def one_line(report: HoldoutReport) -> str:
    """The held-out comparison in one line: policy, full budget, the matched fixed cap."""

    def show(p: Point) -> str:
        return f"{100 * p.accuracy:.1f}% / {p.tokens / report.n_held:.0f} tokens"

    line = (
        f"held out {report.n_held} runs (thresholds from {report.n_tuned}): policy "
        f"{show(report.policy)}, full budget {show(report.full)}"
    )
    if report.matched_cap is not None:
        cap = report.matched_cap
        line += f", fixed cap {cap} {show(report.caps[cap])}"
    return line + " (accuracy / mean tokens)"
