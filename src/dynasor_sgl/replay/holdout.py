"""The one held-out procedure: settings chosen on one part of the questions, measured on the
other, both ways round, and the one rule that chooses ("the cheapest within the margin").

The fold of a question comes from a hash of its id (`unit`), so the split is the same on every
machine and run and does not depend on the order of a file; `held_out`, `fold_of` (label-free
cross-fitting, `replay.selfcal`) and `two_folds` all read that one number. `two_fold` runs any
fit-then-measure pair over the two parts and pools: every question is measured exactly once, by
a setting chosen without it. `cheapest_within` is the choice every caller makes (`calibrate`,
`calibrate --holdout`, the bench scripts): the fewest tokens among the settings whose accuracy
reaches the floor, or none (run to the full budget). `fixed_cap` is the even-budget baseline
the chosen policy is set beside. Pure: no I/O.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from dynasor_sgl.answers import equivalence as _answers
from dynasor_sgl.replay.engine import first_at
from dynasor_sgl.replay.labelled import LabelledRun

T = TypeVar("T")
TOLERANCE = 1e-9  # accuracies closer than this to the floor reach it
FULL_BUDGET = "full budget"  # the setting `choose_held_out` reports when none reaches the floor


def unit(question_id: str) -> float:
    """A question's place in [0, 1): the first 8 bytes of the SHA-256 of its id over 2**64."""
    digest = hashlib.sha256(question_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def held_out(question_id: str, fraction: float) -> bool:
    """Whether a question is in the held-out part: its `unit` falls below `fraction`."""
    return unit(question_id) < fraction


def fold_of(question_id: str, folds: int) -> int:
    """A question's fold among `folds`: floor(unit * folds), so fold 0 of 2 is `held_out` at 0.5."""
    if folds < 1:
        raise ValueError(f"folds must be >= 1, got {folds}")
    return min(int(unit(question_id) * folds), folds - 1)


def two_folds(ids: Sequence[str], fraction: float = 0.5) -> tuple[list[int], list[int]]:
    """(indices not held out, indices held out) of `ids`; `fraction` in (0, 1), both non-empty."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"holdout fraction must be in (0, 1), got {fraction!r}")
    held = [i for i, q in enumerate(ids) if held_out(q, fraction)]
    rest = [i for i, q in enumerate(ids) if not held_out(q, fraction)]
    if not held or not rest:
        raise ValueError(
            f"holdout fraction {fraction} splits {len(ids)} questions into {len(rest)} and "
            f"{len(held)}; both parts need at least one"
        )
    return rest, held


@dataclass(frozen=True)
class Point:
    """Accuracy in [0, 1] and total tokens over some questions."""

    accuracy: float
    tokens: float


@dataclass(frozen=True)
class Pooled:
    """Both folds of `two_fold`: accuracy and total tokens over all the questions, each measured
    by the setting chosen on the other part (`chosen`, one per fold, in fold order)."""

    n: int
    point: Point
    chosen: tuple[Any, ...] = field(default_factory=tuple)


def two_fold(
    ids: Sequence[str],
    fit: Callable[[list[int]], T],
    measure: Callable[[T, list[int]], tuple[int, float]],
    fraction: float = 0.5,
) -> Pooled:
    """The held-out procedure: `fit(tune indices)` chooses a setting, `measure(setting, held
    indices)` gives (correct answers, tokens) on the others; both ways round, pooled."""
    rest, held = two_folds(ids, fraction)
    correct, tokens, chosen = 0, 0.0, []
    for tune, test in ((rest, held), (held, rest)):
        setting = fit(tune)
        right, spent = measure(setting, test)
        correct, tokens = correct + right, tokens + spent
        chosen.append(setting)
    return Pooled(len(ids), Point(correct / len(ids), tokens), tuple(chosen))


def cheapest_within(
    accuracy: Sequence[float],
    tokens: Sequence[float],
    floor: float,
    order: Sequence[Any] | None = None,
) -> int | None:
    """The rule: the index of the candidate with the fewest tokens among those whose accuracy is
    at least `floor`; ties go to the higher accuracy, then the smaller `order` key (default: the
    earlier candidate). None when no candidate reaches the floor: run to the full budget."""
    keys = order if order is not None else range(len(accuracy))
    ok = [i for i, a in enumerate(accuracy) if a >= floor - TOLERANCE]
    if not ok:
        return None
    return min(ok, key=lambda i: (tokens[i], -accuracy[i], keys[i]))


Table = Mapping[str, tuple[np.ndarray, np.ndarray]]  # setting -> per question (correct, tokens)


def choose_held_out(
    table: Table,
    full: tuple[np.ndarray, np.ndarray],
    ids: Sequence[str],
    margin: float,
) -> dict[str, Any]:
    """Replayed settings (`table`, per question 0/1 correct and tokens) through the held-out
    procedure: on each part, `cheapest_within` the margin of that part's full-budget accuracy
    (`full`), measured on the other part; the full budget where none reaches the floor."""
    names = list(table)

    def fit(tune: list[int]) -> str:
        acc = [float(table[s][0][tune].mean()) for s in names]
        spent = [float(table[s][1][tune].sum()) for s in names]
        best = cheapest_within(acc, spent, float(full[0][tune].mean()) - margin)
        return FULL_BUDGET if best is None else names[best]

    def measure(setting: str, held: list[int]) -> tuple[int, float]:
        correct, spent = full if setting == FULL_BUDGET else table[setting]
        return int(correct[held].sum()), float(spent[held].sum())

    pooled = two_fold(ids, fit, measure)
    return {
        "accuracy": pooled.point.accuracy,
        "correct": round(pooled.point.accuracy * pooled.n),
        "mean_tokens": pooled.point.tokens / pooled.n,
        "saved": 1 - pooled.point.tokens / float(full[1].sum()),
        "chosen": list(pooled.chosen),
    }


def fixed_cap(runs: Sequence[LabelledRun], cap: int) -> Point:
    """Each run stopped at its first report with at least `cap` units (its last if none): the
    even-budget baseline, as `replay.sampled.replay_cap` stops a sampled run."""
    correct, tokens = 0, 0
    for run in runs:
        record = run.records[first_at([r.used for r in run.records], cap)]
        correct += _answers.equivalent(record.final_answer(), run.correct)
        tokens += record.tokens
    return Point(correct / len(runs), tokens)


@dataclass(frozen=True)
class HoldoutReport:
    """What a calibration does on questions it never saw, both ways round (`two_fold`).

    fraction: the part held out first. n_held: every question (each measured once). policy:
    the chosen policies, pooled. full: every run at its cap. caps: knob value -> every run at
    that fixed cap. matched_cap: the most accurate fixed cap that uses no more tokens than the
    policy (None if every cap uses more). folds: what each fold chose, on how many runs.
    """

    fraction: float
    n_held: int
    policy: Point
    full: Point
    caps: dict[int, Point]
    matched_cap: int | None
    folds: tuple[dict[str, Any], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["caps"] = {str(k): dataclasses.asdict(v) for k, v in self.caps.items()}
        return data


def report(
    runs: Sequence[LabelledRun], pooled: Pooled, fraction: float, folds: Sequence[dict[str, Any]]
) -> HoldoutReport:
    """The held-out report of `pooled` (from `two_fold` over `runs`) beside the full budget
    and every fixed cap over the same runs."""
    full = fixed_cap(runs, max(r.records[-1].used for r in runs))
    caps = {k: fixed_cap(runs, k) for k in sorted({r.used for run in runs for r in run.records})}
    policy = pooled.point
    within = [k for k, p in caps.items() if p.tokens <= policy.tokens]
    matched = max(within, key=lambda k: (caps[k].accuracy, k)) if within else None
    return HoldoutReport(fraction, len(runs), policy, full, caps, matched, tuple(folds))


def one_line(report: HoldoutReport) -> str:
    """The held-out comparison in one line: policy, full budget, the matched fixed cap."""

    def show(p: Point) -> str:
        return f"{100 * p.accuracy:.1f}% / {p.tokens / report.n_held:.0f} tokens"

    line = (
        f"held out, 2-fold over {report.n_held} runs (each part's thresholds from the other): "
        f"policy {show(report.policy)}, full budget {show(report.full)}"
    )
    if report.matched_cap is not None:
        cap = report.matched_cap
        line += f", fixed cap {cap} {show(report.caps[cap])}"
    return line + " (accuracy / mean tokens)"
