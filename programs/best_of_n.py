"""Best-of-N: sample whole solutions, judge each, answer with the highest-reward one.

Knob: candidates. The router grants candidates in batches (default: 4 at a time, up to 16);
each is its own branch `c<i>`, forked from the shared prompt, then judged by the run's reward
source (default: the model's own P("Yes") on a fork). The router reads the best reward so far
(default: stop once it is ≥ 0.9) and may trim candidates, which then cannot be chosen. Final
answer: `search.best_of_n` over the remaining candidates (a candidate with an answer first).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sglang as sgl

from dynasor_sgl import lang as dl
from dynasor_sgl.lang import best_of_n as pick_best
from dynasor_sgl.lang import extract_answer

from .steps import SYSTEM


def draw(
    ctx: dl.ProgramContext, s: Any, first: int, count: int, max_tokens: int, temperature: float
) -> dict[str, tuple[str | None, float]]:
    """Sample `count` solutions on forks of `s` (branches c<first>..) and judge them: each
    branch's (extracted answer, reward)."""
    if ctx.reward is None:
        raise RuntimeError("best-of-n needs a reward source: run it with run_program")
    forks = dl.fork(s, count)
    names = [f"c{first + i}" for i in range(count)]
    for name, fork in zip(names, forks, strict=True):
        dl.tag(fork, name)
        fork += sgl.gen("answer", max_tokens=max_tokens, temperature=temperature)
    try:
        answers = [extract_answer(str(dl.read(fork, "answer"))) for fork in forks]
        rewards = ctx.reward.score(list(forks))
    finally:
        for fork in forks:
            dl.discard(fork)
    return dict(zip(names, zip(answers, rewards, strict=True), strict=True))


def choose(candidates: Mapping[str, tuple[str | None, float]]) -> tuple[str | None, str | None]:
    """The (branch, answer) of the highest-reward candidate; (None, None) when there is none."""
    names = list(candidates)
    index = pick_best([candidates[n][1] for n in names], [candidates[n][0] for n in names])
    return (None, None) if index is None else (names[index], candidates[names[index]][0])


@sgl.function
def best_of_n(s, question, max_tokens=256, temperature=0.7, system_prompt=None, few_shot=()):
    dl.open_chat(s, question, system_prompt or SYSTEM, few_shot)
    ctx = dl.context(s)
    cap = ctx.config.cap
    candidates: dict[str, tuple[str | None, float]] = {}
    drawn, want = 0, min(ctx.config.initial, cap)
    while want > 0:
        candidates.update(draw(ctx, s, drawn, want, max_tokens, temperature))
        drawn += want
        verdict = ctx.report(
            drawn,
            answers={b: a for b, (a, _) in candidates.items()},
            rewards={b: r for b, (_, r) in candidates.items()},
        )
        for dropped in verdict.trim:
            candidates.pop(dropped, None)
        want = verdict.allowed(drawn, cap)
    branch, answer = choose(candidates)
    ctx.finish(
        answer,
        exit_reason="cap",
        steps=drawn,
        chosen=branch,
        reward=None if branch is None else round(candidates[branch][1], 4),
        answers=[a for a, _ in candidates.values()],
    )


SPEC = dl.ProgramSpec(
    name="best-of-n",
    algorithm="bon",
    function=best_of_n,
    knob="candidates",
    signal="reward",
    description="sampled solutions judged by a reward; answer with the best one",
)
