"""The held-out check of calibration: a split by a hash of the question id that is the same
everywhere, and the chosen policy measured on the held-out runs beside the full budget and the
fixed caps, on hand-made runs with known numbers; through the CLI too."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from dynasor_sgl.replay.calibration import calibrate
from dynasor_sgl.replay.holdout import Point, calibrate_held_out, held_out, measure, one_line, split
from dynasor_sgl.replay.labelled import LabelledRun, ReportRecord


def sc_run(pid: str, answers: list[str], correct: str = "4") -> LabelledRun:
    """A full-budget SC run: a report after each sample, 10 tokens a sample."""
    records = tuple(
        ReportRecord(used=k, tokens=10 * k, answers=tuple(answers[:k]))
        for k in range(1, len(answers) + 1)
    )
    return LabelledRun(pid, correct, records)


def ids_by_part(fraction: float, tuned: int, held: int) -> tuple[list[str], list[str]]:
    """The first ids q0, q1, ... that land in each part."""
    tune_ids: list[str] = []
    held_ids: list[str] = []
    i = 0
    while len(tune_ids) < tuned or len(held_ids) < held:
        qid = f"q{i}"
        (held_ids if held_out(qid, fraction) else tune_ids).append(qid)
        i += 1
    return tune_ids[:tuned], held_ids[:held]


def test_the_split_is_by_id_not_order_and_keeps_about_the_fraction() -> None:
    runs = [sc_run(f"question-{i}", ["4"]) for i in range(1000)]
    tune, held = split(runs, 0.3)
    assert 250 <= len(held) <= 350 and len(tune) + len(held) == 1000
    _, again_held = split(list(reversed(runs)), 0.3)
    assert {r.program_id for r in again_held} == {r.program_id for r in held}
    # a larger fraction holds out a superset: the same hash, a higher bar
    _, more = split(runs, 0.5)
    assert {r.program_id for r in held} <= {r.program_id for r in more}


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_the_fraction_is_strictly_between_zero_and_one(fraction: float) -> None:
    with pytest.raises(ValueError, match="holdout fraction"):
        split([sc_run("a", ["4"]), sc_run("b", ["4"])], fraction)


def test_a_split_leaving_a_part_empty_is_an_error() -> None:
    tune_ids, _ = ids_by_part(0.5, 2, 0)
    with pytest.raises(ValueError, match="both need at least one"):
        split([sc_run(q, ["4"]) for q in tune_ids], 0.5)


def test_held_out_report_by_hand() -> None:
    # Tuned on three settled runs and one that misleads at 2: entropy 1.0 read once at 2.
    tune = [sc_run(f"easy{i}", ["4"] * 5) for i in range(3)]
    tune.append(sc_run("hard", ["1", "4", "4", "4", "4"]))
    result = calibrate(tune)
    assert result.thresholds == {"entropy": 1.0} and result.detect_at == 2
    # Held out: one settled run, and one whose first two samples agree on a wrong answer.
    held = [sc_run("h1", ["4"] * 5), sc_run("h2", ["7", "7", "4", "4", "4"])]
    report = measure(held, result, n_tuned=4, fraction=0.5)
    assert report.policy == Point(0.5, 40)  # both stop at 2; h2 answers 7
    assert report.full == Point(1.0, 100)  # at 5 the majority of h2 is 4
    assert report.caps[1] == Point(0.5, 20) and report.caps[3] == Point(0.5, 60)
    assert report.caps[5] == report.full and sorted(report.caps) == [1, 2, 3, 4, 5]
    assert report.matched_cap == 2  # caps 1 and 2 fit in 40 tokens; equal accuracy: the larger
    assert (report.n_tuned, report.n_held) == (4, 2)
    data = json.loads(json.dumps(report.to_dict()))
    assert data["caps"]["2"] == {"accuracy": 0.5, "tokens": 40}
    assert one_line(report) == (
        "held out 2 runs (thresholds from 4): policy 50.0% / 20 tokens, full budget "
        "100.0% / 50 tokens, fixed cap 2 50.0% / 20 tokens (accuracy / mean tokens)"
    )


def test_calibrate_held_out_chooses_on_the_rest_only() -> None:
    tune_ids, held_ids = ids_by_part(0.5, 4, 2)
    runs = [sc_run(q, ["4"] * 5) for q in tune_ids[:3]]
    runs.append(sc_run(tune_ids[3], ["1", "4", "4", "4", "4"]))
    # The held-out runs would pull the choice elsewhere if calibration saw them: they agree
    # early on a wrong answer.
    runs += [sc_run(q, ["7", "7", "7", "4", "4"], correct="7") for q in held_ids]
    result, report = calibrate_held_out(runs, 0.5)
    assert result.n_programs == 4 and result.detect_at == 2
    assert report.n_held == 2 and report.policy == Point(1.0, 40)


def test_cli_calibrate_with_holdout(tmp_path: Path) -> None:
    from dynasor_sgl.cli.main import main

    tune_ids, held_ids = ids_by_part(0.5, 4, 2)
    rows = [sc_record(q, ["4"] * 5) for q in tune_ids[:3]]
    rows.append(sc_record(tune_ids[3], ["1", "4", "4", "4", "4"]))
    rows += [sc_record(held_ids[0], ["4"] * 5), sc_record(held_ids[1], ["7", "7", "4", "4", "4"])]
    results = tmp_path / "r.jsonl"
    header = {"kind": "run", "settings": {"program": "self-consistency"}}
    results.write_text("".join(json.dumps(r) + "\n" for r in [header, *rows]))
    out = tmp_path / "policies" / "policy.json"  # a folder not made yet
    res = CliRunner().invoke(
        main, ["calibrate", str(results), "--holdout", "0.5", "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    assert "held out 2 runs (thresholds from 4): policy 50.0%" in res.output
    full = json.loads(out.with_suffix(".calibration.json").read_text())
    assert full["n_programs"] == 4 and full["holdout"]["n_held"] == 2
    assert full["holdout"]["full"]["accuracy"] == 1.0 and full["holdout"]["matched_cap"] == 2
    assert json.loads(out.read_text())["sc"]["detect_at"] == 2
    bad = CliRunner().invoke(main, ["calibrate", str(results), "--holdout", "1", "--out", str(out)])
    assert bad.exit_code == 2 and "Traceback" not in bad.output


def sc_record(qid: str, answers: list[str], gold: str = "4") -> dict[str, object]:
    """An eval results record of a full-budget SC run: 10 tokens a sample, no shared prompt."""
    return {
        "question_id": qid,
        "policy": "baseline",
        "mode": "live",
        "status": "ok",
        "gold": gold,
        "tokens": {"total": 10 * len(answers)},
        "details": {"answers": answers, "sample_tokens": [10] * len(answers)},
    }
