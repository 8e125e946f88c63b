"""Calibration: replay labelled runs offline and choose certaindex thresholds.

Input is plain data (from JSON): per program, the reports it made along a full-budget
run (answers so far, cumulative tokens, optionally precomputed signals) and the correct answer.
Each candidate (thresholds × detection point × how often certaindex is read after that) is
replayed through the real `ProgramPolicy` by `dynasor_sgl.replay.engine` (the engine eval uses too),
so calibration and serving stop at the same points.
The chosen candidate keeps accuracy within `margin` of the full-budget accuracy and uses the
fewest tokens (`holdout.cheapest_within`, the one rule); the accuracy-vs-tokens frontier of all
candidates is reported with it. Also reports the oracle (stop at the earliest report after which
the final answer never changes). No I/O, no clock.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from dynasor_sgl.answers import equivalence as _answers
from dynasor_sgl.policy import certaindex as ci
from dynasor_sgl.policy.machine import PolicyConfig, Report
from dynasor_sgl.replay.engine import oracle_index, replay_run
from dynasor_sgl.replay.holdout import TOLERANCE, cheapest_within
from dynasor_sgl.replay.labelled import LabelledRun, ReportRecord

__all__ = [
    "CalibrationResult",
    "LabelledRun",
    "ReportRecord",
    "calibrate",
    "oracle_index",
    "replay",
]

logger = logging.getLogger(__name__)

P = TypeVar("P")
DEFAULT_GRID: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(21))


@dataclass(frozen=True)
class ReplayResult:
    """Outcome of one candidate over all runs: accuracy in [0, 1], total tokens, per-run stops."""

    accuracy: float
    tokens: int
    stop_at: tuple[int, ...]
    stopped_early: int


@dataclass(frozen=True)
class CalibrationResult:
    """The chosen thresholds (None = no candidate met the target: run to the cap)."""

    thresholds: dict[str, float] | None
    detect_at: int | None
    accuracy: float
    tokens: int
    full_accuracy: float
    full_tokens: int
    saving: float
    oracle_tokens: int
    oracle_saving: float
    n_programs: int
    stopped_early: int
    detect_every: int = 0
    frontier: tuple[dict[str, Any], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class _Prepared:
    used: list[int]
    tokens: list[int]
    answers: list[str | None]
    correct: list[bool]
    values: list[dict[str, float]]


def record_signals(record: ReportRecord, probe_window: int = 3) -> dict[str, float]:
    """entropy, posterior and consistency of a record's answers; its own `values` win."""
    values: dict[str, float] = {}
    if record.answers:
        sizes = _answers.cluster_sizes(record.answers)
        values["entropy"] = ci.entropy_certaindex_from_sizes(sizes)
        values["posterior"] = ci.majority_posterior(sizes)
        texts = record.probe_texts if len(record.probe_texts) == len(record.answers) else None
        values["consistency"] = ci.probe_consistency(record.answers, texts, probe_window)
    values.update(record.values)
    return values


def _prepare(run: LabelledRun, probe_window: int) -> _Prepared:
    answers = [r.final_answer() for r in run.records]
    return _Prepared(
        used=[r.used for r in run.records],
        tokens=[r.tokens for r in run.records],
        answers=answers,
        correct=[_answers.equivalent(a, run.correct) for a in answers],
        values=[record_signals(r, probe_window) for r in run.records],
    )


def _stop_index(prep: _Prepared, config: PolicyConfig) -> int:
    def report_at(i: int) -> Report:
        return Report(used=prep.used[i], values=prep.values[i])

    return replay_run(config, prep.used, report_at).index


def _replay(
    preps: Sequence[_Prepared], thresholds: Mapping[str, float], detect_at: int, detect_every: int
) -> ReplayResult:
    cap = max(p.used[-1] for p in preps)
    config = PolicyConfig(
        cap=cap,
        initial=min(detect_at, cap),
        detect_at=min(detect_at, cap),
        detect_every=detect_every,
        pace=detect_every or 1,  # as the live program calibrated here draws (eval.calibrate)
        thresholds=dict(thresholds),
    )
    stops = [_stop_index(p, config) for p in preps]
    correct = sum(p.correct[i] for p, i in zip(preps, stops, strict=True))
    return ReplayResult(
        accuracy=correct / len(preps),
        tokens=sum(p.tokens[i] for p, i in zip(preps, stops, strict=True)),
        stop_at=tuple(p.used[i] for p, i in zip(preps, stops, strict=True)),
        stopped_early=sum(i < len(p.used) - 1 for p, i in zip(preps, stops, strict=True)),
    )


def replay(
    runs: Sequence[LabelledRun],
    thresholds: Mapping[str, float],
    detect_at: int,
    detect_every: int = 0,
    probe_window: int = 3,
) -> ReplayResult:
    """Replays `runs` through a threshold policy; the last record of a run is its cap."""
    if not runs:
        raise ValueError("replay needs at least one run")
    return _replay([_prepare(r, probe_window) for r in runs], thresholds, detect_at, detect_every)


@dataclass(frozen=True)
class _Candidate:
    thresholds: dict[str, float]
    detect_at: int
    detect_every: int
    result: ReplayResult

    def point(self) -> dict[str, Any]:
        return {
            "thresholds": self.thresholds,
            "detect_at": self.detect_at,
            "detect_every": self.detect_every,
            "accuracy": self.result.accuracy,
            "tokens": self.result.tokens,
        }


def _candidates(
    preps: Sequence[_Prepared],
    grid: Mapping[str, Sequence[float]],
    detect_ats: Sequence[int],
    everys: Sequence[int],
) -> list[_Candidate]:
    names = sorted(grid)
    out = []
    for combo in itertools.product(*(sorted(grid[n]) for n in names)):
        thresholds = dict(zip(names, combo, strict=True))
        for at, every in itertools.product(detect_ats, everys):
            out.append(_Candidate(thresholds, at, every, _replay(preps, thresholds, at, every)))
    return out


def _cheapest(candidates: Sequence[_Candidate], min_accuracy: float) -> _Candidate | None:
    """`holdout.cheapest_within` over the candidates; equal tokens and accuracy go to reading
    once or more rarely (larger batches keep samples in parallel), later detection and higher
    thresholds."""

    def prefer(c: _Candidate) -> tuple[Any, ...]:
        cautious = tuple(-t for t in c.thresholds.values())
        return (c.detect_every == 0, -c.detect_every, -c.detect_at, cautious)

    best = cheapest_within(
        [c.result.accuracy for c in candidates],
        [c.result.tokens for c in candidates],
        min_accuracy,
        [prefer(c) for c in candidates],
    )
    return None if best is None else candidates[best]


def frontier(
    points: Sequence[P], accuracy: Callable[[P], float], tokens: Callable[[P], float]
) -> list[P]:
    """The accuracy-vs-tokens frontier: the points no other beats on both counts, by tokens,
    each more accurate than every cheaper one (the curve `calibrate` reports and the eval's
    curves are compared on)."""
    best: list[P] = []
    for p in sorted(points, key=lambda p: (tokens(p), -accuracy(p))):
        if not best or accuracy(p) > accuracy(best[-1]) + TOLERANCE:
            best.append(p)
    return best


def calibrate(
    runs: Sequence[LabelledRun],
    grid: Mapping[str, Sequence[float]] | None = None,
    detect_ats: Sequence[int] | None = None,
    margin: float = 0.0,
    detect_every: int | Sequence[int] = 0,
    probe_window: int = 3,
) -> CalibrationResult:
    """Chooses thresholds that keep accuracy ≥ full-budget accuracy − `margin`, fewest tokens.

    grid: signal -> candidate thresholds (default entropy over 0, 0.05, …, 1); several signals
    are searched jointly (all must pass). detect_ats: candidate detection points (default:
    every knob value the runs reported at). detect_every: how often certaindex is read after the
    first reading (0 = once, the paper's rule; k = every k units), one value or candidates
    searched jointly. Ties: fewer tokens, then higher accuracy, then reading once or more
    rarely (larger batches keep samples in parallel), later detection and higher thresholds.
    """
    if not runs:
        raise ValueError("calibrate needs at least one run")
    if not 0.0 <= margin <= 1.0:
        raise ValueError(f"margin must be in [0, 1], got {margin!r}")
    everys = sorted({detect_every} if isinstance(detect_every, int) else set(detect_every))
    if not everys or everys[0] < 0:
        raise ValueError(f"detect_every must be >= 0, got {detect_every!r}")
    grid = dict(grid or {"entropy": DEFAULT_GRID})
    preps = [_prepare(r, probe_window) for r in runs]
    ats = sorted({k for k in (detect_ats or [k for p in preps for k in p.used]) if k >= 1})
    full_acc = sum(p.correct[-1] for p in preps) / len(preps)
    full_tokens = sum(p.tokens[-1] for p in preps)
    oracle_tokens = sum(p.tokens[oracle_index(p.answers)] for p in preps)
    candidates = _candidates(preps, grid, ats, everys)
    best = _cheapest(candidates, full_acc - margin)
    curve = frontier(candidates, lambda c: c.result.accuracy, lambda c: c.result.tokens)
    points = tuple(c.point() for c in curve)
    return _result(best, full_acc, full_tokens, oracle_tokens, len(runs), points)


def _result(
    best: _Candidate | None,
    full_acc: float,
    full_tokens: int,
    oracle_tokens: int,
    n_programs: int,
    points: tuple[dict[str, Any], ...],
) -> CalibrationResult:
    def saving(tokens: int) -> float:
        return 1.0 - tokens / full_tokens if full_tokens else 0.0

    common: dict[str, Any] = {
        "full_accuracy": full_acc,
        "full_tokens": full_tokens,
        "oracle_tokens": oracle_tokens,
        "oracle_saving": saving(oracle_tokens),
        "n_programs": n_programs,
        "frontier": points,
    }
    if best is None:
        return CalibrationResult(
            None, None, full_acc, full_tokens, saving=0.0, stopped_early=0, **common
        )
    result = best.result
    logger.info(
        "calibrated %s at %d, read every %d: accuracy %.3f (full %.3f), saving %.1f%%",
        *(best.thresholds, best.detect_at, best.detect_every, result.accuracy, full_acc),
        100 * saving(result.tokens),
    )
    return CalibrationResult(
        best.thresholds,
        best.detect_at,
        result.accuracy,
        result.tokens,
        saving=saving(result.tokens),
        stopped_early=result.stopped_early,
        detect_every=best.detect_every,
        **common,
    )
