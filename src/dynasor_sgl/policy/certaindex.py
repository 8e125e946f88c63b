"""Certaindex: the signals that say how settled a reasoning program's answer is.

Each signal is a number in [0, 1], higher meaning "further compute is unlikely to change the
answer" (stability, not correctness). Pure numpy/scipy math, deterministic (randomness only
through a seeded `np.random.Generator`); answer equivalence is
delegated to `dynasor_sgl.answers.equivalence` (which keeps math-verify out of this process).
This module
knows nothing about policies, scheduling, SGLang, torch or the network.
"""

from __future__ import annotations

import functools
import logging
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal

import numpy as np
from scipy import special

from dynasor_sgl.answers import equivalence as _answers
from dynasor_sgl.policy.logprobs import position_confidence

logger = logging.getLogger(__name__)

HESITATION_WORDS: tuple[str, ...] = ("wait", "hold", "but", "okay", "no", "hmm")
"""The Dynasor repo's list of words that mark a probe response as unsure."""

_HESITATION_RE = re.compile(r"\b(?:wait|hold|but|okay|no|hm+)\b", re.IGNORECASE)
DEFAULT_CONFIDENCE_SCALE = 10.0


def entropy_certaindex_from_sizes(sizes: Iterable[int]) -> float:
    """Answer-entropy certaindex from cluster sizes: (log n − H) / log n.

    With n = Σ c_i and H = −Σ (c_i/n) log(c_i/n). Sizes must be ≥ 0 integers (zeros are ignored).
    Edges: n = 0 -> 0.0; n = 1 -> 0.0 (one sample is no evidence of agreement); all n answers in
    one cluster -> 1.0; n singletons -> 0.0. Examples: [5] -> 1.0, [4, 1] -> 0.689.
    The log base cancels. All-singleton input returns exactly 0.0; the rest is clipped to [0, 1].
    """
    counts = [int(c) for c in sizes]
    if any(c < 0 for c in counts):
        raise ValueError(f"cluster sizes must be >= 0, got {counts!r}")
    n = sum(counts)
    if n <= 1 or max(counts) == 1:
        return 0.0
    # Plain floats: for a handful of clusters this is ~10x faster than numpy.
    entropy = -sum(c / n * math.log(c / n) for c in counts if c > 0)
    return min(1.0, max(0.0, (math.log(n) - entropy) / math.log(n)))


def entropy_certaindex(answers: Sequence[str | None]) -> float:
    """Answer-entropy certaindex of extracted answers (SC; tree search over final answers).

    Answers are clustered by equivalence (`dynasor_sgl.answers.cluster`); None and blank
    answers are each their own cluster, so they never count as agreement. Then
    `entropy_certaindex_from_sizes`. Edges: [] -> 0.0, one answer -> 0.0, n equal -> 1.0,
    n distinct (or n None) -> 0.0. Invariant to the order of `answers`.
    """
    return entropy_certaindex_from_sizes(_answers.cluster_sizes(answers))


def reward_certaindex(rewards: Sequence[float], mode: Literal["mean", "max"] = "mean") -> float:
    """Reward certaindex: mean (MCTS) or max (REBASE) of the paths' terminal rewards.

    Rewards must already be normalized to [0, 1] (e.g. P("Yes") from a judge); a value outside
    [0, 1] or NaN raises ValueError. Edges: no rewards -> 0.0; one reward r -> r.
    """
    if mode not in ("mean", "max"):
        raise ValueError(f"mode must be 'mean' or 'max', got {mode!r}")
    if len(rewards) == 0:
        return 0.0
    r = np.asarray(rewards, dtype=float)
    if np.isnan(r).any() or (r < 0).any() or (r > 1).any():
        raise ValueError(f"rewards must be in [0, 1], got {list(rewards)!r}")
    return float(r.mean() if mode == "mean" else r.max())


def is_hesitant(probe_text: str | None) -> bool:
    """Whether a probe response shows hesitation.

    Matches the repo's words (wait, hold, but, okay, no, hmm, plus hmmm…) as whole words,
    case-insensitively. The repo matches substrings, which also vetoes "know", "number" or
    "distribute"; whole words keep the veto to actual hesitation.
    """
    return bool(probe_text) and _HESITATION_RE.search(probe_text or "") is not None


def probe_consistency(
    answers: Sequence[str | None], probe_texts: Sequence[str | None] | None, window: int
) -> float:
    """Dynasor-CoT probe consistency C_k = (1/w) Σ_{j=k−w+1..k} 1[y_j ≡ y_k].

    `answers` are the probe answers y_1..y_k in order, `probe_texts` the raw probe responses
    (same length, or None to skip the veto), `window` = w ≥ 1; ≡ is `answers.equivalent`.
    Returns 0.0 (not certain) when k < w, when any of the last w answers is None or blank, or
    when any of the last w probe texts is hesitant (`is_hesitant`). Otherwise in {0, 1/w, …, 1};
    1.0 means the last w answers all agree.
    """
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window!r}")
    if probe_texts is not None and len(probe_texts) != len(answers):
        raise ValueError(
            f"probe_texts has {len(probe_texts)} entries but answers has {len(answers)}"
        )
    if len(answers) < window:
        return 0.0
    last = list(answers[-window:])
    if any(not _answers.normalize(a) for a in last):
        return 0.0
    if probe_texts is not None and any(is_hesitant(t) for t in probe_texts[-window:]):
        return 0.0
    y_k = last[-1]
    agree = sum(1 for y in last if _answers.equivalent(y, y_k))
    return agree / window


def token_confidence(
    top_logprobs: Sequence[Sequence[float]],
    window: int = 64,
    reduce: Literal["last", "min"] = "last",
    scale: float = DEFAULT_CONFIDENCE_SCALE,
) -> float:
    """DeepConf-style token confidence mapped to [0, 1].

    Per token t with top-k logprobs l_t(1..k) (k ≥ 2; SGLang's `top_logprobs_num`, DeepConf
    uses 20): DeepConf's c_t = −mean_j l_t(j) (`logprobs.position_confidence`), which is
    ≥ log k for real probabilities (equal at k equally likely candidates); we use the excess
    e_t = max(0, c_t − log k). Group confidence G: mean of e_t over a sliding window of
    `window` tokens (all tokens if fewer).
    `reduce="last"` takes the most recent window (is the model sure now), `"min"` the lowest
    window (DeepConf's lowest group confidence). Returned as 1 − exp(−G / scale): monotone in
    G, 0 when every token's top-k are equally likely, → 1 as the alternatives become
    impossible; with scale = 10 nats and k = 20, top-1 ≈ 1 and the rest at −15 gives ≈ 0.68.
    Edges: no tokens -> 0.0. Logprobs are clipped to [−1000, 0] (rounding above 0, −inf).
    NaN, or a token with fewer than 2 logprobs (c_t would then invert), raises ValueError.
    """
    if window < 1 or scale <= 0:
        raise ValueError(f"window must be >= 1 and scale > 0, got {window!r}, {scale!r}")
    if reduce not in ("last", "min"):
        raise ValueError(f"reduce must be 'last' or 'min', got {reduce!r}")
    if len(top_logprobs) == 0:
        return 0.0
    per_token = np.empty(len(top_logprobs))
    for t, lps in enumerate(top_logprobs):
        if len(lps) < 2 or any(math.isnan(x) for x in lps):
            raise ValueError(f"token {t}: need >= 2 top logprobs without NaN, got {list(lps)}")
        per_token[t] = max(0.0, position_confidence(lps) - math.log(len(lps)))
    w = min(window, len(per_token))
    groups = np.convolve(per_token, np.ones(w) / w, mode="valid")
    group = float(groups[-1] if reduce == "last" else groups.min())
    return float(1.0 - math.exp(-group / scale))


def all_pass(values: Mapping[str, float], thresholds: Mapping[str, float]) -> bool:
    """Whether every thresholded signal is present in `values` and ≥ its threshold.

    A signal missing from `values` (or NaN) fails. Extra values without a threshold are
    ignored. Empty `thresholds` -> False: a program with no configured signal is never
    certain (it runs to its cap).
    """
    if not thresholds:
        return False
    for name, threshold in thresholds.items():
        value = values.get(name)
        if value is None or math.isnan(value) or value < threshold:
            return False
    return True


@functools.lru_cache(maxsize=4096)
def _posterior_cached(sizes: tuple[int, ...], samples: int, seed: int) -> float:
    if len(sizes) <= 2:
        v1, v2 = sizes[0], (sizes[1] if len(sizes) == 2 else 0)
        return float(1.0 - special.betainc(v1 + 1, v2 + 1, 0.5))
    rng = np.random.Generator(np.random.PCG64(seed))  # = default_rng(seed), a bit cheaper
    # Dirichlet draws are normalized gammas; the argmax does not need the normalization.
    draws = rng.standard_gamma(np.asarray(sizes, dtype=float) + 1.0, size=(samples, len(sizes)))
    return float(np.mean(np.argmax(draws, axis=1) == 0))


def majority_posterior(sizes: Iterable[int], samples: int = 1000, seed: int = 0) -> float:
    """Posterior probability that the current leading answer is the true majority.

    Adaptive-Consistency's stopping statistic with a uniform prior over answer shares. With
    cluster sizes v_1 ≥ v_2 ≥ … (zeros dropped): for one or two clusters, exactly
    P(p_1 > p_2) = 1 − I_{1/2}(v_1 + 1, v_2 + 1) (regularized incomplete beta); for three or
    more, a Monte-Carlo estimate of P(p_1 is the largest share) under Dirichlet(v + 1) with
    `samples` draws from `np.random.default_rng(seed)` (deterministic for a given input).
    Edges: no answers -> 0.0; one answer -> 0.75; five equal answers -> 1 − 2⁻⁶ ≈ 0.984.
    Invariant to the order of `sizes`.
    """
    counts = sorted((int(c) for c in sizes if c), reverse=True)
    if any(c < 0 for c in counts):
        raise ValueError(f"cluster sizes must be >= 0, got {counts!r}")
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples!r}")
    if not counts:
        return 0.0
    return _posterior_cached(tuple(counts), samples, seed)


@functools.lru_cache(maxsize=4096)
def _full_budget_cached(sizes: tuple[int, ...], remaining: int, samples: int, seed: int) -> float:
    rng = np.random.Generator(np.random.PCG64(seed))
    counts = np.asarray((*sizes, 0), dtype=float)  # + one class for answers not seen yet
    shares = rng.dirichlet(counts + 1.0, size=samples)
    final = counts + rng.multinomial(remaining, shares)
    return float(np.mean(final[:, 0] > final[:, 1:].max(axis=1)))


def full_budget_posterior(
    sizes: Iterable[int], remaining: int, samples: int = 1000, seed: int = 0
) -> float:
    """Posterior predictive probability that the leading answer still wins the vote once
    `remaining` more samples are drawn: the event label-free calibration bounds (the answer at
    the full budget equals the current one).

    Answer shares p ~ Dirichlet(v + 1) over the observed classes v_1 ≥ v_2 ≥ … plus one class
    for answers not seen yet (v = 0, weight 1; all new answers pooled into it, which makes it a
    stronger rival than they are); the `remaining` samples ~ Multinomial(remaining, p); the
    probability that the leader's final count is strictly above every other class's. Monte
    Carlo with `samples` draws from `np.random.default_rng(seed)` (deterministic for a given
    input). Unlike `majority_posterior` it knows the budget: with few samples left a lead is
    safe that would not settle which answer is most likely. Edges: no answers -> 0.0;
    remaining 0 -> 1.0 if the leader is strictly ahead (or alone), else 0.0; a lead the
    remaining samples cannot overturn (the decided vote) -> 1.0. Invariant to the order of
    `sizes`.
    """
    counts = sorted((int(c) for c in sizes if c), reverse=True)
    if any(c < 0 for c in counts):
        raise ValueError(f"cluster sizes must be >= 0, got {counts!r}")
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples!r}")
    if remaining < 0:
        raise ValueError(f"remaining must be >= 0, got {remaining!r}")
    if not counts:
        return 0.0
    runner_up = counts[1] if len(counts) > 1 else 0
    if counts[0] > runner_up + remaining:
        return 1.0
    if remaining == 0:
        return 0.0
    return _full_budget_cached(tuple(counts), int(remaining), samples, seed)
