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
# (at 48 tokens, four runs trimmed 2, 6, 6 and 5 of 6 later samples). One CI run saw every trim
# end at the budget: a dip in the last tokens, or an abort that landed after the worker had
# finished, depends on sampling and on timing. So the budget is 96 tokens with 9 later samples,
# and the check is on the router's record of where each trim was decided: a trim decided in the
# first half of the budget leaves the abort 48 decode steps to land.
QUESTION = "Pick any whole number between 1 and 1000 and tell me which one you picked."
MAX_TOKENS = 96
PARAMS = {"max_tokens": MAX_TOKENS, "temperature": 1.0}
POLICY = {
    "cap": 12,
    "initial": 12,
    "pace": 12,
    "detect_at": 12,
    "detect_every": 0,
    "confidence_window": 4,
    "confidence_percentile": 10,
    "warmup": 3,
    "confidence_topk": 5,
}
EARLY = MAX_TOKENS // 2


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
    assert all(details["answers"][i] is None for i in trimmed)  # they left the vote
    # The router's view: the program's threshold, its trims, their tokens counted.
    info = httpx.get(f"{router_url}/programs/{result.program_id}", timeout=30).json()
    assert info["confidence"]["threshold"] is not None
    assert info["confidence"]["trimmed"] == len(trimmed)
    decided = info["confidence"]["trimmed_at"]
    assert len(decided) == len(trimmed) and all(1 <= at <= MAX_TOKENS for at in decided)
    # Mid-generation: some trim was decided early, and its abort cut the sample short.
    assert min(decided) <= EARLY, (decided, details)
    assert min(details["completion_tokens"][i] for i in trimmed) < MAX_TOKENS, details
    assert info["trimmed"] == sorted(f"s{i}" for i in trimmed)
    assert info["tokens"]["completion"] == sum(details["completion_tokens"])
    assert result.tokens["total"] == result.router_tokens["total"]  # type: ignore[index]
    metrics = httpx.get(f"{router_url}/metrics", timeout=30).text
    assert 'dynasor_branches_trimmed_total{reason="low_confidence"}' in metrics
    print(
        f"trimmed {len(trimmed)} of {len(details['trimmed'])} samples, decided at {decided}; "
        f"completion tokens {details['completion_tokens']}; "
        f"threshold {info['confidence']['threshold']:.3f}; answer {result.answer!r}"
    )
