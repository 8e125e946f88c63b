"""Votes and selection over a program's branches: majority and reward-weighted votes,
best-of-n, beam top-k, and REBASE's softmax child budget.

Owns how a program turns its branches' answers and rewards into a final answer and how
step-level search spends its width. Answer equivalence comes from `dynasor_sgl.answers.equivalence`.
Deterministic, numpy only; knows nothing about SGLang, HTTP, the router or the policy.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dynasor_sgl.answers import equivalence as _answers

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Vote:
    """The winner of a vote: a representative answer (None if no answer was non-empty) and the
    winner's share of all votes (count share, or weight share for a weighted vote) in [0, 1]."""

    answer: str | None
    share: float


def _finite(values: Sequence[float], what: str) -> np.ndarray:
    arr = np.asarray(values, dtype=float).reshape(-1)
    if not np.isfinite(arr).all():
        raise ValueError(f"{what} must be finite numbers, got {list(values)!r}")
    return arr


def _representative(answers: Sequence[str | None], members: list[int]) -> str | None:
    """The most frequent raw spelling in a class, ties by the smallest string (order-free)."""
    counts = Counter(answers[i] for i in members)
    return min(counts, key=lambda a: (-counts[a], a or ""))


def _vote(answers: Sequence[str | None], weights: np.ndarray) -> Vote:
    """Winner by (total weight, count, normalized answer) over non-empty classes."""
    best: tuple[float, int, str, str | None] | None = None
    for members in _answers.cluster(answers):
        rep = _representative(answers, members)
        key = _answers.normalize(rep)
        if not key:
            continue
        weight = math.fsum(float(weights[i]) for i in members)
        if best is None or (-weight, -len(members), key) < (-best[0], -best[1], best[2]):
            best = (weight, len(members), key, rep)
    if best is None:
        return Vote(None, 0.0)
    total = math.fsum(float(w) for w in weights)
    return Vote(best[3], best[0] / total if total > 0 else 0.0)


def majority_vote(answers: Sequence[str | None]) -> Vote:
    """Self-consistency's final answer: the largest class of equivalent answers.

    Classes come from `answers.cluster`. share = |C*| / n over all n answers (None and blank
    included, so unparseable samples lower the share). Ties between equally large classes go to
    the smallest normalized answer (`answers.normalize`), so the result does not depend on the
    order of `answers`; the representative is the class's most frequent raw spelling (ties: the
    smallest string). None and blank answers never win: [] or all-empty -> Vote(None, 0.0).
    Order-free whenever equivalence is transitive (always for plain numbers and strings).
    Examples: ["4", "4", "5"] -> Vote("4", 2/3); ["5", "4"] -> Vote("4", 0.5).
    """
    return _vote(answers, np.ones(len(answers)))


def weighted_vote(answers: Sequence[str | None], weights: Sequence[float]) -> Vote:
    """REBASE's final answer: the class of equivalent answers with the largest total weight.

    W_c = Σ_{i ∈ c} w_i (weights are finite and ≥ 0, e.g. terminal rewards in [0, 1]), summed
    exactly (`math.fsum`) so the winner does not depend on order. share = W_c* / Σ_i w_i, with
    empty answers' weight in the denominator; 0.0 when all weights are 0. Ties: larger class,
    then smallest normalized answer. None/blank answers never win: [] or all-empty ->
    Vote(None, 0.0). Mismatched lengths, negative or non-finite weights raise ValueError.
    """
    w = _finite(weights, "weights")
    if len(w) != len(answers):
        raise ValueError(f"{len(answers)} answers but {len(w)} weights")
    if (w < 0).any():
        raise ValueError(f"weights must be >= 0, got {list(weights)!r}")
    return _vote(answers, w)


def best_of_n(rewards: Sequence[float], answers: Sequence[str | None] | None = None) -> int | None:
    """Index of the highest-reward candidate (best-of-N), or None when there are none.

    Rewards are finite floats (any range). With `answers` (same length), candidates whose answer
    is None/blank are only chosen when every answer is empty. Ties go to the smallest index.
    Non-finite rewards or mismatched lengths raise ValueError.
    """
    r = _finite(rewards, "rewards")
    if answers is not None and len(answers) != len(r):
        raise ValueError(f"{len(answers)} answers but {len(r)} rewards")
    if len(r) == 0:
        return None
    candidates = list(range(len(r)))
    if answers is not None:
        filled = [i for i in candidates if _answers.normalize(answers[i])]
        candidates = filled or candidates
    return max(candidates, key=lambda i: (r[i], -i))


def beam_select(rewards: Sequence[float], k: int) -> list[int]:
    """The indices of the top-k nodes by reward (step-level beam search), best first.

    Stable: equal rewards keep their input order. k ≥ 0 (else ValueError); k ≥ n keeps all n,
    k = 0 or no nodes -> []. Rewards must be finite (ValueError otherwise).
    """
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k!r}")
    r = _finite(rewards, "rewards")
    return [int(i) for i in np.argsort(-r, kind="stable")[:k]]


def _largest_remainder(quotas: np.ndarray, total: int, priority: np.ndarray) -> list[int]:
    """Integers n_i with Σ n_i = total: floor(q_i), then +1 to the largest remainders."""
    base = np.floor(quotas).astype(np.int64)
    # Ranked by remainder, then by priority, then by index (np.lexsort: last key is primary).
    order = np.lexsort((np.arange(len(quotas)), -priority, -(quotas - base)))
    extra = total - int(base.sum())
    while extra < 0:  # only if rounding pushed a quota over an integer; take from the last
        i = next(j for j in order[::-1] if base[j] > 0)
        base[i] -= 1
        extra += 1
    for i in range(extra):
        base[order[i % len(order)]] += 1
    return [int(x) for x in base]


def rebase_allocation(rewards: Sequence[float], width: int, temperature: float) -> list[int]:
    """REBASE child budget: n_i ≈ W · softmax(r_i / T), integers summing exactly to W.

    Rewards r_i are the current frontier nodes' step rewards (finite; [0, 1] for P("Yes")),
    W = width ≥ 0 the children to spawn in total, T = temperature > 0 (finite). p_i is computed
    stably (max subtracted); quotas W·p_i are rounded by largest remainder (ties by higher reward,
    then lower index), so a higher reward never gets fewer children. Nodes with n_i = 0 get no
    children (they are pruned). Edges: no nodes -> []; W = 0 -> all zeros; equal rewards -> an
    even split (the first W mod n nodes get one more); T → 0 -> everything to the best node(s).
    Bad width or temperature, or non-finite rewards, raise ValueError.
    """
    if isinstance(width, bool) or not isinstance(width, int) or width < 0:
        raise ValueError(f"width must be an integer >= 0, got {width!r}")
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be finite and > 0, got {temperature!r}")
    r = _finite(rewards, "rewards")
    if len(r) == 0:
        return []
    with np.errstate(over="ignore", under="ignore"):  # T → 0: the others' terms go to 0
        e = np.exp((r - r.max()) / temperature)
    return _largest_remainder(width * e / e.sum(), width, r)
