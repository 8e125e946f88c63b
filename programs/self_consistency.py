"""Self-consistency (Wang et al.): sample independent solutions, answer by majority vote.

Knob: samples. The router's policy grants samples in batches (default: 5, then 5 more) and
reads the answer-entropy certaindex at the detection step (5) and after every batch of 5
after it: once the samples agree enough (≥ 0.7) the program stops there instead of drawing up
to the cap (20). Each sample is its own
branch `s<i>`, forked from the shared prompt, so the prompt is prefilled once and cached.
Unless the caller gives its own `few_shot` (`[]` for none), the prompt holds one worked example
(`steps.EXAMPLE`) before the question, to show the model the answer's shape.
The result's details list every sample's answer and tokens (`answers`, `sample_tokens`), which
is what `dynasor-sgl eval` replays other policies over.

With confidence trimming in the policy (`confidence_window` > 0; off by default) the program
follows DeepConf online: the first `warmup` samples are drawn alone (they set the router's
threshold), then the rest of each round; a sample the router trimmed (`low_confidence`) leaves
the vote and the entropy report, and the vote is weighted by each sample's mean token
confidence (`sample_confidence`). The entropy (or posterior) stop applies as without it.

With `record_topk` > 0 every sample asks the worker for its top-k logprobs and the details
keep each sample's token confidences (`token_confidences`, DeepConf's c_t per generated
token), so `dynasor-sgl eval` can replay confidence trimming over a full-budget run.
"""

from __future__ import annotations

from typing import Any

import sglang as sgl

from dynasor_sgl import lang as dl
from dynasor_sgl.lang import (
    Vote,
    extract_answer,
    majority_vote,
    position_confidence,
    request_tokens,
    top_logprob_values,
    weighted_vote,
)

from .steps import EXAMPLE, SYSTEM

LOW_CONFIDENCE = "low_confidence"  # the router's reason for a trimmed branch (router.watch)
Sample = tuple[str, int, dict[str, Any]]  # text, tokens, the worker's meta_info


def trimmed(meta: dict[str, Any]) -> bool:
    """Whether the router cut this sample short for low confidence."""
    reason = meta.get("finish_reason")
    return isinstance(reason, dict) and reason.get("reason") == LOW_CONFIDENCE


def sample_confidence(meta: dict[str, Any]) -> float:
    """The sample's mean token confidence from the router (`meta_info.confidence.mean`, ≥ 0);
    0.0 when it sent none (then the sample weighs nothing in a weighted vote)."""
    info = meta.get("confidence")
    mean = info.get("mean") if isinstance(info, dict) else None
    return max(0.0, float(mean)) if isinstance(mean, int | float) else 0.0


def confidence_vote(answers: dict[str, str | None], samples: dict[str, Sample]) -> Vote:
    """The vote of the kept samples' `answers` (by branch), each weighted by its sample's mean
    confidence (`weighted_vote`: ties by class size, then the smallest answer)."""
    weights = [sample_confidence(samples[b][2]) for b in answers]
    return weighted_vote(list(answers.values()), weights)


def token_confidences(meta: dict[str, Any], k: int) -> list[float]:
    """DeepConf's token confidence of each generated position of a sample whose request asked
    for `k` top logprobs (rounded to 4 places); [] when the worker sent none."""
    positions = meta.get("output_top_logprobs") or []
    values = (top_logprob_values(entries, k) for entries in positions)
    return [round(position_confidence(v), 4) for v in values if v]


def gen_options(max_tokens: int, temperature: float, record_topk: int) -> dict[str, Any]:
    """The sampling options of one sample: with `record_topk` > 0, its generated tokens' top-k
    logprobs too (output only: `logprob_start_len` -1)."""
    options: dict[str, Any] = {"max_tokens": max_tokens, "temperature": temperature}
    if record_topk > 0:
        options.update(return_logprob=True, top_logprobs_num=record_topk, logprob_start_len=-1)
    return options


def draw(s: Any, first: int, count: int, options: dict[str, Any]) -> dict[str, Sample]:
    """Sample `count` solutions on forks of `s` with sgl.gen `options`, branches s<first>..;
    (text, tokens, meta) by branch."""
    forks = dl.fork(s, count)
    names = [f"s{first + i}" for i in range(count)]
    for name, fork in zip(names, forks, strict=True):
        dl.tag(fork, name)
        fork += sgl.gen("answer", **options)
    try:
        return {
            name: (str(dl.read(fork, "answer")), *_tokens_meta(dl.meta(fork, "answer")))
            for name, fork in zip(names, forks, strict=True)
        }
    finally:
        for fork in forks:
            dl.discard(fork)


def _tokens_meta(meta: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    return request_tokens(meta), meta


def draw_round(
    s: Any, first: int, count: int, options: dict[str, Any], warm: int
) -> dict[str, Sample]:
    """One round of samples; its first `warm` are drawn alone first (confidence warm-up)."""
    warm = min(max(warm, 0), count)
    drawn = draw(s, first, warm, options) if warm else {}
    if count > warm:
        drawn.update(draw(s, first + warm, count - warm, options))
    return drawn


@sgl.function
def self_consistency(
    s,
    question,
    max_tokens=256,
    temperature=0.7,
    system_prompt=None,
    few_shot=None,
    record_topk=0,
):
    shots = (EXAMPLE,) if few_shot is None else few_shot
    dl.open_chat(s, question, system_prompt or SYSTEM, shots)
    ctx = dl.context(s)
    options = gen_options(max_tokens, temperature, record_topk)
    trimming = ctx.config.confidence_window > 0
    drawn: dict[str, Sample] = {}
    answers: dict[str, str | None] = {}
    want = min(ctx.config.initial, ctx.config.cap)
    while want > 0:
        warm = ctx.config.warmup - len(drawn) if trimming else 0
        new = draw_round(s, len(drawn), want, options, warm)
        drawn.update(new)
        answers.update(
            {b: extract_answer(text) for b, (text, _, meta) in new.items() if not trimmed(meta)}
        )
        verdict = ctx.report(len(drawn), answers=answers)
        for b in verdict.trim:
            answers.pop(b, None)
        want = verdict.allowed(len(drawn), ctx.config.cap)
    vote = confidence_vote(answers, drawn) if trimming else majority_vote(list(answers.values()))
    order = [f"s{i}" for i in range(len(drawn))]
    recorded: dict[str, Any] = {}
    if record_topk > 0:
        recorded["token_confidences"] = [token_confidences(drawn[b][2], record_topk) for b in order]
    ctx.finish(
        vote.answer,
        exit_reason="cap",
        steps=len(drawn),
        share=vote.share,
        answers=[answers.get(b) for b in order],
        sample_tokens=[drawn[b][1] for b in order],
        trimmed=[trimmed(drawn[b][2]) for b in order],
        completion_tokens=[int(drawn[b][2].get("completion_tokens") or 0) for b in order],
        confidences=[sample_confidence(drawn[b][2]) for b in order],
        **recorded,
    )


SPEC = dl.ProgramSpec(
    name="self-consistency",
    algorithm="sc",
    function=self_consistency,
    knob="samples",
    signal="entropy",
    description="majority vote over sampled solutions; stop when the answers agree",
)
