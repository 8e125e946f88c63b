"""The eval's "dynasor" row for self-consistency: the self-calibrated policy, held out.

Each question's stop rule is fitted label free (`replay.selfcal.fit`: Learn-then-Test on the
disagreement with the full budget, at most ε with confidence 1 − δ) on the full-budget runs of
the *other* fold only (`replay.holdout.two_fold`, the one held-out procedure and fold
assignment), then replayed over the question's own samples. So no question's decision uses its
own samples, and no decision sees a gold answer: the runs handed to the fit carry none. A fold
whose runs certify nothing runs its questions to the full budget. The records it returns are
derived from the stored baseline records whenever the reports are written, never stored, so a
resumed results file always gets the rows its complete set of questions gives. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dynasor_sgl.answers.equivalence import equivalent
from dynasor_sgl.policy import risk
from dynasor_sgl.replay import holdout, selfcal
from dynasor_sgl.replay.engine import same_answer
from dynasor_sgl.replay.sampled import Outcome, RecordedRun, full_budget_runs, replay_cap

ROW = "dynasor"


@dataclass(frozen=True)
class _Fold:
    """What one fold's questions are decided by: the fit on the other fold's runs."""

    fit: selfcal.Fit | None
    fitted_on: tuple[str, ...]


def self_calibrated(
    records: Sequence[Mapping[str, Any]],
    epsilon: float = risk.DEFAULT_EPSILON,
    delta: float = risk.DEFAULT_DELTA,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(a "dynasor" record per full-budget run of `records`, the bound): each question's
    outcome under the rule fitted on the other fold's runs. The bound says ε, δ, per fold what
    was certified (family, candidate, on how many runs) and the disagreements observed."""
    runs = full_budget_runs(records)
    if not runs:
        return [], {"epsilon": epsilon, "delta": delta, "folds": [], "n": 0, "disagreements": 0}
    cap = max(len(r.run.answers) for r in runs)
    families = selfcal.sc_families(cap, confidences=all(r.run.confidences for r in runs))
    unlabelled = [RecordedRun(r.question_id, None, r.run) for r in runs]
    scores = [selfcal.score(f, unlabelled) for f in families]  # replayed once, sliced per fold
    decided: dict[int, tuple[Outcome, _Fold]] = {}
    folds: list[_Fold] = []

    def fit(tune: list[int]) -> _Fold:
        sub = [selfcal.Scores(s.losses[tune], s.tokens[tune], s.correct[tune]) for s in scores]
        part = [unlabelled[i] for i in tune]
        fold = _Fold(
            selfcal.fit(part, families, epsilon, delta, sub),
            tuple(r.question_id for r in part),
        )
        folds.append(fold)
        return fold

    def measure(fold: _Fold, held: list[int]) -> tuple[int, float]:
        for i in held:
            decided[i] = (_outcome(fold, runs[i], cap), fold)
        return 0, 0.0  # the pooled totals are the report's; the records carry everything

    if len(runs) > 1 and len({holdout.fold_of(r.question_id, 2) for r in runs}) == 2:
        holdout.two_fold([r.question_id for r in runs], fit, measure)
    else:  # one fold only: nothing to fit on without a question's own samples
        measure(_Fold(None, ()), list(range(len(runs))))
    out = [_record(runs[i], *decided[i], cap) for i in range(len(runs))]
    return out, _bound(out, folds, epsilon, delta)


def _outcome(fold: _Fold, run: RecordedRun, cap: int) -> Outcome:
    if fold.fit is None or fold.fit.candidate is None:
        return replay_cap(run.run, cap)
    return fold.fit.candidate.outcome(run)


def _record(run: RecordedRun, out: Outcome, fold: _Fold, cap: int) -> dict[str, Any]:
    chosen = None if fold.fit is None else fold.fit.candidate
    return {
        "question_id": run.question_id,
        "row": ROW,
        "mode": "replay",
        "status": "ok",
        "gold": run.gold,
        "answer": out.answer,
        "correct": None if run.gold is None else equivalent(out.answer, run.gold),
        "tokens": {"reasoning": out.tokens, "probe": 0, "reward": 0, "total": out.tokens},
        "steps": out.used,
        "cap": cap,
        "exit_reason": out.exit_reason,
        "certaindex": out.certaindex,
        "differs_from_full_budget": not same_answer(out.answer, run.full_answer()),
        "fitted": {
            "on": len(fold.fitted_on),
            "family": None if fold.fit is None else fold.fit.family,
            "candidate": None if chosen is None else chosen.label,
        },
    }


def _bound(
    rows: Sequence[Mapping[str, Any]], folds: Sequence[_Fold], epsilon: float, delta: float
) -> dict[str, Any]:
    """ε, δ, each fold's fit (certified or not, on how many runs, the smallest ε its runs
    could certify) and the disagreements with the full budget observed over every question."""
    shown = []
    for fold in folds:
        assert fold.fit is not None  # folds holds only fitted ones
        candidate = fold.fit.candidate
        shown.append(
            {
                "programs": fold.fit.n,
                "certified": candidate is not None,
                "family": fold.fit.family,
                "candidate": None if candidate is None else candidate.label,
                "certifiable_epsilon": risk.certifiable_epsilon(fold.fit.n, delta),
            }
        )
    return {
        "epsilon": epsilon,
        "delta": delta,
        "folds": shown,
        "n": len(rows),
        "disagreements": sum(bool(r["differs_from_full_budget"]) for r in rows),
    }
