"""Learn-then-Test on hand-computed losses: the p-values, the fixed sequence, the shared δ, and
the sample sizes a bound needs (`dynasor_sgl.policy.risk`)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dynasor_sgl.policy import risk


def test_the_p_value_is_the_binomial_tail_below_the_losses_seen() -> None:
    # P(Binom(50, 0.1) <= 0) = 0.9^50
    assert risk.p_value(0, 50, 0.1) == pytest.approx(0.9**50)
    # P(Binom(3, 0.5) <= 1) = (1 + 3) / 8
    assert risk.p_value(1, 3, 0.5) == pytest.approx(0.5)
    assert risk.p_value(0, 0, 0.1) == 1.0  # no programs: no evidence
    with pytest.raises(ValueError, match="losses <= n"):
        risk.p_value(4, 3, 0.5)


def test_the_fewest_programs_that_certify_anything() -> None:
    # (1 - eps)^n <= delta: ln 0.1 / ln 0.98 = 113.97 -> 114 (the reference's table)
    assert risk.min_programs(0.02, 0.1) == 114
    assert risk.min_programs(0.02, 0.05) == 149
    assert risk.certifiable_epsilon(114, 0.1) <= 0.02 < risk.certifiable_epsilon(113, 0.1)
    assert risk.certifiable_epsilon(0, 0.1) == 1.0


def test_the_sequence_stops_at_the_first_candidate_it_cannot_reject() -> None:
    # 40 programs, eps 0.25, delta 0.1. Candidates (conservative first) lose on 0, 2, 12 and 1
    # programs: p = 0.75^40 (1e-5), P(Binom(40, .25) <= 2) (1e-3), P(<= 12) (0.82): the
    # walk certifies the first two and stops at the third, never reaching the fourth, although
    # it would pass on its own (the loss is not monotone, and the order was fixed first).
    losses = np.zeros((40, 4))
    losses[:2, 1] = 1
    losses[:12, 2] = 1
    losses[:1, 3] = 1
    out = risk.fixed_sequence(losses, 0.25, 0.1)
    assert out.index == 1
    assert len(out.p_values) == 3 and out.p_values[2] > 0.1
    assert out.risks == (0.0, 0.05, 0.3)
    assert risk.p_value(1, 40, 0.25) < 0.1  # the fourth alone would have passed


def test_nothing_certified_when_the_first_candidate_fails() -> None:
    out = risk.fixed_sequence(np.zeros((10, 3)), 0.02, 0.1)  # 0.98^10 = 0.82 > 0.1
    assert out.index is None and len(out.p_values) == 1


def test_several_sequences_share_delta() -> None:
    # 0.9^25 = 0.072: certified at delta 0.1 alone, not at 0.1 / 2 shared by two sequences
    alone = risk.fixed_sequence(np.zeros((25, 1)), 0.1, 0.1)
    shared = risk.certify([np.zeros((25, 1)), np.zeros((25, 1))], 0.1, 0.1)
    assert alone.index == 0
    assert [c.index for c in shared] == [None, None]
    assert all(math.isclose(c.delta, 0.05) for c in shared)


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.1, float("nan")])
def test_levels_outside_zero_one_are_an_error(bad: float) -> None:
    with pytest.raises(ValueError, match="epsilon must be in"):
        risk.fixed_sequence(np.zeros((1, 1)), bad, 0.1)
    with pytest.raises(ValueError, match="delta must be in"):
        risk.fixed_sequence(np.zeros((1, 1)), 0.1, bad)


def test_losses_must_be_zero_or_one() -> None:
    with pytest.raises(ValueError, match="0 or 1"):
        risk.fixed_sequence(np.full((2, 1), 0.5), 0.1, 0.1)
