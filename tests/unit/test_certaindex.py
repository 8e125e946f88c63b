"""Certaindex signals: known values, edges, properties and import isolation."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
from random import Random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dynasor_sgl.policy.certaindex import (
    all_pass,
    entropy_certaindex,
    entropy_certaindex_from_sizes,
    full_budget_posterior,
    is_hesitant,
    majority_posterior,
    probe_consistency,
    reward_certaindex,
    token_confidence,
)

# Small integer answers: equivalence is decided by the fast path, no math-verify process.
answer_lists = st.lists(st.sampled_from(["1", "2", "3", "4", None, ""]), max_size=12)


def test_entropy_known_values() -> None:
    assert entropy_certaindex(["7"] * 5) == 1.0
    assert entropy_certaindex(["7", "7", "7", "7", "8"]) == pytest.approx(0.6890825, abs=1e-6)
    assert entropy_certaindex(["1", "2", "3", "4", "5"]) == 0.0
    assert entropy_certaindex_from_sizes([4, 1]) == pytest.approx(0.6890825, abs=1e-6)
    # 3-2 split of 5: H = -(.6 ln .6 + .4 ln .4)
    h = -(0.6 * math.log(0.6) + 0.4 * math.log(0.4))
    assert entropy_certaindex_from_sizes([3, 2]) == pytest.approx(1 - h / math.log(5))


def test_entropy_edges() -> None:
    assert entropy_certaindex([]) == 0.0
    assert entropy_certaindex(["42"]) == 0.0
    assert entropy_certaindex([None] * 5) == 0.0
    assert entropy_certaindex(["", "", ""]) == 0.0
    # Equivalent spellings agree; None never joins a cluster.
    assert entropy_certaindex(["1,000", "1000", "$1000$", "1000."]) == 1.0
    assert entropy_certaindex(["3", "3", None]) < 1.0
    assert entropy_certaindex_from_sizes([0, 0, 3]) == 1.0
    with pytest.raises(ValueError):
        entropy_certaindex_from_sizes([3, -1])


@settings(max_examples=150, deadline=None)
@given(answer_lists, st.randoms(use_true_random=False))
def test_entropy_in_range_and_order_invariant(answers: list[str | None], rnd: Random) -> None:
    value = entropy_certaindex(answers)
    assert 0.0 <= value <= 1.0
    shuffled = list(answers)
    rnd.shuffle(shuffled)
    assert entropy_certaindex(shuffled) == pytest.approx(value, abs=1e-12)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(1, 6), min_size=2, max_size=6))
def test_more_agreement_never_lowers_entropy_certaindex(sizes: list[int]) -> None:
    # Moving one answer from a smaller cluster to the largest one is "more agreement".
    sizes = sorted(sizes, reverse=True)
    before = entropy_certaindex_from_sizes(sizes)
    moved = [sizes[0] + 1, *sizes[1:-1], sizes[-1] - 1]
    assert entropy_certaindex_from_sizes(moved) >= before - 1e-12


def test_reward() -> None:
    assert reward_certaindex([0.2, 0.4, 0.9]) == pytest.approx(0.5)
    assert reward_certaindex([0.2, 0.4, 0.9], mode="max") == 0.9
    assert reward_certaindex([]) == 0.0
    assert reward_certaindex([0.3]) == 0.3
    for bad in ([1.2], [-0.1], [float("nan")]):
        with pytest.raises(ValueError):
            reward_certaindex(bad)
    with pytest.raises(ValueError):
        reward_certaindex([0.5], mode="median")  # type: ignore[arg-type]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(0, 1), max_size=10), st.sampled_from(["mean", "max"]))
def test_reward_in_range(rewards: list[float], mode: str) -> None:
    assert 0.0 <= reward_certaindex(rewards, mode) <= 1.0  # type: ignore[arg-type]


def test_probe_consistency_window() -> None:
    texts = ["42}", "42}", "42}"]
    assert probe_consistency(["41", "42", "42"], texts, 2) == 1.0
    assert probe_consistency(["41", "42", "42"], texts, 3) == pytest.approx(2 / 3)
    assert probe_consistency(["42", "42"], texts[:2], 3) == 0.0  # fewer than w probes
    assert probe_consistency([], [], 2) == 0.0
    assert probe_consistency(["42", None, "42"], None, 3) == 0.0  # empty answer in window
    assert probe_consistency(["", "42", "42"], None, 2) == 1.0  # empty answer outside window
    with pytest.raises(ValueError):
        probe_consistency(["1"], ["a", "b"], 1)
    with pytest.raises(ValueError):
        probe_consistency(["1"], None, 0)


def test_hesitation_veto() -> None:
    answers = ["42", "42", "42"]
    assert probe_consistency(answers, ["42}", "42} Wait, let me check", "42}"], 3) == 0.0
    assert probe_consistency(answers, ["42}", "42}", "42} hmmm"], 3) == 0.0
    assert probe_consistency(answers, ["42} Hmm", "42}", "42}"], 2) == 1.0  # outside window
    assert is_hesitant("But then") and is_hesitant("no.") and is_hesitant("OKAY")
    # Whole words only: these contain "no", "but", "hold" as substrings.
    assert not is_hesitant("I know the number; distribute; threshold")
    assert not is_hesitant(None) and not is_hesitant("")


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(["1", "2", None]), max_size=8), st.integers(1, 4))
def test_probe_consistency_in_range(answers: list[str | None], window: int) -> None:
    value = probe_consistency(answers, None, window)
    assert 0.0 <= value <= 1.0
    assert value * window == pytest.approx(round(value * window))


def test_token_confidence() -> None:
    sure = [[0.0, -20.0, -20.0]] * 10
    unsure = [[-1.0, -1.2, -1.4]] * 10
    high, low = token_confidence(sure), token_confidence(unsure)
    assert high == pytest.approx(1 - math.exp(-(40 / 3 - math.log(3)) / 10))
    assert low == pytest.approx(1 - math.exp(-(1.2 - math.log(3)) / 10))
    # k equally likely candidates is the least confident a token can be: 0.
    assert token_confidence([[math.log(0.25)] * 4] * 3) == pytest.approx(0.0, abs=1e-12)
    assert 0 < low < high < 1
    assert token_confidence([]) == 0.0
    # "last" reads the recent window, "min" the worst window.
    mixed = unsure + sure
    assert token_confidence(mixed, window=10, reduce="last") == pytest.approx(high)
    assert token_confidence(mixed, window=10, reduce="min") == pytest.approx(low)
    inf_case = 1 - math.exp(-(500 - math.log(2)) / 10)
    assert token_confidence([[0.0, float("-inf")]]) == pytest.approx(inf_case)
    with pytest.raises(ValueError):
        token_confidence([[-0.1]])  # one logprob: -log p is low when sure, so refuse it
    with pytest.raises(ValueError):
        token_confidence([[float("nan")]])


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.lists(st.floats(-50, 0), min_size=2, max_size=5), max_size=20), st.integers(1, 8)
)
def test_token_confidence_in_range(lps: list[list[float]], window: int) -> None:
    assert 0.0 <= token_confidence(lps, window=window) <= 1.0


def test_token_confidence_monotone() -> None:
    values = [token_confidence([[0.0, -g]] * 4) for g in (2, 3, 5, 10, 30)]
    assert values == sorted(values) and len(set(values)) == len(values)


def test_majority_posterior() -> None:
    assert majority_posterior([]) == 0.0
    assert majority_posterior([1]) == pytest.approx(0.75)
    assert majority_posterior([5]) == pytest.approx(1 - 2**-6)
    assert majority_posterior([3, 3]) == pytest.approx(0.5)
    assert majority_posterior([8, 2]) > majority_posterior([6, 4]) > 0.5
    # Dirichlet branch: deterministic for a seed, ordered by agreement.
    a = majority_posterior([6, 1, 1], seed=1)
    assert a == majority_posterior([1, 6, 1], seed=1)
    assert 0.9 < a <= 1.0
    assert majority_posterior([2, 2, 2], samples=4000) == pytest.approx(1 / 3, abs=0.05)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 10), max_size=5))
def test_majority_posterior_in_range(sizes: list[int]) -> None:
    assert 0.0 <= majority_posterior(sizes, samples=200) <= 1.0


def test_all_pass() -> None:
    assert all_pass({"entropy": 0.8, "reward": 0.5}, {"entropy": 0.7, "reward": 0.4})
    assert all_pass({"entropy": 0.7}, {"entropy": 0.7})  # >= passes
    assert not all_pass({"entropy": 0.8, "reward": 0.3}, {"entropy": 0.7, "reward": 0.4})
    assert not all_pass({"entropy": 0.8}, {"entropy": 0.7, "reward": 0.4})  # missing fails
    assert not all_pass({"entropy": float("nan")}, {"entropy": 0.0})
    assert not all_pass({"entropy": 1.0}, {})


def test_import_without_sglang_and_torch() -> None:
    code = textwrap.dedent("""
        import sys
        sys.modules["torch"] = None
        sys.modules["sglang"] = None
        import dynasor_sgl.policy.certaindex as c
        import dynasor_sgl.policy.machine, dynasor_sgl.scheduling, dynasor_sgl.replay.calibration
        import dynasor_sgl.answers.equivalence
        assert c.entropy_certaindex(["1", "1", "2"]) > 0
        heavy = [m for m in ("math_verify", "sympy", "torch", "sglang")
                 if sys.modules.get(m) is not None]
        assert not heavy, heavy
        print("ok")
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def test_full_budget_posterior_knows_the_budget_left() -> None:
    assert full_budget_posterior([], 5) == 0.0
    # no samples left: the leader wins only if strictly ahead
    assert full_budget_posterior([3, 2], 0) == 1.0 and full_budget_posterior([2, 2], 0) == 0.0
    assert full_budget_posterior([1], 0) == 1.0
    # a lead the samples left cannot overturn (the decided vote) is certain
    assert full_budget_posterior([6, 1], 4) == 1.0
    # the same lead is safer with fewer samples left (not always: one sample left to a lead
    # of one is likely a tie, and a tie is not a win), and safer when wider
    assert full_budget_posterior([8, 4], 4) > full_budget_posterior([8, 4], 14)
    assert full_budget_posterior([3, 1], 2) > full_budget_posterior([3, 1], 15)
    assert full_budget_posterior([4, 1], 15) > full_budget_posterior([3, 2], 15)
    # a tie is at most a coin flip
    assert full_budget_posterior([2, 2], 5) <= 0.5
    # order-free and deterministic for a given seed; a class of one is no answer's lead
    assert full_budget_posterior([2, 3, 1], 7) == full_budget_posterior([3, 2, 1], 7)
    assert full_budget_posterior([1, 1, 1], 10) < 0.5
    with pytest.raises(ValueError, match="remaining"):
        full_budget_posterior([2], -1)


def test_full_budget_posterior_two_classes_against_exact() -> None:
    # One class v and one slot for new answers: P(v + X > Y) with (X, Y, rest) the remaining
    # draws. Exactly, by enumerating the Dirichlet-multinomial over the two shares (v=2, r=2):
    # shares ~ Dirichlet(3, 1), the new class takes k of 2 draws with the beta-binomial
    # P(k) = C(2,k) B(1+k, 3+2-k) / B(1, 3): P(0)=0.6, P(1)=0.3, P(2)=0.1; the leader (2 + 2-k)
    # beats k unless k = 2 (2 vs 2, a tie): 0.9.
    assert full_budget_posterior([2], 2, samples=20000) == pytest.approx(0.9, abs=0.01)
