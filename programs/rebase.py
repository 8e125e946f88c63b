"""REBASE (Wu et al.): reward-balanced tree search over reasoning steps, answer by weighted vote.

Knob: width, the number of solutions sampled. A round of width W grows a tree from the prompt:
at each depth, every frontier node gets n_i ≈ W_left · softmax(r_i / T) one-step children
(`search.rebase_allocation`; r_i is the judged reward of its path so far, n_i = 0 prunes it),
and each solution that completes takes one unit off W_left, until all W are complete (every
step at `max_depth` completes). Steps are the same as beam search's (`beam_search.expand`).
After each round the router reads the answer-entropy certaindex over all completed solutions
(default: stop at ≥ 0.75 from width 16 on); a grant runs another round of the granted width.
Final answer: the reward-weighted vote over completed solutions; when none has an answer, the
best solution's text by reward (`steps.best_answer`).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from typing import Any

import sglang as sgl

from dynasor_sgl import lang as dl
from dynasor_sgl.lang import Node, rebase_allocation, weighted_vote

from .steps import SYSTEM, Branch, StepParams, best_answer, drop, expand, score


def completed_left(level: Sequence[Branch], left: int) -> tuple[list[Branch], list[Branch], int]:
    """Split a new level into (completed, frontier) and take the completed off the width left."""
    done = [b for b in level if b.node.terminal]
    return done, [b for b in level if not b.node.terminal], left - len(done)


def search_round(
    ctx: dl.ProgramContext,
    s: Any,
    width: int,
    names: Iterator[str],
    step: StepParams,
    balance_temperature: float,
) -> list[Branch]:
    """One REBASE tree of `width` solutions from the prompt `s`; its completed solutions."""
    frontier, completed, left = [Branch("root", s, Node())], [], width
    while left > 0 and frontier:
        counts = rebase_allocation([b.reward for b in frontier], left, balance_temperature)
        level = expand(frontier, counts, names, step)
        drop(frontier)
        score(ctx, level)
        done, frontier, left = completed_left(level, left)
        drop(done)
        completed += done
    drop(frontier)
    return completed


def votes(solutions: Sequence[Branch]) -> tuple[list[str | None], list[float]]:
    """The completed solutions' (answers, rewards): what the weighted vote reads."""
    return [b.node.answer for b in solutions], [b.reward for b in solutions]


def final_answer(solutions: Sequence[Branch]) -> str | None:
    """The reward-weighted vote; when no solution has an answer, the best solution's text."""
    vote = weighted_vote(*votes(solutions))
    if vote.answer is not None:
        return vote.answer
    return best_answer([(b.node, b.reward) for b in solutions])


@sgl.function
def rebase(
    s,
    question,
    max_depth=8,
    step_tokens=64,
    temperature=0.7,
    balance_temperature=0.2,
    system_prompt=None,
    few_shot=(),
):
    dl.open_chat(s, question, system_prompt or SYSTEM, few_shot)
    ctx = dl.context(s)
    cap, names = ctx.config.cap, (f"n{k}" for k in itertools.count())
    step = StepParams(max_depth, step_tokens, temperature)
    solutions: list[Branch] = []
    used, width, rounds = 0, min(ctx.config.initial, cap), 0
    while width > 0:
        done = search_round(ctx, s, width, names, step, balance_temperature)
        used, rounds = used + width, rounds + 1
        solutions += done
        verdict = ctx.report(
            used,
            answers={b.name: b.node.answer for b in solutions},
            rewards={b.name: b.reward for b in solutions},
        )
        solutions = [b for b in solutions if b.name not in verdict.trim]
        width = verdict.allowed(used, cap)
    ctx.finish(
        final_answer(solutions),
        exit_reason="cap",
        steps=used,
        rounds=rounds,
        share=weighted_vote(*votes(solutions)).share,
        answers=[b.node.answer for b in solutions],
        rewards=[round(b.reward, 4) for b in solutions],
    )


SPEC = dl.ProgramSpec(
    name="rebase",
    algorithm="rebase",
    function=rebase,
    knob="width",
    signal="entropy",
    description="reward-balanced tree search; weighted vote; stop when the answers agree",
)
