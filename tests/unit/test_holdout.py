"""The one held-out procedure: a split by a hash of the question id that is the same
everywhere (and the same assignment as label-free cross-fitting), the one "cheapest within the
margin" rule, and calibration measured held out both ways round beside the full budget and the
fixed caps, on hand-made runs with known numbers; through the CLI too."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from dynasor_sgl.eval.calibrate import calibrate_held_out
from dynasor_sgl.replay import selfcal
from dynasor_sgl.replay.holdout import (
    FULL_BUDGET,
    Point,
    cheapest_within,
    choose_held_out,
    fixed_cap,
    fold_of,
    held_out,
    one_line,
    two_fold,
    two_folds,
)
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
    ids = [f"question-{i}" for i in range(1000)]
    rest, held = two_folds(ids, 0.3)
    assert 250 <= len(held) <= 350 and sorted(rest + held) == list(range(1000))
    _, again = two_folds(list(reversed(ids)), 0.3)
    assert {ids[999 - i] for i in again} == {ids[i] for i in held}
    # a larger fraction holds out a superset: the same hash, a higher bar
    _, more = two_folds(ids, 0.5)
    assert set(held) <= set(more)


def test_one_fold_assignment_for_the_split_and_label_free_cross_fitting() -> None:
    ids = [f"question-{i}" for i in range(500)]
    assert all((fold_of(q, 2) == 0) == held_out(q, 0.5) for q in ids)
    assert all(selfcal.fold_of(q, 3) == fold_of(q, 3) for q in ids)
    assert {fold_of(q, 3) for q in ids} == {0, 1, 2}
    with pytest.raises(ValueError, match="folds"):
        fold_of("q", 0)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_the_fraction_is_strictly_between_zero_and_one(fraction: float) -> None:
    with pytest.raises(ValueError, match="holdout fraction"):
        two_folds(["a", "b"], fraction)


def test_a_split_leaving_a_part_empty_is_an_error() -> None:
    tune_ids, _ = ids_by_part(0.5, 2, 0)
    with pytest.raises(ValueError, match="both parts need at least one"):
        two_folds(tune_ids, 0.5)


def test_cheapest_within_the_margin_by_hand() -> None:
    accuracy, tokens = [0.8, 0.7, 0.75, 0.8, 0.7], [100, 40, 60, 60, 60]
    assert cheapest_within(accuracy, tokens, 0.75) == 3  # 40 is below; at 60 the more accurate
    assert cheapest_within(accuracy, tokens, 0.8) == 3
    assert cheapest_within(accuracy, tokens, 0.7) == 1
    assert cheapest_within(accuracy, tokens, 0.9) is None  # nothing reaches it: full budget
    # ties in tokens and accuracy: the smaller order key, else the earlier candidate
    assert cheapest_within([0.5, 0.5], [10, 10], 0.5) == 0
    assert cheapest_within([0.5, 0.5], [10, 10], 0.5, order=[(1,), (0,)]) == 1
    assert cheapest_within([0.7 - 1e-12], [1], 0.7) == 0  # float noise reaches the floor


def test_two_fold_measures_every_question_once_by_a_setting_chosen_without_it() -> None:
    ids = [f"q{i}" for i in range(40)]
    seen: list[tuple[list[int], list[int]]] = []

    def fit(tune: list[int]) -> frozenset[int]:
        return frozenset(tune)

    def measure(tuned_on: frozenset[int], held: list[int]) -> tuple[int, float]:
        assert not tuned_on & set(held)
        seen.append((sorted(tuned_on), held))
        return len(held), float(sum(held))

    pooled = two_fold(ids, fit, measure)
    assert sorted(i for _, held in seen for i in held) == list(range(40))
    assert pooled.point == Point(1.0, float(sum(range(40)))) and len(pooled.chosen) == 2
    assert seen[0][0] == seen[1][1] and seen[1][0] == seen[0][1]


def test_choose_held_out_falls_back_to_the_full_budget() -> None:
    tune_ids, held_ids = ids_by_part(0.5, 2, 2)
    ids = tune_ids + held_ids  # indices 0, 1 not held out; 2, 3 held out
    full = (np.array([1.0, 1.0, 1.0, 1.0]), np.array([10.0, 10.0, 10.0, 10.0]))
    table = {
        # right on the first part only: chosen there, measured on the held-out part
        "cheap": (np.array([1.0, 1.0, 0.0, 0.0]), np.array([2.0, 2.0, 2.0, 2.0])),
        "dear": (np.array([0.0, 1.0, 1.0, 1.0]), np.array([5.0, 5.0, 5.0, 5.0])),
    }
    row = choose_held_out(table, full, ids, margin=0.0)
    # fold 1 (tune 0, 1): cheap reaches 100%, measured on 2, 3: 0 right, 4 tokens.
    # fold 2 (tune 2, 3): dear reaches 100%, measured on 0, 1: 1 right, 10 tokens.
    assert row["chosen"] == ["cheap", "dear"]
    assert row["correct"] == 1 and row["mean_tokens"] == pytest.approx(14 / 4)
    assert row["saved"] == pytest.approx(1 - 14 / 40)
    # with neither reaching the floor on the second part the full budget is used there
    table["dear"] = (np.array([0.0, 1.0, 0.0, 1.0]), np.array([5.0] * 4))
    row = choose_held_out(table, full, ids, margin=0.0)
    assert row["chosen"] == ["cheap", FULL_BUDGET] and row["correct"] == 2


def test_fixed_cap_by_hand() -> None:
    runs = [sc_run("h1", ["4"] * 5), sc_run("h2", ["7", "7", "4", "4", "4"])]
    assert fixed_cap(runs, 2) == Point(0.5, 40)
    assert fixed_cap(runs, 5) == fixed_cap(runs, 99) == Point(1.0, 100)


def test_calibrate_held_out_chooses_on_the_other_part_only() -> None:
    tune_ids, held_ids = ids_by_part(0.5, 4, 4)
    # First part: settled runs and one that misleads at 2: entropy 1.0 read once at 2 there.
    runs = [sc_run(q, ["4"] * 5) for q in tune_ids[:3]]
    runs.append(sc_run(tune_ids[3], ["1", "4", "4", "4", "4"]))
    # Held-out part: two settled runs, and two whose first two samples agree on a wrong
    # answer (right only at the full budget): tuned there, reading at 2 loses them.
    runs += [sc_run(q, ["4"] * 5) for q in held_ids[:2]]
    runs += [sc_run(q, ["7", "7", "4", "4", "4"]) for q in held_ids[2:]]
    report = calibrate_held_out(runs, 0.5)
    first, second = report.folds
    assert first["n_tuned"] == 4 and first["detect_at"] == 2  # chosen without the held part
    assert second["n_tuned"] == 4 and second["detect_at"] == 3  # reads at 3: 7,7,4 is split
    # Measured: the held part under the first choice stops at 2 everywhere (2 right, 80
    # tokens); the first part under the second stops at 3 but for the run split at 3, which
    # runs to its cap (4 right, 3 * 30 + 50 tokens).
    assert report.n_held == 8
    assert report.policy == Point(6 / 8, 80 + 140)
    assert report.full == Point(1.0, 400)
    assert report.caps[2] == Point(0.625, 160) and sorted(report.caps) == [1, 2, 3, 4, 5]
    data = json.loads(json.dumps(report.to_dict()))
    assert data["caps"]["2"] == {"accuracy": 0.625, "tokens": 160}
    assert one_line(report).startswith("held out, 2-fold over 8 runs")


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
    assert "held out, 2-fold over 6 runs" in res.output
    full = json.loads(out.with_suffix(".calibration.json").read_text())
    assert full["n_programs"] == 6 and full["holdout"]["n_held"] == 6
    assert [f["n_tuned"] for f in full["holdout"]["folds"]] == [4, 2]
    assert full["holdout"]["full"]["accuracy"] == 1.0
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
