"""`dynasor-sgl calibrate`: thresholds from an eval results file, written as a policy file.

Two targets. `accuracy` (labelled): the cheapest thresholds within an accuracy margin of the
full budget, scored against the gold answers. `full-budget` (label-free,
`dynasor_sgl.replay.selfcal`): the rule whose disagreement with the program's own full-budget
answer is at most ε with confidence 1 − δ, fitted on all runs and measured cross-fitted.

Reads the full-budget self-consistency runs ("baseline" records, which keep every sample's
answer and tokens), turns each into per-sample reports for `dynasor_sgl.replay.calibration`,
and picks the cheapest (threshold, detection point, read-every) within the accuracy margin;
`--holdout` measures that choice held out (`dynasor_sgl.replay.holdout`). The policy
file maps "sc" to the overrides that make the live program stop where calibration replayed it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dynasor_sgl.eval.results import read_records
from dynasor_sgl.policy import risk
from dynasor_sgl.replay import holdout, selfcal
from dynasor_sgl.replay.calibration import (
    CalibrationResult,
    LabelledRun,
    ReportRecord,
    calibrate,
    replay,
)
from dynasor_sgl.replay.holdout import HoldoutReport
from dynasor_sgl.replay.sampled import full_budget_runs, is_full_budget

Paths = str | Path | Sequence[str | Path]


def records_by_file(paths: Paths) -> list[tuple[str | Path, list[dict[str, Any]]]]:
    """The records of one or more results files, per file in order, each file with full-budget
    SC runs to calibrate on; else a ValueError saying how to get some. A question in two
    files is a ValueError too: its runs would count twice."""
    files: list[tuple[str | Path, list[dict[str, Any]]]] = []
    seen: dict[str, str | Path] = {}
    for path in [paths] if isinstance(paths, str | Path) else paths:
        _, mine = read_records(path)
        if not any(is_full_budget(r) for r in mine):
            raise ValueError(
                f"{path} has no full-budget self-consistency runs to calibrate on "
                "(run `dynasor-sgl eval --program self-consistency` first)"
            )
        for r in mine:
            if not is_full_budget(r):
                continue
            qid = str(r["question_id"])
            if seen.setdefault(qid, path) != path:
                raise ValueError(
                    f"question {qid!r} has a full-budget run in both {seen[qid]} and {path}; "
                    "give each question's runs once"
                )
        files.append((path, mine))
    return files


def _records_with_runs(paths: Paths) -> list[dict[str, Any]]:
    """The records of `records_by_file`, pooled in order."""
    return [r for _, mine in records_by_file(paths) for r in mine]


def labelled_runs(records: list[dict[str, Any]]) -> list[LabelledRun]:
    """The full-budget runs of `records` as per-sample reports, labelled with the gold answer;
    each report's answer is the program's majority vote of the samples so far (`SampledRun.
    answer_at`), so calibration scores the answer the eval and the live program give."""
    return [
        LabelledRun(
            r.question_id,
            r.gold,
            tuple(
                ReportRecord(
                    used=k,
                    tokens=r.run.tokens_at(k),
                    answers=r.run.answers[:k],
                    answer=r.run.answer_at(k),  # the program's vote, its tie rule included
                )
                for k in range(1, len(r.run.answers) + 1)
            ),
        )
        for r in full_budget_runs(records)
    ]


def calibrate_results(
    path: Paths,
    margin: float,
    detect_every: tuple[int, ...] = (0,),
    holdout: float | None = None,
) -> tuple[dict[str, Any], CalibrationResult, HoldoutReport | None]:
    """(policy file content, calibration result, held-out report) for results files (one or
    more, pooled); `detect_every` are the read-every candidates searched (0 = read once). The
    thresholds are chosen on every question; with `holdout`, the procedure is also measured held out
    (`calibrate_held_out`), and without, there is no report."""
    runs = labelled_runs(_records_with_runs(path))
    result = calibrate(runs, margin=margin, detect_every=detect_every)
    report = None
    if holdout is not None:
        report = calibrate_held_out(runs, holdout, margin=margin, detect_every=detect_every)
    return {"sc": policy_overrides(result, max(len(r.records) for r in runs))}, result, report


def calibrate_held_out(
    runs: Sequence[LabelledRun], fraction: float = 0.5, **options: Any
) -> HoldoutReport:
    """`calibrate` (with `options`) through the one held-out procedure (`holdout.two_fold`,
    the part held out first is `fraction`): thresholds chosen on one part, replayed on the
    other, both ways round, beside the full budget and the fixed caps over the same runs."""
    window = int(options.get("probe_window", 3))
    ids = [r.program_id for r in runs]
    folds: list[dict[str, Any]] = []

    def fit(tune: list[int]) -> CalibrationResult:
        result = calibrate([runs[i] for i in tune], **options)
        folds.append(
            {
                "n_tuned": len(tune),
                "thresholds": result.thresholds,
                "detect_at": result.detect_at,
                "detect_every": result.detect_every,
            }
        )
        return result

    def measure(result: CalibrationResult, held: list[int]) -> tuple[int, float]:
        part = [runs[i] for i in held]
        if result.thresholds is None or result.detect_at is None:
            point = holdout.fixed_cap(part, max(r.records[-1].used for r in part))
            return round(point.accuracy * len(part)), point.tokens
        out = replay(part, result.thresholds, result.detect_at, result.detect_every, window)
        return round(out.accuracy * len(part)), float(out.tokens)

    pooled = holdout.two_fold(ids, fit, measure, fraction)
    return holdout.report(runs, pooled, fraction, folds)


def policy_overrides(result: CalibrationResult, cap: int) -> dict[str, Any]:
    """The SC overrides that make the live program stop where calibration replayed it: read at
    the chosen knob value (drawn as the first grant), then every `detect_every` samples (drawn in
    batches of that size, so each reading sees exactly the samples the replay did), or only at
    the cap if nothing met the target."""
    if result.thresholds is None or result.detect_at is None:
        return {"cap": cap, "detect_at": cap}
    overrides = {
        "cap": cap,
        "detect_at": result.detect_at,
        "initial": result.detect_at,
        "thresholds": dict(result.thresholds),
    }
    if result.detect_every:
        overrides.update(detect_every=result.detect_every, pace=result.detect_every)
    return overrides


def calibrate_full_budget(
    path: Paths,
    epsilon: float = risk.DEFAULT_EPSILON,
    delta: float = risk.DEFAULT_DELTA,
    folds: int = 2,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(policy file content, report) of the label-free calibration of the full-budget SC runs
    of results files (one or more, pooled): the rule fitted on all of them (the full budget
    when nothing is certified), and the procedure measured cross-fitted over `folds` (gold
    answers, where the files have them, only feed the report's accuracy)."""
    runs = full_budget_runs(_records_with_runs(path))
    cap = max(len(r.run.answers) for r in runs)
    families = selfcal.sc_families(cap, confidences=all(r.run.confidences for r in runs))
    scores = [selfcal.score(f, runs) for f in families]  # replayed once, for both uses
    fitted = selfcal.fit(runs, families, epsilon, delta, scores)
    report = {
        "target": "full-budget",
        "fit": fitted.to_dict(),
        "min_programs": risk.min_programs(epsilon, delta / len(families)),
        "cross_fit": selfcal.cross_fit(runs, families, epsilon, delta, folds, scores),
    }
    if fitted.candidate is None:
        overrides: dict[str, Any] = {"cap": cap, "detect_at": cap}
    else:
        overrides = fitted.candidate.config.to_dict()
        del overrides["algorithm"]
    return {"sc": overrides}, report


def full_budget_line(report: dict[str, Any]) -> str:
    """The label-free calibration in one line: the rule, its bound, and the cross-fitted
    saving, disagreement and accuracy."""
    fit, crossed = report["fit"], report["cross_fit"]
    chosen = (
        f"{fit['family']}: {fit['candidate']['label']}"
        if fit["candidate"]
        else (
            f"run to the cap ({fit['programs']} programs certify at best "
            f"eps {fit['certifiable_epsilon']:.3f}; eps {fit['epsilon']} needs "
            f"{report['min_programs']})"
        )
    )
    mine, full = crossed["self_calibrated"], crossed["full_budget"]
    saved = 1 - mine["tokens"] / full["tokens"] if full["tokens"] else 0.0
    line = (
        f"{fit['programs']} runs, label-free (eps {fit['epsilon']}, delta {fit['delta']}): "
        f"{chosen}; cross-fitted over {crossed['folds']} folds: {100 * saved:.1f}% tokens saved, "
        f"{mine['disagreements']}/{mine['n']} answers differ from the full budget"
    )
    if mine["correct"] is not None and full["correct"] is not None:
        line += (
            f", accuracy {100 * mine['correct'] / mine['n']:.1f}% "
            f"(full budget {100 * full['correct'] / full['n']:.1f}%)"
        )
    return line
