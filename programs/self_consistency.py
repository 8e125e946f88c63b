"""Self-consistency (Wang et al.): sample independent solutions, answer by majority vote.

Knob: samples. The router's policy grants samples in batches (default: 5, then 5 more) and
reads the answer-entropy certaindex at the detection step (5): if the samples agree enough
(≥ 0.7) the program stops there instead of drawing up to the cap (20). Each sample is its own
branch `s<i>`, forked from the shared prompt, so the prompt is prefilled once and cached.
The result's details list every sample's answer and tokens (`answers`, `sample_tokens`), which
is what `dynasor-sgl eval` replays other policies over.
"""

from __future__ import annotations

from typing import Any

import sglang as sgl

from dynasor_sgl import lang as dl
from dynasor_sgl.answers import extract_answer
from dynasor_sgl.tokens import request_tokens
from dynasor_sgl.votes import majority_vote

from .steps import SYSTEM


def draw(
    s: Any, first: int, count: int, max_tokens: int, temperature: float
) -> dict[str, tuple[str, int]]:
    """Sample `count` solutions on forks of `s`, branches s<first>..; (text, tokens) by branch."""
    forks = dl.fork(s, count)
    names = [f"s{first + i}" for i in range(count)]
    for name, fork in zip(names, forks, strict=True):
        dl.tag(fork, name)
        fork += sgl.gen("answer", max_tokens=max_tokens, temperature=temperature)
    try:
        return {
            name: (str(dl.read(fork, "answer")), request_tokens(dl.meta(fork, "answer")))
            for name, fork in zip(names, forks, strict=True)
        }
    finally:
        for fork in forks:
            dl.discard(fork)


@sgl.function
def self_consistency(s, question, max_tokens=256, temperature=0.7, system_prompt=None, few_shot=()):
    dl.open_chat(s, question, system_prompt or SYSTEM, few_shot)
    ctx = dl.context(s)
    drawn: dict[str, tuple[str, int]] = {}
    answers: dict[str, str | None] = {}
    want = min(ctx.config.initial, ctx.config.cap)
    while want > 0:
        new = draw(s, len(drawn), want, max_tokens, temperature)
        drawn.update(new)
        answers.update({b: extract_answer(text) for b, (text, _) in new.items()})
        verdict = ctx.report(len(drawn), answers=answers)
        for b in verdict.trim:
            answers.pop(b, None)
        want = verdict.allowed(len(drawn), ctx.config.cap)
    vote = majority_vote(list(answers.values()))
    order = [f"s{i}" for i in range(len(drawn))]
    ctx.finish(
        vote.answer,
        exit_reason="cap",
        steps=len(drawn),
        share=vote.share,
        answers=[answers.get(b) for b in order],
        sample_tokens=[drawn[b][1] for b in order],
    )


SPEC = dl.ProgramSpec(
    name="self-consistency",
    algorithm="sc",
    function=self_consistency,
    knob="samples",
    signal="entropy",
    description="majority vote over sampled solutions; stop when the answers agree",
)
