"""Distribution-free risk control for the stop rule: how permissive a threshold may be.

What early exit must preserve is the answer the program gives at its full budget. A
calibration program i run to its cap gives, for each candidate stop rule j, one loss
L_ij = 1[the answer where rule j stops ≠ the answer at the cap] (one loss per *program*: the
readings inside a program are correlated, so the sample size is the number of programs). The
candidates come in a sequence fixed before the data is seen, most conservative first.

Learn-then-Test (Angelopoulos, Bates, Candès, Jordan, Lei; arXiv 2110.01052): the null
hypothesis of candidate j is "its risk R_j = E[L_ij] exceeds ε"; its exact binomial p-value is
p_j = P(Binom(n, ε) ≤ k_j) with k_j = Σ_i L_ij; fixed-sequence testing rejects p_1, p_2, ... at
level δ until the first that is not below δ (no multiplicity penalty, as the order was fixed
first). Every rejected candidate has risk ≤ ε with probability ≥ 1 − δ over the calibration
draw, jointly, so the last one rejected (the most permissive) is returned. The loss need not be
monotone in the threshold (answers can flip and flip back). Several sequences (e.g. one per
detection point) are tested at δ / S each (Bonferroni over the S starts), so any candidate
certified in any of them may be chosen. When nothing is certified the answer is "run to the
cap", whose loss is 0 by construction: never the empirically best candidate.

Pure numpy/scipy; no I/O, no clock, deterministic.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import binom

DEFAULT_EPSILON = 0.02  # the disagreement rate with the full budget that is tolerated
DEFAULT_DELTA = 0.1  # the chance that the calibration draw makes the bound wrong


def check_levels(epsilon: float, delta: float) -> None:
    """ValueError unless 0 < ε < 1 and 0 < δ < 1."""
    for name, value in (("epsilon", epsilon), ("delta", delta)):
        if not 0.0 < value < 1.0 or math.isnan(value):
            raise ValueError(f"{name} must be in (0, 1), got {value!r}")


def p_value(losses: int, n: int, epsilon: float) -> float:
    """The exact binomial p-value of "risk > ε" after `losses` of `n` programs disagreed:
    P(Binom(n, ε) ≤ losses), in (0, 1]. n = 0 gives 1 (no evidence)."""
    if n < 0 or not 0 <= losses <= max(n, 0):
        raise ValueError(f"need 0 <= losses <= n, got losses={losses}, n={n}")
    if n == 0:
        return 1.0
    return float(binom.cdf(losses, n, epsilon))


def min_programs(epsilon: float, delta: float) -> int:
    """The fewest calibration programs that can certify anything: with no disagreement at all,
    (1 − ε)^n ≤ δ, so n ≥ ln δ / ln(1 − ε) (114 at ε = 0.02, δ = 0.1)."""
    check_levels(epsilon, delta)
    return math.ceil(math.log(delta) / math.log1p(-epsilon) - 1e-12)


def certifiable_epsilon(n: int, delta: float) -> float:
    """The smallest ε that `n` programs with no disagreement certify at δ: 1 − δ^(1/n) (1.0
    for n = 0). What to state when a calibration set is too small for the ε asked."""
    if n <= 0:
        return 1.0
    return 1.0 - delta ** (1.0 / n)


@dataclass(frozen=True)
class Certified:
    """The outcome of one fixed sequence: `index` is the last candidate certified (None:
    none, run to the cap); `p_values` and `risks` (empirical disagreement rates) are per
    candidate tested, in sequence order, up to and including the first not rejected."""

    index: int | None
    n: int
    epsilon: float
    delta: float
    p_values: tuple[float, ...]
    risks: tuple[float, ...]


def fixed_sequence(losses: np.ndarray, epsilon: float, delta: float) -> Certified:
    """Learn-then-Test over one sequence. `losses` is n programs × m candidates of 0/1,
    columns ordered most conservative first; each candidate is tested at δ in order and the
    walk stops at the first that is not rejected."""
    check_levels(epsilon, delta)
    matrix = np.asarray(losses, dtype=float)
    if matrix.ndim != 2:
        raise ValueError(f"losses must be programs x candidates, got shape {matrix.shape}")
    if matrix.size and not np.isin(matrix, (0.0, 1.0)).all():
        raise ValueError("losses must be 0 or 1")
    n = matrix.shape[0]
    index: int | None = None
    p_values: list[float] = []
    risks: list[float] = []
    for j in range(matrix.shape[1]):
        k = int(matrix[:, j].sum())
        p = p_value(k, n, epsilon)
        p_values.append(p)
        risks.append(k / n if n else 0.0)
        if p > delta:
            break
        index = j
    return Certified(index, n, epsilon, delta, tuple(p_values), tuple(risks))


def certify(sequences: Sequence[np.ndarray], epsilon: float, delta: float) -> list[Certified]:
    """Learn-then-Test over several sequences at once: each at δ / S (Bonferroni over the S
    starts), so every candidate certified in any of them holds its bound jointly."""
    check_levels(epsilon, delta)
    if not sequences:
        return []
    share = delta / len(sequences)
    return [fixed_sequence(s, epsilon, share) for s in sequences]
