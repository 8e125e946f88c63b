"""Self-consistency with confidence trimming, the plain parts: which samples the router trimmed,
their confidence, the confidence-weighted vote of the rest."""

from __future__ import annotations

from typing import Any

import pytest

from dynasor_sgl.programs import self_consistency as sc


def meta(mean: float | None, reason: str | None = None) -> dict[str, Any]:
    finish: dict[str, Any] = {"type": "abort", "reason": reason} if reason else {"type": "stop"}
    out: dict[str, Any] = {"finish_reason": finish, "completion_tokens": 10}
    if mean is not None:
        out["confidence"] = {"mean": mean, "lowest_group": mean, "threshold": 1.0}
    return out


def test_trimmed_reads_the_routers_low_confidence_reason() -> None:
    assert sc.trimmed(meta(2.0, "low_confidence"))
    assert not sc.trimmed(meta(2.0))
    assert not sc.trimmed({"finish_reason": {"type": "abort", "message": "client"}})
    assert not sc.trimmed({"finish_reason": None})


def test_sample_confidence_is_the_mean_or_zero_when_the_router_sent_none() -> None:
    assert sc.sample_confidence(meta(3.5)) == pytest.approx(3.5)
    assert sc.sample_confidence(meta(None)) == 0.0
    assert sc.sample_confidence({"confidence": {"mean": None}}) == 0.0


def test_confidence_vote_weights_each_kept_sample_by_its_mean_confidence() -> None:
    samples = {
        "s0": ("The answer is 4", 10, meta(1.0)),
        "s1": ("The answer is 4", 10, meta(1.0)),
        "s2": ("The answer is 7", 10, meta(5.0)),
        "s3": ("The answer is 9", 10, meta(0.1, "low_confidence")),
    }
    answers = {"s0": "4", "s1": "4", "s2": "7"}  # s3 was trimmed: it left the vote
    vote = sc.confidence_vote(answers, samples)
    assert vote.answer == "7"  # 5.0 outweighs 1.0 + 1.0
    assert vote.share == pytest.approx(5.0 / 7.0)
    # Equal confidences: the majority wins, as without weights.
    even = {b: (t, n, meta(2.0)) for b, (t, n, _) in samples.items()}
    assert sc.confidence_vote(answers, even).answer == "4"
