"""Confidence trimming, pure: token and group confidence on hand values, the warm-up threshold,
the trim decision, and the policy keys that turn it on."""

from __future__ import annotations

import math

import pytest

from dynasor_sgl.policy.certaindex import token_confidence
from dynasor_sgl.policy.config import PolicyConfig
from dynasor_sgl.policy.logprobs import position_confidence, top_logprob_values
from dynasor_sgl.policy.trimming import (
    BranchConfidence,
    ConfidenceTrimmer,
    group_confidences,
    lowest_group_confidence,
    warmup_threshold,
)


def test_position_confidence_is_minus_the_mean_of_the_top_k() -> None:
    assert position_confidence([-0.5, -1.5, -4.0]) == pytest.approx(2.0)
    # k equally likely candidates: log k, the least a real distribution gives.
    assert position_confidence([math.log(0.25)] * 4) == pytest.approx(math.log(4))
    # -inf counts as the floor, rounding above 0 as 0.
    assert position_confidence([0.001, -math.inf]) == pytest.approx(500.0)
    with pytest.raises(ValueError):
        position_confidence([])
    with pytest.raises(ValueError):
        position_confidence([-1.0, math.nan])


def test_top_logprob_values_reads_sglang_entries_best_first() -> None:
    entries = [[-0.1, 11, None], [-2.5, 7, None], [-3.0, 9, None]]
    assert top_logprob_values(entries, 2) == [-0.1, -2.5]
    assert top_logprob_values(None, 5) == []


def test_certaindex_token_confidence_reads_the_same_per_token_value() -> None:
    # c = 2.0, k = 2: excess 2 − log 2 over one window; 1 − exp(−excess / 10).
    got = token_confidence([[-1.0, -3.0]], window=1)
    assert got == pytest.approx(1 - math.exp(-(2.0 - math.log(2)) / 10))


def test_group_confidence_on_hand_values() -> None:
    confs = [4.0, 2.0, 0.0, 2.0, 6.0]
    assert group_confidences(confs, 2) == pytest.approx([3.0, 1.0, 1.0, 4.0])
    assert group_confidences(confs, 6) == []
    assert lowest_group_confidence(confs, 2) == pytest.approx(1.0)
    # Shorter than the window: the mean of all its tokens (DeepConf's reference).
    assert lowest_group_confidence(confs, 10) == pytest.approx(2.8)
    assert lowest_group_confidence([], 3) is None


def test_branch_confidence_tracks_the_sliding_group_as_tokens_arrive() -> None:
    branch = BranchConfidence(window=2)
    seen = []
    for c in [4.0, 2.0, 0.0, 2.0, 6.0]:
        branch.add(c)
        seen.append(branch.group)
    assert seen[0] is None
    assert seen[1:] == pytest.approx([3.0, 1.0, 1.0, 4.0])
    assert branch.lowest_group == pytest.approx(1.0)
    assert branch.mean == pytest.approx(2.8)
    short = BranchConfidence(window=8)
    for c in [1.0, 3.0]:
        short.add(c)
    assert short.group is None and short.lowest_group == pytest.approx(2.0)


def test_branch_confidence_matches_the_batch_computation_over_a_long_branch() -> None:
    confs = [((i * 7919) % 13) / 3.0 for i in range(500)]
    branch = BranchConfidence(window=16)
    for c in confs:
        branch.add(c)
    groups = group_confidences(confs, 16)
    assert branch.group == pytest.approx(groups[-1])
    assert branch.lowest_group == pytest.approx(min(groups))


def test_warmup_threshold_is_the_100_minus_eta_percentile() -> None:
    lowest = [1.0, 2.0, 3.0, 4.0, 5.0]
    assert warmup_threshold(lowest, 10) == pytest.approx(4.6)  # DeepConf-low: keeps top 10%
    assert warmup_threshold(lowest, 50) == pytest.approx(3.0)
    assert warmup_threshold(lowest, 90) == pytest.approx(1.4)  # DeepConf-high
    assert warmup_threshold(lowest, 100) == pytest.approx(1.0)
    assert warmup_threshold([2.5], 10) == pytest.approx(2.5)
    for bad in (0, 101, -5):
        with pytest.raises(ValueError):
            warmup_threshold(lowest, bad)
    with pytest.raises(ValueError):
        warmup_threshold([], 50)


def _branch(trimmer: ConfidenceTrimmer, confs: list[float]) -> BranchConfidence:
    branch = trimmer.branch()
    trimmer.feed(branch, confs)
    return branch


def test_threshold_comes_from_the_first_warmup_branches_that_finished() -> None:
    trimmer = ConfidenceTrimmer(window=2, percentile=50, warmup=3)
    trimmer.finished(_branch(trimmer, [3.0, 3.0, 1.0, 1.0]), aborted=False)  # lowest 1.0
    trimmer.finished(_branch(trimmer, [9.0]), aborted=True)  # aborted: not a reading
    trimmer.finished(trimmer.branch(), aborted=False)  # no tokens: not a reading
    trimmer.finished(_branch(trimmer, [2.0, 4.0]), aborted=False)  # 3.0
    assert trimmer.threshold is None
    trimmer.finished(_branch(trimmer, [5.0, 5.0, 5.0]), aborted=False)  # 5.0
    assert trimmer.warm == pytest.approx([1.0, 3.0, 5.0])
    assert trimmer.threshold == pytest.approx(3.0)
    # Later branches do not move it.
    trimmer.finished(_branch(trimmer, [0.1, 0.1]), aborted=False)
    assert trimmer.threshold == pytest.approx(3.0) and len(trimmer.warm) == 3


def test_trim_fires_when_the_group_falls_below_the_threshold_and_not_before() -> None:
    trimmer = ConfidenceTrimmer(window=3, percentile=90, warmup=1)
    early = _branch(trimmer, [0.1, 0.1, 0.1])
    assert not trimmer.should_trim(early)  # no threshold yet: warm-up is never cut
    trimmer.finished(_branch(trimmer, [2.0, 2.0, 2.0, 2.0]), aborted=False)
    assert trimmer.threshold == pytest.approx(2.0)
    branch = trimmer.branch()
    assert not trimmer.feed(branch, [0.5, 0.5])  # no full group yet
    assert not trimmer.feed(branch, [5.0])  # (0.5 + 0.5 + 5) / 3 = 2.0: not below
    assert trimmer.feed(branch, [0.2])  # (0.5 + 5 + 0.2) / 3 = 1.9
    assert trimmer.should_trim(early)  # a branch that started early is cut once it is set
    trimmer.trimmed(branch)
    assert trimmer.summary()["trimmed"] == 1
    assert trimmer.summary()["trimmed_at"] == [4]  # decided at its 4th token


def test_trimmer_rejects_bad_settings() -> None:
    for kwargs in ({"window": 0}, {"warmup": 0}, {"percentile": 0}, {"percentile": 100.5}):
        with pytest.raises(ValueError):
            ConfidenceTrimmer(**{"window": 4, "percentile": 10, "warmup": 2, **kwargs})


def test_policy_keys_default_off_and_are_validated() -> None:
    cfg = PolicyConfig.for_algorithm("sc")
    assert cfg.confidence_window == 0
    on = PolicyConfig.for_algorithm(
        "sc", confidence_window=32, confidence_percentile=10, warmup=2, confidence_topk=5
    )
    assert PolicyConfig.from_dict(on.to_dict()) == on
    bad = [
        {"confidence_window": -1},
        {"confidence_window": 1.5},
        {"warmup": 0},
        {"confidence_topk": 0},
        {"confidence_topk": 21},
        {"confidence_percentile": 0},
        {"confidence_percentile": 100.1},
        {"confidence_percentile": True},
    ]
    for overrides in bad:
        with pytest.raises(ValueError, match=next(iter(overrides))):
            PolicyConfig.for_algorithm("sc", **overrides)
