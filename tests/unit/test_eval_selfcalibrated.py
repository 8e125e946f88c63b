"""The eval's self-calibrated "dynasor" row and its fixed-threshold "paper" row, on hand-made
recorded runs: each question decided by a rule fitted on the other fold only (its own samples
can change nothing about its decision), never on a label, with the bound it was fitted to; and
the paper row is what the dynasor row used to be, checked on a recorded file too."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dynasor_sgl.eval.results import read_records
from dynasor_sgl.eval.selfcalibrated import self_calibrated
from dynasor_sgl.policy.config import PolicyConfig
from dynasor_sgl.replay import selfcal
from dynasor_sgl.replay.holdout import fold_of
from dynasor_sgl.replay.sampled import replay_policy, sampled_run

CAP = 8
LOOSE = {"epsilon": 0.3, "delta": 0.3}  # a bound that 15 programs can certify
RECORDED = Path(__file__).parents[2] / "docs" / "results" / "sc-confidence" / "add1.jsonl"


def baseline(qid: str, answers: list[str | None], gold: str | None = "4") -> dict[str, Any]:
    """A stored full-budget SC record: 10 tokens a sample, 5 shared."""
    return {
        "question_id": qid,
        "row": "baseline",
        "mode": "live",
        "status": "ok",
        "gold": gold,
        "tokens": {"total": 5 + 10 * len(answers)},
        "details": {"answers": answers, "sample_tokens": [10] * len(answers)},
    }


def settled(n: int) -> list[dict[str, Any]]:
    return [baseline(f"q{i}", ["4"] * CAP) for i in range(n)]


def test_settled_runs_certify_a_rule_that_stops_early_and_keeps_every_answer() -> None:
    records = settled(30)
    rows, bound = self_calibrated(records, **LOOSE)
    assert [r["question_id"] for r in rows] == [r["question_id"] for r in records]
    assert all(r["row"] == "dynasor" and r["mode"] == "replay" for r in rows)
    assert all(r["tokens"]["total"] < 5 + 10 * CAP and r["correct"] for r in rows)
    assert bound["n"] == 30 and bound["disagreements"] == 0
    assert [f["certified"] for f in bound["folds"]] == [True, True]
    assert sum(f["programs"] for f in bound["folds"]) == 30
    assert (bound["epsilon"], bound["delta"]) == (0.3, 0.3)


def test_too_few_runs_certify_nothing_and_the_row_is_the_full_budget() -> None:
    rows, bound = self_calibrated(settled(30))  # ε 0.02 needs 114+ runs per fold
    assert all(r["tokens"]["total"] == 5 + 10 * CAP for r in rows)
    assert all(r["fitted"]["candidate"] is None for r in rows)
    assert [f["certified"] for f in bound["folds"]] == [False, False]
    one, only = self_calibrated(settled(1), **LOOSE)  # one question: no other fold to fit on
    assert one[0]["tokens"]["total"] == 5 + 10 * CAP and only["folds"] == []


def test_a_questions_own_samples_never_change_its_decision() -> None:
    records = settled(30)
    rows, _ = self_calibrated(records, **LOOSE)
    chosen = {r["question_id"]: r["fitted"] for r in rows}
    # Make every question of fold 0 agree early on an answer its full budget overturns: its
    # own decisions stay as they were, while fold 1, fitted on those runs, changes its rule.
    noisy = [
        baseline(r["question_id"], ["7", "7", "7", "4", "4", "4", "4", "4"])
        if fold_of(r["question_id"], 2) == 0
        else r
        for r in records
    ]
    again, _ = self_calibrated(noisy, **LOOSE)
    for r in again:
        if fold_of(r["question_id"], 2) == 0:
            assert r["fitted"] == chosen[r["question_id"]]
        else:
            assert r["fitted"] != chosen[r["question_id"]]


def test_each_fit_sees_only_the_other_fold_and_no_label(monkeypatch: pytest.MonkeyPatch) -> None:
    fitted: list[list[tuple[str, str | None]]] = []
    real = selfcal.fit

    def spy(runs: Any, *args: Any, **kwargs: Any) -> selfcal.Fit:
        fitted.append([(r.question_id, r.gold) for r in runs])
        return real(runs, *args, **kwargs)

    monkeypatch.setattr(selfcal, "fit", spy)
    rows, _ = self_calibrated(settled(30), **LOOSE)
    assert len(fitted) == 2 and all(gold is None for call in fitted for _, gold in call)
    # the first fit decides fold 0, the second fold 1: neither holds a question it decides
    for decided_fold, call in enumerate(fitted):
        ids = {q for q, _ in call}
        assert ids == {
            r["question_id"] for r in rows if fold_of(r["question_id"], 2) != decided_fold
        }
    assert all(r["fitted"]["on"] in (len(fitted[0]), len(fitted[1])) for r in rows)


def test_unlabelled_runs_get_a_row_without_correctness() -> None:
    rows, _ = self_calibrated([baseline(f"q{i}", ["4"] * CAP, gold=None) for i in range(4)])
    assert all(r["correct"] is None and r["answer"] == "4" for r in rows)


def test_the_paper_row_is_the_old_dynasor_row_on_a_recorded_file() -> None:
    header, records = read_records(RECORDED)
    assert header is not None
    # the file was recorded before the decided-vote stop was on by default
    policy = {"stop_when_decided": False, **header["settings"]["policy"]}
    config = PolicyConfig.for_algorithm("sc", **policy)
    base = {r["question_id"]: r for r in records if r["row"] == "baseline"}
    paper = [r for r in records if r["row"] == "paper"]  # stored as "dynasor" then
    assert len(paper) == len(base) == 100
    for r in paper:
        b = base[r["question_id"]]
        out = replay_policy(sampled_run(b["details"], int(b["tokens"]["total"])), config)
        assert (out.answer, out.tokens) == (r["answer"], r["tokens"]["total"])
        assert out.used == r["steps"] and out.exit_reason == r["exit_reason"]
