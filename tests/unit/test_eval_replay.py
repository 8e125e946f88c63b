"""Pure parts of the evaluation on hand-made inputs with known answers: SC policies replayed
over one full-budget run, the summary (Wilson intervals, savings, oracle fraction, curves), the
PNG figures, and calibration from a results file."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest

from dynasor_sgl.eval import plots
from dynasor_sgl.eval.calibrate import calibrate_results, labelled_runs
from dynasor_sgl.eval.report import markdown, summarize, wilson
from dynasor_sgl.policy.config import PolicyConfig
from dynasor_sgl.replay.holdout import Point, fixed_cap
from dynasor_sgl.replay.sampled import (
    SampledRun,
    replay_cap,
    replay_oracle,
    replay_policy,
    sampled_run,
)
from dynasor_sgl.search.votes import majority_vote

SC = PolicyConfig.for_algorithm("sc")  # cap 20, read at 5 and every 5 after, entropy >= 0.7
SAMPLE_TOKENS = tuple(10 + i for i in range(20))
SHARED = 7


def run_of(answers: list[str | None]) -> SampledRun:
    return SampledRun(tuple(answers), SAMPLE_TOKENS[: len(answers)], SHARED)


# -- replay ------------------------------------------------------------------------------------


def test_five_agreeing_answers_stop_at_five() -> None:
    run = run_of(["42"] * 5 + ["1", "2", "3", "4", "5"] * 3)
    out = replay_policy(run, SC)
    assert out.used == 5 and out.exit_reason == "threshold" and out.answer == "42"
    assert out.tokens == SHARED + sum(SAMPLE_TOKENS[:5])  # 7 + 10 + 11 + 12 + 13 + 14
    assert out.tokens == 67
    assert out.certaindex == [{"used": 5, "entropy": 1.0}]


def test_disagreeing_answers_run_to_the_cap() -> None:
    run = run_of(["1", "2", "3", "4", "5"] + ["9"] * 15)
    out = replay_policy(run, PolicyConfig.for_algorithm("sc", detect_every=0))  # the paper's
    assert out.used == 20 and out.exit_reason == "cap" and out.answer == "9"
    assert out.tokens == SHARED + sum(SAMPLE_TOKENS)
    # certaindex is read once, at 5, where all five answers differ
    assert [p["used"] for p in out.certaindex] == [5]
    assert out.certaindex[0]["entropy"] < 0.7


def test_a_later_read_can_stop_between_detection_and_cap() -> None:
    # read every 5: entropy certaindex 0 at 5, 0.47 at 10 (sizes 6,1,1,1,1), 0.65 at 15
    config = PolicyConfig.for_algorithm("sc", detect_every=5, thresholds={"entropy": 0.6})
    run = run_of(["1", "2", "3", "4", "5"] + ["5"] * 15)
    out = replay_policy(run, config)
    assert [p["used"] for p in out.certaindex] == [5, 10, 15]
    assert out.certaindex[-1]["entropy"] == pytest.approx(0.6493441)
    assert out.exit_reason == "threshold" and out.used == 15 and out.answer == "5"
    assert out.tokens == SHARED + sum(SAMPLE_TOKENS[:15])


def test_a_short_run_ends_at_its_length() -> None:
    out = replay_policy(run_of(["1", "2", "3", "4", "5", "6", "7"]), SC)
    assert out.used == 7 and out.exit_reason == "cap"
    assert out.tokens == SHARED + sum(SAMPLE_TOKENS[:7])


def test_replay_cap() -> None:
    run = run_of(["4", "5", "5", "4", "4", "4"])
    three = replay_cap(run, 3)
    assert (three.answer, three.used, three.tokens, three.exit_reason) == ("5", 3, 40, "cap")
    assert replay_cap(run, 1).answer == "4"
    over = replay_cap(run, 50)
    assert over.used == 6 and over.answer == "4" and over.tokens == SHARED + 75


def test_oracle_takes_the_earliest_k_after_which_the_majority_never_changes() -> None:
    # majorities at k = 1..6: 7, 3 (a tie goes to the smaller answer), 7, 3, 3, 3
    run = run_of(["7", "3", "7", "3", "3", "3"])
    assert [run.answer_at(k) for k in range(1, 7)] == ["7", "3", "7", "3", "3", "3"]
    out = replay_oracle(run)
    assert out.used == 4 and out.answer == "3" and out.exit_reason == "oracle"
    assert out.tokens == SHARED + 10 + 11 + 12 + 13


@pytest.mark.parametrize("answers", [["8"] * 5, [None] * 5, ["8", "8.0", "8", "8", "8"]])
def test_oracle_of_a_settled_run_is_one(answers: list[str | None]) -> None:
    out = replay_oracle(run_of(answers))
    assert out.used == 1 and out.tokens == SHARED + 10


def test_sampled_run_from_details() -> None:
    details = {"answers": ["1", None, "1"], "sample_tokens": [5, 6, 7]}
    run = sampled_run(details, 30)
    assert run == SampledRun(("1", None, "1"), (5, 6, 7), 12)
    assert run.tokens_at(2) == 23


@pytest.mark.parametrize(("answers", "tokens"), [((), ()), (("1", "2"), (5,))])
def test_sampled_run_needs_matching_lengths(answers: tuple, tokens: tuple) -> None:
    with pytest.raises(ValueError, match="as many token counts as answers"):
        SampledRun(answers, tokens, 0)


# -- report ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("correct", "n", "low", "high"),
    [
        (0, 10, 0.0, 0.2775328),  # z^2 / (n + z^2)
        (10, 10, 0.7224672, 1.0),  # n / (n + z^2)
        (5, 10, 0.2365931, 0.7634069),
        (3, 4, 0.3006418, 0.9544127),
        (0, 0, 0.0, 1.0),
    ],
)
def test_wilson_known_values(correct: int, n: int, low: float, high: float) -> None:
    lo, hi = wilson(correct, n)
    assert lo == pytest.approx(low, abs=1e-6) and hi == pytest.approx(high, abs=1e-6)


@pytest.mark.parametrize("n", [1, 2, 7, 50])
def test_wilson_contains_the_estimate(n: int) -> None:
    for correct in range(n + 1):
        lo, hi = wilson(correct, n)
        assert 0.0 <= lo <= correct / n <= hi <= 1.0


def record(
    qid: str,
    row: str,
    correct: bool,
    total: int,
    status: str = "ok",
    steps: int = 5,
    exit_reason: str = "cap",
    **extra: Any,
) -> dict[str, Any]:
    tokens = {"reasoning": total, "probe": 0, "reward": 0, "total": total}
    return {
        "question_id": qid,
        "row": row,
        "status": status,
        "correct": correct,
        "tokens": tokens,
        "steps": steps,
        "exit_reason": exit_reason,
        **extra,
    }


POLICIES = ("baseline", "dynasor", "oracle")
META = {"program": "cot-probe", "dataset": "hand", "checker": "c", "router": "r"}
# (question, policy) -> (correct, tokens)
TABLE = {
    "q1": {"baseline": (True, 100), "dynasor": (True, 40), "oracle": (True, 20)},
    "q2": {"baseline": (True, 100), "dynasor": (True, 60), "oracle": (True, 20)},
    "q3": {"baseline": (False, 100), "dynasor": (False, 50), "oracle": (False, 30)},
    "q4": {"baseline": (True, 100), "dynasor": (False, 50), "oracle": (True, 50)},
}


def hand_records() -> list[dict[str, Any]]:
    rows = [
        record(q, p, c, t, steps=t // 10) for q, by_p in TABLE.items() for p, (c, t) in by_p.items()
    ]
    # q5 is not complete (dynasor failed, no oracle): it must not count for any policy
    rows += [record("q5", "baseline", True, 10), record("q5", "dynasor", False, 0, "error")]
    return rows


def test_summary_by_hand() -> None:
    summary = summarize(hand_records(), POLICIES, META)
    assert summary["questions"] == 4 and summary["errors"] == 1
    pol = summary["rows"]
    assert {p: pol[p]["n"] for p in POLICIES} == dict.fromkeys(POLICIES, 4)
    assert pol["baseline"]["accuracy"] == 0.75
    assert pol["dynasor"]["accuracy"] == 0.5
    assert pol["oracle"]["accuracy"] == 0.75
    assert pol["baseline"]["mean_tokens"] == 100.0  # q5's 10 tokens are left out
    assert pol["dynasor"]["mean_tokens"] == 50.0  # (40 + 60 + 50 + 50) / 4
    assert pol["oracle"]["mean_tokens"] == 30.0  # (20 + 20 + 30 + 50) / 4
    assert pol["dynasor"]["mean_used"] == 5.0
    assert pol["baseline"]["saved_vs_baseline"] == 0.0
    assert pol["dynasor"]["saved_vs_baseline"] == pytest.approx(0.5)
    assert pol["oracle"]["saved_vs_baseline"] == pytest.approx(0.7)
    assert summary["fraction_of_oracle_saving"] == pytest.approx(0.5 / 0.7)
    assert pol["dynasor"]["fraction_of_oracle_saving"] == pytest.approx(0.5 / 0.7)
    assert pol["oracle"]["differ_from_baseline"] == 0  # no record here names an answer
    assert pol["baseline"]["ci95"] == pytest.approx([0.3006418, 0.9544127], abs=1e-6)
    assert summary["dynasor_accuracy_within_baseline_ci"] is True
    assert pol["oracle"]["exit_reasons"] == {"cap": 4}
    assert pol["dynasor"]["mean_tokens_by_kind"] == {"reasoning": 50.0, "probe": 0.0, "reward": 0.0}
    assert "curves" not in summary  # only self-consistency has replayed curves


def test_each_row_counts_the_answers_that_differ_from_the_baseline() -> None:
    answers = {"q1": ("4", "4.0"), "q2": ("4", "5"), "q3": (None, None), "q4": ("7", None)}
    rows = []
    for q, (base, mine) in answers.items():
        rows.append(record(q, "baseline", True, 10, answer=base))
        rows.append(record(q, "dynasor", True, 10, answer=mine))
    stats = summarize(rows, ("baseline", "dynasor"), META)["rows"]
    assert stats["dynasor"]["differ_from_baseline"] == 2  # q2, and q4 that lost its answer
    assert stats["baseline"]["differ_from_baseline"] == 0


def test_summary_without_savings() -> None:
    rows = [record("q1", p, False, 0) for p in POLICIES]
    summary = summarize(rows, POLICIES, META)
    assert summary["rows"]["dynasor"]["saved_vs_baseline"] is None
    assert summary["fraction_of_oracle_saving"] is None


def test_markdown_has_the_table_and_each_row() -> None:
    text = markdown(summarize(hand_records(), POLICIES, {**META, "modes": {"dynasor": "live"}}))
    lines = text.splitlines()
    assert lines[0] == "# cot-probe on hand (4 questions)"
    assert (
        "| row | mode | accuracy (95% CI) | mean tokens | probe + reward tokens "
        "| mean knob units | saved vs baseline | of the oracle's saving "
        "| answers differing from the baseline | fixed cap at equal tokens "
        "| no answer (runs; samples) | exits |"
    ) in lines
    rows = {line.split(" | ")[0]: line for line in lines if line.startswith("| ")}
    assert set(rows) >= {"| baseline", "| dynasor", "| oracle"}
    assert rows["| dynasor"].startswith("| dynasor | live | 50.0% (")
    assert "| 50.0 |" in rows["| dynasor"] and "| 50.0% | 71.4% |" in rows["| dynasor"]
    assert "| 0/4 |" in rows["| dynasor"]  # no record here names an answer
    assert "Errors (retried on resume): 1." in text


def test_the_summary_counts_runs_and_samples_without_an_answer() -> None:
    rows = [
        {
            **record("q1", "baseline", True, 10),
            "answer": "4",
            "details": {"answers": ["4", None, "you want", "4"]},
        },
        {**record("q2", "baseline", False, 10), "answer": None, "details": {"answers": [None]}},
    ]
    stats = summarize(rows, ["baseline"], META)["rows"]["baseline"]
    assert (stats["no_answer"], stats["samples"], stats["samples_without_answer"]) == (1, 5, 2)
    assert "| 1; 2/5 |" in markdown(summarize(rows, ["baseline"], META))


def sc_baseline(qid: str, gold: str, answers: list[str], shared: int) -> dict[str, Any]:
    """A full-budget SC record: 10 tokens per sample plus `shared`; right if the majority is."""
    details = {"answers": answers, "sample_tokens": [10] * len(answers)}
    right = majority_vote(answers).answer == gold
    return record(qid, "baseline", right, shared + 10 * len(answers), gold=gold, details=details)


def sc_records() -> list[dict[str, Any]]:
    base = [
        sc_baseline("a", "4", ["4"] * 5, 0),
        sc_baseline("b", "7", ["1", "7", "7", "7", "7"], 10),
    ]
    rows = list(base)
    for r, right in zip(base, (True, False), strict=True):
        rows.append(
            record(
                r["question_id"],
                "dynasor",
                right,
                50,
                certaindex=[{"step": 5, "entropy": 1.0 if right else 0.4}],
            )
        )
        rows.append(record(r["question_id"], "oracle", right, 10, exit_reason="oracle"))
    return rows


SC_META = {
    **META,
    "program": "my-own-vote",  # any SC program: replay is decided by the algorithm
    "algorithm": "sc",
    "modes": {"dynasor": "replay"},
    "policy": {"cap": 5},
    "fixed_thresholds": {"entropy": 0.7},
}


def test_self_consistency_curves_by_hand() -> None:
    summary = summarize(sc_records(), POLICIES, SC_META)
    by_cap = summary["curves"]["baseline_by_cap"]
    assert [p["x"] for p in by_cap] == [1, 2, 3, 4, 5]
    # b: majority "1" at 1 and 2 (a tie goes to the smaller answer), "7" from 3 on
    assert [p["accuracy"] for p in by_cap] == [0.5, 0.5, 1.0, 1.0, 1.0]
    # a: 10 per sample; b: 10 shared + 10 per sample
    assert [p["mean_tokens"] for p in by_cap] == [15.0, 25.0, 35.0, 45.0, 55.0]
    by_threshold = summary["curves"]["paper_by_threshold"]
    assert by_threshold[0]["x"] == 0.3 and by_threshold[-1]["x"] == 1.0
    # with cap 5 every threshold reads at 5 and ends there, on the right majority
    assert all(p["mean_tokens"] == 55.0 and p["accuracy"] == 1.0 for p in by_threshold)
    assert summary["certaindex_at_detection"] == {"correct": [1.0], "wrong": [0.4]}


# -- plots -------------------------------------------------------------------------------------

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and data[12:16] == b"IHDR"
    assert len(data) > 10_000  # axes, labels and points, not an empty canvas
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_plots_are_png_files(tmp_path: Path) -> None:
    summary = summarize(sc_records(), POLICIES, SC_META)
    plots.accuracy_vs_tokens(summary, tmp_path / "acc.png")
    plots.certaindex_histogram(summary, tmp_path / "hist.png")
    assert png_size(tmp_path / "acc.png") == (768, 528)  # 6.4 x 4.4 in at 120 dpi
    assert png_size(tmp_path / "hist.png") == (768, 480)


def test_plots_of_zero_accuracy_with_a_zero_lower_bound(tmp_path: Path) -> None:
    rows = [record(q, p, False, 10) for q in ("a", "b") for p in POLICIES]
    summary = summarize(rows, POLICIES, META)
    assert summary["rows"]["dynasor"]["ci95"][0] == 0.0
    assert summary["rows"]["dynasor"]["accuracy"] == 0.0
    plots.accuracy_vs_tokens(summary, tmp_path / "acc.png")
    plots.certaindex_histogram(summary, tmp_path / "hist.png")
    assert png_size(tmp_path / "acc.png") == (768, 528)
    assert png_size(tmp_path / "hist.png") == (768, 480)


# -- calibrate ---------------------------------------------------------------------------------


def write_results(path: Path, rows: list[dict[str, Any]]) -> Path:
    header = {"kind": "run", "settings": {"program": "self-consistency"}}
    path.write_text("".join(json.dumps(r) + "\n" for r in [header, *rows]))
    return path


def test_calibrate_results_by_hand(tmp_path: Path) -> None:
    # Three settled questions and one whose first two samples mislead (a tie at 2 goes to
    # "1"). Reading at 2 with threshold 1.0 stops the settled ones at 2 (3 x 20 tokens) and
    # lets the other run to 5 (50): 110 tokens, all correct; nothing cheaper keeps 100%.
    rows = [sc_baseline(f"easy{i}", "4", ["4"] * 5, 0) for i in range(3)]
    rows.append(sc_baseline("hard", "4", ["1", "4", "4", "4", "4"], 0))
    rows.append(record("hard", "paper", True, 50))  # other rows are ignored
    rows.append(sc_baseline("failed", "4", ["4"] * 5, 0) | {"status": "error"})
    policy, result, _ = calibrate_results(write_results(tmp_path / "r.jsonl", rows), margin=0.0)
    assert policy == {
        "sc": {"cap": 5, "detect_at": 2, "initial": 2, "thresholds": {"entropy": 1.0}}
    }
    assert result.n_programs == 4 and result.accuracy == result.full_accuracy == 1.0
    assert result.tokens == 110 and result.full_tokens == 200
    assert result.saving == pytest.approx(0.45)
    PolicyConfig.for_algorithm("sc", **policy["sc"])  # a valid policy


def test_labelled_runs_answer_as_the_program_votes_ties_included() -> None:
    # "5" comes first, but the program's vote breaks a tie by the smaller answer: "4". The
    # labelled run must score that answer, the one the eval's rows and the live program give.
    rows = [sc_baseline("tie", "4", ["5", "4", "5", "4"], 0)]
    (run,) = labelled_runs(rows)
    assert [r.final_answer() for r in run.records] == ["5", "4", "5", "4"]
    assert fixed_cap([run], 4) == Point(1.0, 40)


def test_calibrate_keeps_the_full_budget_when_every_early_stop_loses(tmp_path: Path) -> None:
    # the majority is "1" (ties) until the fifth sample: only reading at the cap keeps 100%;
    # among the equally cheap candidates the most cautious wins
    rows = [sc_baseline("hard", "4", ["1", "2", "3", "4", "4"], 0)]
    policy, result, _ = calibrate_results(write_results(tmp_path / "r.jsonl", rows), margin=0.0)
    assert policy == {
        "sc": {"cap": 5, "detect_at": 5, "initial": 5, "thresholds": {"entropy": 1.0}}
    }
    assert result.accuracy == result.full_accuracy == 1.0 and result.saving == 0.0
    assert result.oracle_saving == 0.0  # the majority changes at the last sample


def test_calibrate_needs_baseline_records(tmp_path: Path) -> None:
    rows = [record("q1", "dynasor", True, 50), record("q1", "oracle", True, 10)]
    path = write_results(tmp_path / "r.jsonl", rows)
    with pytest.raises(ValueError, match=r"r.jsonl has no full-budget self-consistency runs"):
        calibrate_results(path, margin=0.0)


def test_calibrate_pools_results_files_and_refuses_a_question_twice(tmp_path: Path) -> None:
    # The hand-computed case above, split over two files, gives the same choice pooled.
    easy = [sc_baseline(f"easy{i}", "4", ["4"] * 5, 0) for i in range(3)]
    hard = [sc_baseline("hard", "4", ["1", "4", "4", "4", "4"], 0)]
    first, second = (
        write_results(tmp_path / "a.jsonl", easy),
        write_results(tmp_path / "b.jsonl", hard),
    )
    policy, result, _ = calibrate_results([first, second], margin=0.0)
    assert policy["sc"]["detect_at"] == 2 and result.n_programs == 4
    again = write_results(tmp_path / "c.jsonl", hard)
    with pytest.raises(
        ValueError, match=r"'hard' has a full-budget run in both .*b.jsonl and .*c.jsonl"
    ):
        calibrate_results([first, second, again], margin=0.0)


def test_replay_is_decided_by_the_algorithm_not_the_programs_name() -> None:
    from dynasor_sgl.eval.runner import EvalSpec

    mine = EvalSpec("mymod:VOTE", "sc", policy={"cap": 5})
    assert mine.replayed and mine.rows() == ("baseline", "paper", "oracle")
    assert mine.reported_rows() == ("baseline", "dynasor", "paper", "oracle")
    assert mine.baseline_policy()["initial"] == 5  # every sample drawn at once
    cot = EvalSpec("cot-probe", "cot")
    assert not cot.replayed and cot.rows() == cot.reported_rows() == ("baseline", "dynasor")
