"""Confidence trimming on the real CPU worker: self-consistency with warm-up samples, the router
cutting low-confidence samples mid-generation, and a confidence-weighted vote that still
answers."""

from __future__ import annotations

import httpx
import pytest

from dynasor_sgl import lang as dl

pytestmark = pytest.mark.e2e

# An open question at temperature 1.0: the tiny model's samples ramble, and a number is still
# extractable from most. DeepConf-low (η = 10): the threshold is the 90th percentile of the
# warm-up samples' lowest group confidence, so most later samples dip below it at some window
# (in four runs window 4 trimmed 2, 6, 6 and 5 of the 6 later samples; window 8: 3, 5, 3, 6).
QUESTION = "Pick any whole number between 1 and 1000 and tell me which one you picked."
MAX_TOKENS = 48
PARAMS = {"max_tokens": MAX_TOKENS, "temperature": 1.0}
POLICY = {
    "cap": 9,
    "initial": 9,
    "pace": 9,
    "detect_at": 9,
    "detect_every": 0,
    "confidence_window": 4,
    "confidence_percentile": 10,
    "warmup": 3,
    "confidence_topk": 5,
}


def test_self_consistency_trims_rambling_samples_mid_generation(router_url: str) -> None:
    result = dl.run_program(
        "self-consistency", QUESTION, router=router_url, policy=POLICY, params=PARAMS
    )
    assert result.ok, result.error
    assert result.answer is not None
    details = result.details
    trimmed = [i for i, t in enumerate(details["trimmed"]) if t]
    # Warm-up samples are never trimmed; at least one later one is, before its budget (one
    # whose group fell below the threshold in its last tokens may have ended first: it is
    # still out of the vote, as DeepConf would have cut it there).
    assert trimmed and min(trimmed) >= POLICY["warmup"], details
    assert any(details["completion_tokens"][i] < MAX_TOKENS for i in trimmed), details
    assert all(details["answers"][i] is None for i in trimmed)  # they left the vote
    # The router's view: the program's threshold, its trims, their tokens counted.
    info = httpx.get(f"{router_url}/programs/{result.program_id}", timeout=30).json()
    assert info["confidence"]["threshold"] is not None
    assert info["confidence"]["trimmed"] == len(trimmed)
    assert info["trimmed"] == sorted(f"s{i}" for i in trimmed)
    assert info["tokens"]["completion"] == sum(details["completion_tokens"])
    assert result.tokens["total"] == result.router_tokens["total"]  # type: ignore[index]
    metrics = httpx.get(f"{router_url}/metrics", timeout=30).text
    assert 'dynasor_branches_trimmed_total{reason="low_confidence"}' in metrics
    print(
        f"trimmed {len(trimmed)} of {len(details['trimmed'])} samples; completion tokens "
        f"{details['completion_tokens']}; threshold {info['confidence']['threshold']:.3f}; "
        f"answer {result.answer!r}"
    )
