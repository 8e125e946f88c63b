"""`dynasor-sgl calibrate`: thresholds from an eval results file, written as a policy file.

Reads the full-budget self-consistency runs ("baseline" records, which keep every sample's
answer and tokens), turns each into per-sample reports for
`dynasor_sgl.replay.calibration`, and picks
the cheapest (threshold, detection step, read-every) within the accuracy margin. The policy
file maps "sc" to the overrides that make the live program stop where calibration replayed it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dynasor_sgl.eval.results import read_records
from dynasor_sgl.replay.calibration import CalibrationResult, LabelledRun, ReportRecord, calibrate
from dynasor_sgl.replay.holdout import HoldoutReport, calibrate_held_out
from dynasor_sgl.replay.sampled import sampled_run


def labelled_runs(records: list[dict[str, Any]]) -> list[LabelledRun]:
    runs = []
    for r in records:
        if r.get("policy") != "baseline" or r.get("status") != "ok":
            continue
        if "sample_tokens" not in (r.get("details") or {}):
            continue
        run = sampled_run(r["details"], int(r["tokens"]["total"]))
        reports = tuple(
            ReportRecord(used=k, tokens=run.tokens_at(k), answers=run.answers[:k])
            for k in range(1, len(run.answers) + 1)
        )
        runs.append(LabelledRun(str(r["question_id"]), str(r["gold"]), reports))
    return runs


def calibrate_results(
    path: str | Path,
    margin: float,
    detect_every: tuple[int, ...] = (0,),
    holdout: float | None = None,
) -> tuple[dict[str, Any], CalibrationResult, HoldoutReport | None]:
    """(policy file content, calibration result, held-out report) for a results file;
    `detect_every` are the read-every candidates searched (0 = read once). With `holdout`, the
    thresholds are chosen on the questions not held out and measured on the held-out fraction
    (`dynasor_sgl.replay.holdout`); without, on all of them (and no report)."""
    _, records = read_records(path)
    runs = labelled_runs(records)
    if not runs:
        raise ValueError(
            f"{path} has no full-budget self-consistency runs to calibrate on "
            "(run `dynasor-sgl eval --program self-consistency` first)"
        )
    report = None
    if holdout is None:
        result = calibrate(runs, margin=margin, detect_every=detect_every)
    else:
        result, report = calibrate_held_out(runs, holdout, margin=margin, detect_every=detect_every)
    return {"sc": policy_overrides(result, max(len(r.records) for r in runs))}, result, report


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
