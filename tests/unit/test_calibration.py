"""Calibration: replaying labelled runs, choosing thresholds, savings and the oracle."""

from __future__ import annotations

import json

import pytest

from dynasor_sgl.replay.calibration import (
    LabelledRun,
    ReportRecord,
    calibrate,
    oracle_index,
    replay,
)


def sc_run(pid: str, correct: str, answers_at: dict[int, list[str]]) -> LabelledRun:
    records = tuple(
        ReportRecord(used=k, tokens=100 * k, answers=tuple(a))
        for k, a in sorted(answers_at.items())
    )
    return LabelledRun(pid, correct, records)


@pytest.fixture
def sc_runs() -> list[LabelledRun]:
    hard5 = ["1", "2", "3", "4", "7"]
    return [
        # settled from the start, correct
        sc_run("easy", "5", {5: ["5"] * 5, 10: ["5"] * 10, 20: ["5"] * 20}),
        # scattered at 5 (majority would be "1"), settles on the correct 7 by 10
        sc_run("hard", "7", {5: hard5, 10: hard5 + ["7"] * 5, 20: hard5 + ["7"] * 15}),
        # settled from the start, wrong: early exit costs nothing here
        sc_run("stubborn", "8", {5: ["9"] * 5, 10: ["9"] * 10, 20: ["9"] * 20}),
    ]


def test_replay_stop_points(sc_runs: list[LabelledRun]) -> None:
    result = replay(sc_runs, {"entropy": 0.7}, detect_at=5)
    assert result.stop_at == (5, 20, 5)
    assert result.tokens == 500 + 2000 + 500
    assert result.accuracy == pytest.approx(2 / 3) and result.stopped_early == 2
    # Reading every 5 steps lets "hard" stop once it has settled (6 of 10 agree: 0.467).
    result = replay(sc_runs, {"entropy": 0.45}, detect_at=5, detect_every=5)
    assert result.stop_at == (5, 10, 5) and result.accuracy == pytest.approx(2 / 3)
    # A threshold of 0 stops everything at the first read, "hard" with the wrong majority.
    assert replay(sc_runs, {"entropy": 0.0}, detect_at=5).accuracy == pytest.approx(1 / 3)


def test_calibrate_keeps_accuracy_and_reports_savings(sc_runs: list[LabelledRun]) -> None:
    result = calibrate(sc_runs, detect_ats=[5])
    assert result.full_accuracy == pytest.approx(2 / 3) and result.full_tokens == 6000
    assert result.accuracy == pytest.approx(result.full_accuracy)
    # Every threshold in (0, 1] stops easy and stubborn at 5; the most cautious is kept.
    assert result.thresholds == {"entropy": 1.0} and result.detect_at == 5
    assert result.tokens == 3000 and result.saving == pytest.approx(0.5)
    # Oracle: easy and stubborn at 5, hard once its answer stops changing at 10.
    assert result.oracle_tokens == 500 + 1000 + 500
    assert result.oracle_saving == pytest.approx(1 - 2000 / 6000)
    assert result.n_programs == 3 and result.stopped_early == 2
    assert json.loads(json.dumps(result.to_dict()))["detect_at"] == 5
    # Reading at 10 instead ties at 3000 tokens (all stop at 10, hard with 0.467 >= 0.45);
    # the tie goes to the later detection step.
    later = calibrate(sc_runs)
    assert later.tokens == 3000 and later.accuracy == pytest.approx(2 / 3)
    assert later.thresholds == {"entropy": 0.45} and later.detect_at == 10
    assert later.stopped_early == 3


def test_margin_trades_accuracy_for_tokens(sc_runs: list[LabelledRun]) -> None:
    result = calibrate(sc_runs, margin=0.34)
    assert result.tokens == 1500 and result.accuracy == pytest.approx(1 / 3)
    assert result.saving == pytest.approx(0.75)


def test_calibrate_posterior_signal(sc_runs: list[LabelledRun]) -> None:
    result = calibrate(sc_runs, grid={"posterior": [0.9, 0.95, 0.99]}, detect_ats=[5])
    # 5 unanimous answers give 1 - 2^-6 = 0.984: 0.95 passes, 0.99 does not.
    assert result.thresholds == {"posterior": 0.95} and result.tokens == 3000


def test_calibrate_without_a_feasible_candidate(sc_runs: list[LabelledRun]) -> None:
    result = calibrate(sc_runs, grid={"entropy": [0.0]}, detect_ats=[5])
    assert result.thresholds is None and result.tokens == result.full_tokens
    assert result.saving == 0.0


def test_cot_replay_with_known_stabilization() -> None:
    runs = []
    for pid, settle in [("a", 2), ("b", 5)]:
        probes = [str(k) for k in range(settle - 1)] + ["42"] * (10 - settle + 1)
        records = tuple(
            ReportRecord(
                used=64 * k,
                tokens=80 * k,
                answers=tuple(probes[:k]),
                answer=probes[k - 1],
                probe_texts=tuple(f"{p}}}" for p in probes[:k]),
            )
            for k in range(1, 11)
        )
        runs.append(LabelledRun(pid, "42", records))
    result = replay(runs, {"consistency": 1.0}, detect_at=64, detect_every=64, probe_window=3)
    assert result.stop_at == (64 * 4, 64 * 7)  # settle + window - 1
    assert result.tokens == 80 * 4 + 80 * 7 and result.accuracy == 1.0
    cal = calibrate(runs, grid={"consistency": [1.0]}, detect_ats=[64], detect_every=64)
    assert cal.saving == pytest.approx(1 - (80 * 11) / (80 * 20))
    assert cal.oracle_tokens == 80 * 2 + 80 * 5


def test_oracle_index() -> None:
    assert oracle_index(["1", "2", "2", "2"]) == 1
    assert oracle_index(["2", "1", "2"]) == 2
    assert oracle_index(["3", "3"]) == 0
    assert oracle_index([None, None, "3"]) == 2
    assert oracle_index(["4", None, None]) == 1


def test_runs_from_plain_data() -> None:
    data = {
        "program_id": "p",
        "correct": "3",
        "records": [
            {"step": 1, "tokens": 10, "answers": ["3"]},
            {"used": 2, "tokens": 25, "answers": ["3", "3"], "values": {"reward": 0.9}},
        ],
    }
    run = LabelledRun.from_dict(json.loads(json.dumps(data)))
    assert run.records[1].answers == ("3", "3") and run.records[1].values == {"reward": 0.9}
    with pytest.raises(ValueError, match="extra"):
        LabelledRun.from_dict({**data, "extra": 1})
    with pytest.raises(ValueError, match="colour"):
        LabelledRun.from_dict({**data, "records": [{"used": 1, "tokens": 1, "colour": 2}]})
    with pytest.raises(ValueError, match="increasing"):
        LabelledRun("q", "1", (ReportRecord(2, 1), ReportRecord(1, 2)))
    with pytest.raises(ValueError):
        calibrate([])


def test_sequential_detection_is_searched_and_reported(sc_runs: list[LabelledRun]) -> None:
    # Read once at 5, "hard" must run to 20; read every 5 it stops at 10 when it has settled.
    once = calibrate(sc_runs, detect_ats=[5])
    seq = calibrate(sc_runs, detect_ats=[5], detect_every=(0, 5))
    assert (once.detect_every, once.tokens) == (0, 3000)
    assert seq.detect_every == 5 and seq.tokens == 500 + 1000 + 500
    assert seq.accuracy == pytest.approx(seq.full_accuracy)
    # The frontier runs from cheapest to most accurate, each point better than the last.
    tokens = [p["tokens"] for p in seq.frontier]
    accuracy = [p["accuracy"] for p in seq.frontier]
    assert tokens == sorted(tokens) and accuracy == sorted(set(accuracy))
    assert {"thresholds", "detect_at", "detect_every"} <= set(seq.frontier[0])
    with pytest.raises(ValueError, match="detect_every"):
        calibrate(sc_runs, detect_every=(-1,))


def test_policy_overrides_read_in_batches_of_the_read_every() -> None:
    from dynasor_sgl.eval.calibrate import policy_overrides
    from dynasor_sgl.policy.config import PolicyConfig

    result = calibrate(
        [sc_run("a", "5", {k: ["5"] * k for k in range(1, 21)})],
        detect_ats=[3],
        detect_every=(2,),
    )
    overrides = policy_overrides(result, cap=20)
    assert overrides["detect_every"] == overrides["pace"] == 2 and overrides["detect_at"] == 3
    PolicyConfig.for_algorithm("sc", **overrides)  # a valid live policy
