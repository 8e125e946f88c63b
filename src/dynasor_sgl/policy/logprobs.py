"""Reading judgements from next-token logprobs: the self-judged reward P("Yes"), and DeepConf's
token confidence of one generated position.

Pure; knows nothing about SGLang beyond the shape of its `output_top_logprobs` entries.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

_YES, _NO = "yes", "no"
LOGPROB_FLOOR = -1000.0  # a −inf (or absurdly low) logprob counts as this


def position_confidence(top_logprobs: Sequence[float]) -> float:
    """DeepConf's token confidence of one generated position: c = −mean_j l(j) over its top-k
    logprobs l(1..k) (k ≥ 1; SGLang's `top_logprobs_num`).

    High when the model is sure (top-1 near 0, the alternatives far below), low when the top-k
    are close (k equally likely candidates give c = log k). Logprobs are clipped to
    [LOGPROB_FLOOR, 0] (rounding above 0, −inf). Empty or NaN raises ValueError.
    """
    if len(top_logprobs) == 0:
        raise ValueError("a position needs at least one top logprob")
    total = 0.0
    for logprob in top_logprobs:
        if math.isnan(logprob):
            raise ValueError(f"NaN among top logprobs {list(top_logprobs)}")
        total += min(0.0, max(LOGPROB_FLOOR, float(logprob)))
    return -total / len(top_logprobs)


def top_logprob_values(entries: Sequence[Sequence[Any]] | None, k: int) -> list[float]:
    """The logprobs of the first `k` entries of one position of SGLang's
    `meta_info["output_top_logprobs"]` (entries `(logprob, token_id, text)`, best first);
    None (no top-k kept) -> []."""
    return [float(entry[0]) for entry in (entries or ())[:k]]


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
