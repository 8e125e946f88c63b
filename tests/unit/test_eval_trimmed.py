"""Confidence trimming replayed over a recorded full-budget SC run, on hand values: where each
sample is cut, what the run then costs and answers, the stop combined with it, the curves it
adds to a summary, and the program's recording of token confidences."""

from __future__ import annotations

from typing import Any

import pytest

from dynasor_sgl.eval.curves import curves, gain_over_caps, versus_caps
from dynasor_sgl.policy.config import PolicyConfig
from dynasor_sgl.programs import self_consistency as sc
from dynasor_sgl.replay.sampled import SampledRun, sampled_run
from dynasor_sgl.replay.trimmed import (
    cut_points,
    mean_confidence,
    replay_trimmed,
    replay_weighted_cap,
)

# window 2, warm-up 2; η 100 puts the threshold at the least warm-up lowest group.
TRIM = {"confidence_window": 2, "confidence_percentile": 100.0, "warmup": 2}
SETTINGS = PolicyConfig.for_algorithm("sc", **TRIM)
# warm-up: lowest groups 4.0 (mean of 4, 4) and 3.0 (of 3, 3) -> threshold 3.0
CONFIDENCES = (
    (4.0, 4.0, 4.0),
    (3.0, 3.0, 5.0),
    (5.0, 4.0, 1.0, 1.0),  # groups 4.5, 2.5: cut after its 3rd token
    (2.0, 1.0, 9.0),  # group 1.5 after its 2nd token: cut there
    (5.0, 5.0, 5.0),  # never below 3.0
)
ANSWERS = ("7", "7", "9", "9", "8")
FULL = PolicyConfig.for_algorithm(
    "sc", cap=5, initial=5, pace=5, detect_at=5, detect_every=0, **TRIM
)


def recorded_run(answers: tuple[str | None, ...] = ANSWERS) -> SampledRun:
    # each sample: 2 uncached prompt tokens + its generated tokens; 10 shared
    tokens = tuple(2 + len(c) for c in CONFIDENCES)
    return SampledRun(answers, tokens, 10, CONFIDENCES)


def test_cut_points_by_hand() -> None:
    assert cut_points(CONFIDENCES, SETTINGS) == [None, None, 3, 2, None]


def test_the_warm_up_is_never_cut_and_sets_the_threshold_from_the_first_that_finish() -> None:
    # a sample with no tokens is not a warm-up reading: the next one is
    confidences = ((), (2.0, 2.0), (3.0, 3.0), (1.5, 1.5))  # threshold 2.0
    assert cut_points(confidences, SETTINGS) == [None, None, None, 2]


def test_a_conservative_percentile_cuts_less() -> None:
    # threshold 3.9: keeps the top 10%
    eta10 = PolicyConfig.for_algorithm("sc", **{**TRIM, "confidence_percentile": 10.0})
    assert cut_points(CONFIDENCES, eta10) == [None, None, 3, 2, None]
    all_warm = PolicyConfig.for_algorithm("sc", **{**TRIM, "warmup": 5})
    assert cut_points(CONFIDENCES, all_warm) == [None] * 5


def test_replay_trimming_alone_by_hand() -> None:
    out = replay_trimmed(recorded_run(), FULL)
    # cut samples cost 2 + the tokens they generated: 5, 4; the others 5, 5, 5; shared 10
    assert out.tokens == 10 + 5 + 5 + (2 + 3) + (2 + 2) + 5 == 34
    # kept: 7 (mean 4.0), 7 (3.667), 8 (5.0): 7 weighs 7.67 against 8's 5.0
    assert out.answer == "7" and out.used == 5 and out.exit_reason == "cap"


def test_weighting_can_overturn_the_majority() -> None:
    run = SampledRun(("1", "1", "2"), (3, 3, 3), 0, ((1.0,), (1.0,), (5.0,)))
    assert replay_weighted_cap(run, 3).answer == "2"
    assert replay_weighted_cap(run, 2).answer == "1" and replay_weighted_cap(run, 2).tokens == 6


def test_trimming_with_a_stop_reads_only_the_kept_answers() -> None:
    # read every sample from 3 on: at 3 the kept answers are 7, 7 (sample 2 was cut), which
    # agree (entropy certaindex 1.0) -> stop at 3 samples
    config = PolicyConfig.for_algorithm(
        "sc",
        cap=5,
        initial=3,
        pace=1,
        detect_at=3,
        detect_every=1,
        thresholds={"entropy": 0.9},
        **TRIM,
    )
    out = replay_trimmed(recorded_run(), config)
    assert (out.used, out.exit_reason, out.answer) == (3, "threshold", "7")
    assert out.tokens == 10 + 5 + 5 + 5
    assert out.certaindex == [{"used": 3, "entropy": 1.0}]


def test_a_run_without_confidences_cannot_be_trimmed() -> None:
    run = SampledRun(("1",), (3,), 0)
    with pytest.raises(ValueError, match="record_topk"):
        replay_trimmed(run, FULL)
    with pytest.raises(ValueError, match="confidence lists"):
        SampledRun(("1", "2"), (3, 3), 0, ((1.0,),))


def test_mean_confidence_of_no_tokens_is_zero() -> None:
    assert mean_confidence([]) == 0.0 and mean_confidence([1.0, 2.0]) == 1.5


def test_sampled_run_reads_recorded_confidences() -> None:
    details = {"answers": ["1", "2"], "sample_tokens": [3, 4], "token_confidences": [[1], [2, 3]]}
    run = sampled_run(details, 10)
    assert run.confidences == ((1.0,), (2.0, 3.0)) and run.shared_tokens == 3
    assert sampled_run({"answers": ["1"], "sample_tokens": [3]}, 3).confidences is None


def baseline(gold: str, run: SampledRun) -> dict[str, Any]:
    details = {
        "answers": list(run.answers),
        "sample_tokens": list(run.sample_tokens),
        "token_confidences": [list(c) for c in run.confidences or ()],
    }
    total = run.tokens_at(len(run.answers))
    return {"gold": gold, "details": details, "tokens": {"total": total}}


def test_curves_add_weighting_and_trimming_when_confidences_were_recorded() -> None:
    meta = {"policy": {"cap": 5, "confidence_window": 2, "warmup": 2}}
    out = curves([baseline("7", recorded_run())], meta)
    assert [p["x"] for p in out["confidence_trim_by_percentile"]] == [10, 30, 50, 70, 90]
    # η 90 (threshold 3.1) cuts samples 2 and 3 as η 100 does: 34 tokens, answer 7
    assert out["confidence_trim_by_percentile"][-1] == {"x": 90, "accuracy": 1.0, "mean_tokens": 34}
    assert [p["mean_tokens"] for p in out["weighted_by_cap"]] == [15, 20, 26, 31, 36]
    plain = {"gold": "7", "details": {"answers": ["7"], "sample_tokens": [3]}}
    assert "weighted_by_cap" not in curves([{**plain, "tokens": {"total": 3}}], {})


def test_the_program_records_token_confidences_from_the_top_logprobs() -> None:
    meta = {"output_top_logprobs": [[(-0.5, 1, None), (-1.5, 2, None)], None, [(-2.0, 3, None)]]}
    assert sc.token_confidences(meta, 2) == [1.0, 2.0]  # the position without top-k is skipped
    assert sc.token_confidences({}, 5) == []
    assert sc.gen_options(16, 0.7, 0) == {"max_tokens": 16, "temperature": 0.7}
    assert sc.gen_options(16, 0.7, 5)["top_logprobs_num"] == 5


def test_frontier_and_gain_over_the_fixed_cap_curve_by_hand() -> None:
    caps = [{"x": k, "accuracy": a, "mean_tokens": t} for k, a, t in ((1, 0.4, 10), (2, 0.6, 20))]
    points = [
        {"x": 0.9, "accuracy": 0.5, "mean_tokens": 15},  # cap curve at 15: 0.5 -> gain 0
        {"x": 0.8, "accuracy": 0.45, "mean_tokens": 16},  # beaten by a cheaper point: dropped
        {"x": 0.7, "accuracy": 0.7, "mean_tokens": 25},  # past the last cap: 0.6 -> +0.1
    ]
    gains = gain_over_caps(points, caps)
    assert [p["x"] for p in gains] == [0.9, 0.7]
    assert [p["gain"] for p in gains] == pytest.approx([0.0, 0.1])
    versus = versus_caps({"baseline_by_cap": caps, "mine": points, "empty": []})
    assert versus == {
        "mine": pytest.approx({"min_gain": 0.0, "max_gain": 0.1, "share_on_or_above": 1.0})
    }
