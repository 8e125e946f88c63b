"""Label-free calibration of the SC stop rule: thresholds fitted to the full-budget answer.

Early exit must keep the answer the program gives at its cap, and that needs no label: every
full-budget run says, for each candidate stop rule, whether stopping by that rule would have
returned the same answer (`RecordedRun.full_answer`). Each policy family is one sequence of
candidates, most conservative first (a threshold from strict to loose); `policy.risk` certifies
the most permissive candidate of each whose disagreement rate with the full budget is at most
ε with confidence 1 − δ (Learn-then-Test, fixed-sequence testing, δ shared over the families),
and the chosen rule is the certified candidate that used the fewest tokens. When nothing is
certified (too few programs for the bound, or rules that disagree too often) the choice is the
full budget. `cross_fit` measures the procedure honestly: each fold's questions are decided by
thresholds fitted on the other folds only. Gold answers, where present, are only reported.
Pure: no I/O.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dynasor_sgl.answers.equivalence import equivalent
from dynasor_sgl.policy import risk
from dynasor_sgl.policy.config import DEFAULTS, PolicyConfig
from dynasor_sgl.replay import holdout
from dynasor_sgl.replay.engine import same_answer
from dynasor_sgl.replay.sampled import Outcome, RecordedRun, replay_policy
from dynasor_sgl.replay.trimmed import replay_trimmed

ENTROPY_GRID = (1.0, 0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0.65, 0.6, 0.55, 0.5, 0.45, 0.4, 0.35, 0.3)
POSTERIOR_GRID = (0.999, 0.995, 0.99, 0.98, 0.95, 0.9, 0.85, 0.8, 0.7, 0.6)
ETA_GRID = (90.0, 70.0, 50.0, 30.0, 10.0)  # DeepConf's η: 90 trims least, 10 most
# How often the sequential families read certaindex: the shipped SC pace (`policy.config`).
SEQUENTIAL_EVERY = int(DEFAULTS["sc"]["detect_every"])


@dataclass(frozen=True)
class Candidate:
    """One stop rule: its label and the SC policy that replays it (trimming where the policy
    sets a confidence window)."""

    label: str
    config: PolicyConfig

    def outcome(self, run: RecordedRun) -> Outcome:
        if self.config.confidence_window:
            return replay_trimmed(run.run, self.config)
        return replay_policy(run.run, self.config)


@dataclass(frozen=True)
class Family:
    """A policy family: its candidates in a fixed order, most conservative first."""

    name: str
    candidates: tuple[Candidate, ...]


def _sc(cap: int, **overrides: Any) -> PolicyConfig:
    return PolicyConfig.for_algorithm("sc", cap=cap, **overrides)


def sc_families(cap: int, confidences: bool = False) -> list[Family]:
    """The SC families fitted by default: entropy read once at 5 (the paper's rule), entropy,
    the majority posterior and the full-budget posterior read at 5 and then every 5 samples
    (the shipped pace, drawn in batches of 5), and, for runs that recorded token confidences,
    confidence trimming (its stop at the cap). A cap below 5 reads from the cap.

    The full-budget posterior (`certaindex.full_budget_posterior`) is the probability of the
    very event the bound is on: the leader still wins at the cap. On the 200 recorded runs
    with the worked example (docs/results/selfcal-defaults.md) it is what the calibration
    certifies (0.95: 30.8% of add1's tokens and 10.5% of apples' saved, none differ) where the
    majority posterior certified 0.9 (21.3% and 4.1%); on the runs before the example the
    majority posterior 0.8 stays the pick; on 400 runs with the example (four built-in task
    recordings) it certifies 0.9, the embedded model's preset since. It costs δ: split over
    one family more (δ / 4, δ / 5 with trimming), so a key needs 183 programs at ε 0.02,
    δ 0.1 where it needed 169.

    Sequential reading is at the shipped pace, not after every sample: on the 200 recorded
    built-in runs (add1 and apples, cap 20) it certifies looser rules at eps 0.02 and saves
    more (posterior 0.8 every 5: 10.5% of tokens, none differ; the best rule read after every
    sample, posterior 0.95: 9.8%), and it keeps a program's samples in parallel batches where
    reading after every sample draws them one at a time (docs/results/selfcal-defaults.md)."""
    first = min(SEQUENTIAL_EVERY, cap)  # a cap below 5 reads from its cap
    every = {
        "initial": first,
        "pace": SEQUENTIAL_EVERY,
        "detect_at": first,
        "detect_every": SEQUENTIAL_EVERY,
    }
    families = [
        Family(
            "entropy, once at 5",
            tuple(
                Candidate(f"entropy {t:g}", _sc(cap, detect_every=0, thresholds={"entropy": t}))
                for t in ENTROPY_GRID
            ),
        ),
        Family(
            f"entropy, every {SEQUENTIAL_EVERY}",
            tuple(
                Candidate(f"entropy {t:g}", _sc(cap, **every, thresholds={"entropy": t}))
                for t in ENTROPY_GRID
            ),
        ),
        Family(
            f"posterior, every {SEQUENTIAL_EVERY}",
            tuple(
                Candidate(f"posterior {c:g}", _sc(cap, **every, rule="posterior", confidence=c))
                for c in POSTERIOR_GRID
            ),
        ),
        Family(
            f"full-budget posterior, every {SEQUENTIAL_EVERY}",
            tuple(
                Candidate(
                    f"full-budget posterior {c:g}",
                    _sc(cap, **every, rule="posterior", posterior_of="full_budget", confidence=c),
                )
                for c in POSTERIOR_GRID
            ),
        ),
    ]
    if confidences:
        full = {"initial": cap, "pace": cap, "detect_at": cap, "detect_every": 0}
        trim = {"confidence_window": 8, "warmup": 4}
        families.append(
            Family(
                "confidence trimming",
                tuple(
                    Candidate(f"eta {eta:g}", _sc(cap, **full, **trim, confidence_percentile=eta))
                    for eta in ETA_GRID
                ),
            )
        )
    return families


@dataclass(frozen=True)
class Scores:
    """Per program (rows) and candidate (columns): disagreement with the full budget (0/1),
    tokens, and correctness where the gold answer is known (NaN where not)."""

    losses: np.ndarray
    tokens: np.ndarray
    correct: np.ndarray


def score(family: Family, runs: Sequence[RecordedRun]) -> Scores:
    """Replays every candidate of `family` over every run."""
    shape = (len(runs), len(family.candidates))
    losses, tokens, correct = np.zeros(shape), np.zeros(shape), np.full(shape, np.nan)
    for i, run in enumerate(runs):
        full = run.full_answer()
        for j, candidate in enumerate(family.candidates):
            out = candidate.outcome(run)
            losses[i, j] = not same_answer(out.answer, full)
            tokens[i, j] = out.tokens
            if run.gold is not None:
                correct[i, j] = equivalent(out.answer, run.gold)
    return Scores(losses, tokens, correct)


@dataclass(frozen=True)
class Fit:
    """What a calibration set certifies: per family the last candidate certified (None: none)
    and the chosen family and candidate (None: run to the cap), with the bound it holds."""

    n: int
    epsilon: float
    delta: float
    certified: dict[str, Candidate | None]
    family: str | None
    candidate: Candidate | None

    def to_dict(self) -> dict[str, Any]:
        def show(c: Candidate | None) -> dict[str, Any] | None:
            return None if c is None else {"label": c.label, "policy": c.config.to_dict()}

        return {
            "programs": self.n,
            "epsilon": self.epsilon,
            "delta": self.delta,
            "certifiable_epsilon": risk.certifiable_epsilon(self.n, self.delta),
            "family": self.family,
            "candidate": show(self.candidate),
            "certified": {name: show(c) for name, c in self.certified.items()},
        }


def fit(
    runs: Sequence[RecordedRun],
    families: Sequence[Family],
    epsilon: float = risk.DEFAULT_EPSILON,
    delta: float = risk.DEFAULT_DELTA,
    scored: Sequence[Scores] | None = None,
) -> Fit:
    """Certifies each family's sequence at δ / len(families) and chooses, among the certified
    candidates, the one with the fewest tokens over `runs` (`scored`: their scores, if already
    computed, one per family)."""
    risk.check_levels(epsilon, delta)
    scores = list(scored) if scored is not None else [score(f, runs) for f in families]
    outcomes = risk.certify([s.losses for s in scores], epsilon, delta)
    certified: dict[str, Candidate | None] = {}
    best: tuple[float, str, Candidate] | None = None
    for family, s, out in zip(families, scores, outcomes, strict=True):
        if out.index is None:
            certified[family.name] = None
            continue
        candidate = family.candidates[out.index]
        certified[family.name] = candidate
        spent = float(s.tokens[:, out.index].sum())
        if best is None or spent < best[0]:
            best = (spent, family.name, candidate)
    return Fit(
        len(runs),
        epsilon,
        delta,
        certified,
        None if best is None else best[1],
        None if best is None else best[2],
    )


def fold_of(question_id: str, folds: int) -> int:
    """A question's fold: `replay.holdout.fold_of`, the one assignment every held-out check
    uses (the same on every machine)."""
    return holdout.fold_of(question_id, folds)


@dataclass(frozen=True)
class Measured:
    """A rule decided per fold on the other folds, over all the questions: how many, total
    tokens, disagreements with the full budget, and correct answers (None: no gold)."""

    n: int
    tokens: float
    disagreements: int
    correct: int | None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def cross_fit(
    runs: Sequence[RecordedRun],
    families: Sequence[Family],
    epsilon: float = risk.DEFAULT_EPSILON,
    delta: float = risk.DEFAULT_DELTA,
    folds: int = 2,
    scored: Sequence[Scores] | None = None,
) -> dict[str, Any]:
    """The self-calibrated rule (and each family alone, certified at δ) measured on questions
    whose own samples never fitted it: for each fold, fitted on the others. Also the full
    budget over the same questions, and each fold's fit. `scored`: the families' scores over
    `runs`, if already computed (as `fit` takes them)."""
    if folds < 2:
        raise ValueError(f"cross-fitting needs at least 2 folds, got {folds}")
    scores = list(scored) if scored is not None else [score(f, runs) for f in families]
    part = np.array([fold_of(r.question_id, folds) for r in runs])
    chosen = _Tally()
    alone = {f.name: _Tally() for f in families}
    fits = []
    for k in range(folds):
        train, test = np.flatnonzero(part != k), np.flatnonzero(part == k)
        if not len(test):
            continue
        sub = [_rows(s, train) for s in scores]
        joint = fit([runs[int(i)] for i in train], families, epsilon, delta, sub)
        fits.append(joint.to_dict())
        for f, s, s_train in zip(families, scores, sub, strict=True):
            own = risk.fixed_sequence(s_train.losses, epsilon, delta).index
            alone[f.name].add(s, test, own, runs)
            if joint.family == f.name and joint.candidate is not None:
                chosen.add(s, test, f.candidates.index(joint.candidate), runs)
        if joint.candidate is None:
            chosen.add(scores[0], test, None, runs)
    return {
        "folds": folds,
        "epsilon": epsilon,
        "delta": delta,
        "self_calibrated": chosen.result().to_dict(),
        "families": {name: t.result().to_dict() for name, t in alone.items()},
        "full_budget": full_budget(runs).to_dict(),
        "fits": fits,
    }


def _rows(s: Scores, rows: np.ndarray) -> Scores:
    return Scores(s.losses[rows], s.tokens[rows], s.correct[rows])


class _Tally:
    """Outcomes of the questions of each fold under the candidate chosen for that fold (None:
    the full budget)."""

    def __init__(self) -> None:
        self.n, self.tokens, self.disagreements = 0, 0.0, 0
        self.correct: int | None = 0

    def add(
        self, s: Scores, rows: np.ndarray, column: int | None, runs: Sequence[RecordedRun]
    ) -> None:
        self.n += len(rows)
        if column is None:
            full = full_budget([runs[int(i)] for i in rows])
            self.tokens += full.tokens
            self._count(full.correct)
            return
        self.tokens += float(s.tokens[rows, column].sum())
        self.disagreements += int(s.losses[rows, column].sum())
        right = s.correct[rows, column]
        self._count(None if np.isnan(right).any() else int(right.sum()))

    def _count(self, correct: int | None) -> None:
        self.correct = None if correct is None or self.correct is None else self.correct + correct

    def result(self) -> Measured:
        return Measured(self.n, self.tokens, self.disagreements, self.correct)


def full_budget(runs: Sequence[RecordedRun]) -> Measured:
    """`runs` at their full budget: tokens and correct answers (None: not every run has gold)."""
    tokens = float(sum(r.run.tokens_at(len(r.run.answers)) for r in runs))
    known = [r for r in runs if r.gold is not None]
    correct = (
        sum(equivalent(r.full_answer(), r.gold) for r in known) if len(known) == len(runs) else None
    )
    return Measured(len(runs), tokens, 0, correct)
