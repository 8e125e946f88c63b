"""The pure decisions inside reasoning programs: votes, selection, budgets, judged rewards, tokens.

Owns how a program turns its branches' answers and rewards into a final answer (majority vote,
reward-weighted vote, best-of-n), how step-level search spends its width (REBASE's softmax child
budget, beam top-k), the self-judged reward P("Yes") from next-token logprobs, and the token
ledger of one program run. The MCTS tree lives in `dynasor_sgl.mcts`. Answer equivalence comes
from `dynasor_sgl.answers`; certaindex signals from `dynasor_sgl.certaindex`. Deterministic,
numpy only; knows nothing about SGLang, HTTP, the router or the policy.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from dynasor_sgl import answers as _answers

logger = logging.getLogger(__name__)

TokenKind = Literal["reasoning", "probe", "reward"]
_YES, _NO = "yes", "no"


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


def yes_probability(top_logprobs: Mapping[str, float]) -> float:
    """Self-judged step reward: P("Yes") over the Yes/No tokens among the next-token top-k.

    `top_logprobs` maps token text -> logprob for the token after a question such as "Is this
    step correct? Answer Yes or No:". Variants are matched by `token.strip().casefold()` equal to
    "yes" or "no" (" Yes", "Yes", " yes", "YES", ...). Returns Σ_yes e^l / (Σ_yes e^l + Σ_no e^l)
    in [0, 1], computed stably. Edges: neither variant present (or all at −inf) -> 0.5, i.e. the
    judge abstains, which is neutral for ranking and for the reward certaindex; only Yes -> 1.0;
    only No -> 0.0. NaN logprobs raise ValueError.
    """
    yes: list[float] = []
    no: list[float] = []
    for token, logprob in top_logprobs.items():
        if math.isnan(logprob):
            raise ValueError(f"logprob of {token!r} is NaN")
        word = token.strip().casefold()
        if word in (_YES, _NO):
            (yes if word == _YES else no).append(min(float(logprob), 0.0))
    finite = [x for x in yes + no if x != -math.inf]
    if not finite:
        return 0.5
    top = max(finite)
    p_yes = math.fsum(math.exp(x - top) for x in yes)
    p_no = math.fsum(math.exp(x - top) for x in no)
    return p_yes / (p_yes + p_no)


def top_logprobs_by_text(entries: Sequence[Sequence[Any]] | None) -> dict[str, float]:
    """One position of SGLang's `meta_info["output_top_logprobs"]` as {token text: logprob}.

    Each entry is `(logprob, token_id, text)`; the text is only there when the request set
    `return_text_in_logprobs=True` (a None text raises ValueError). Two ids that decode to the
    same text are merged (log-sum-exp). None (SGLang's value when no top-k was kept) -> {}.
    """
    merged: dict[str, float] = {}
    for entry in entries or ():
        logprob, text = float(entry[0]), entry[2] if len(entry) > 2 else None
        if not isinstance(text, str):
            raise ValueError("top logprob entry has no text: set return_text_in_logprobs=True")
        merged[text] = float(np.logaddexp(merged[text], logprob)) if text in merged else logprob
    return merged


def _token_counts(meta_info: Mapping[str, Any]) -> tuple[int, int, int]:
    """(prompt, cached, completion) tokens of a meta_info (missing -> 0), checked."""
    prompt, cached, completion = (
        int(meta_info.get(k) or 0) for k in ("prompt_tokens", "cached_tokens", "completion_tokens")
    )
    if min(prompt, cached, completion) < 0 or cached > prompt:
        raise ValueError(f"inconsistent token counts in meta_info: {dict(meta_info)!r}")
    return prompt, cached, completion


def request_tokens(meta_info: Mapping[str, Any]) -> int:
    """Tokens one request cost the engine: prompt − cached + completion (the router's sum)."""
    prompt, cached, completion = _token_counts(meta_info)
    return prompt - cached + completion


@dataclass
class TokenUsage:
    """Tokens one program run cost the engine, by purpose.

    Each request counts prefill after the prefix cache (prompt_tokens − cached_tokens) plus
    generated tokens (completion_tokens): the same `total` the router reports per program, so the
    two add up. reasoning / probe / reward: those counts by purpose; prefill, generated: the same
    tokens split by phase; cached: prompt tokens served from the cache (not in `total`).
    Mutable and not thread-safe: add from the program's own thread.
    """

    reasoning: int = 0
    probe: int = 0
    reward: int = 0
    prefill: int = 0
    generated: int = 0
    cached: int = 0
    requests: int = 0

    @property
    def total(self) -> int:
        """reasoning + probe + reward (= prefill + generated)."""
        return self.reasoning + self.probe + self.reward

    def add(self, kind: TokenKind, meta_info: Mapping[str, Any] | None) -> int:
        """Account one finished request's SGLang `meta_info`; returns the tokens it added.

        Reads prompt_tokens, cached_tokens and completion_tokens (missing -> 0). Pass the final
        meta_info of a streamed request only (each chunk repeats the running totals). None
        (a request that returned nothing) adds 0. A negative count, cached > prompt, or an
        unknown kind raises ValueError.
        """
        if kind not in ("reasoning", "probe", "reward"):
            raise ValueError(f"kind must be reasoning, probe or reward, got {kind!r}")
        if meta_info is None:
            return 0
        prompt, cached, completion = _token_counts(meta_info)
        spent = prompt - cached + completion
        setattr(self, kind, getattr(self, kind) + spent)
        self.prefill += prompt - cached
        self.generated += completion
        self.cached += cached
        self.requests += 1
        return spent

    def to_dict(self) -> dict[str, int]:
        """The `tokens` object of a program result: reasoning, probe, reward, total, and detail."""
        return {
            "reasoning": self.reasoning,
            "probe": self.probe,
            "reward": self.reward,
            "total": self.total,
            "prefill": self.prefill,
            "generated": self.generated,
            "cached": self.cached,
            "requests": self.requests,
        }
