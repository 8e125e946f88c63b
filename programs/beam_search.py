"""Step-level beam search (its step primitives, shared with REBASE and MCTS, are in `steps`).

Knob: expansions (nodes generated, = width × depth for a full search). A step is one line: a gen
that stops at "\\n" on a fork of its parent node's fork, tagged with its own branch `n<k>`. The
first level samples `beam_width × children` steps from the prompt; each later level expands
every beam into `children` nodes (fewer when the grant is smaller). The reward source judges
them; the router reads the best reward of the finished solutions that have an answer (default:
stop at ≥ 0.8 from 12 expansions on; an answer-less or unfinished path never stops it). The top
`beam_width` unfinished nodes are the next beams; finished ones are collected. Final answer:
the best finished solution with an answer by reward, else the best path's answer so far
(`steps.best_answer`).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import sglang as sgl

from dynasor_sgl import lang as dl
from dynasor_sgl.lang import Node, beam_select

from .steps import SYSTEM, Branch, StepParams, best_answer, counted, drop, expand, score


def level_counts(beams: int, children: int, budget: int) -> list[int]:
    """Children per beam (best first): `children` each, or the budget spread evenly when it is
    smaller, the better beams getting the remainder."""
    total = min(beams * children, max(budget, 0))
    return [total // beams + (i < total % beams) for i in range(beams)] if beams else []


def final_answer(finished: Sequence[Branch], beams: Sequence[Branch]) -> str | None:
    """The best finished solution's answer by reward, else the best path's answer so far."""
    return best_answer([(b.node, b.reward) for b in [*finished, *beams]])


@sgl.function
def beam_search(
    s,
    question,
    beam_width=2,
    children=2,
    max_depth=8,
    step_tokens=64,
    temperature=0.7,
    system_prompt=None,
    few_shot=(),
):
    dl.open_chat(s, question, system_prompt or SYSTEM, few_shot)
    ctx = dl.context(s)
    cap, names = ctx.config.cap, (f"n{k}" for k in itertools.count())
    step = StepParams(max_depth, step_tokens, temperature)
    beams, finished = [Branch("root", s, Node())], []
    used, grant, levels = 0, min(ctx.config.initial, cap), 0
    while beams and grant > 0:
        per_beam = children * beam_width if levels == 0 else children  # the root fills the beam
        level = expand(beams, level_counts(len(beams), per_beam, grant), names, step)
        drop(beams)
        used, levels = used + len(level), levels + 1
        score(ctx, level)
        solved = counted(level)
        verdict = ctx.report(
            used,
            rewards={b.name: b.reward for b in solved},
            answers={b.name: b.node.answer for b in solved},
        )
        kept = [b for b in level if b.name not in verdict.trim]
        finished += [b for b in kept if b.node.terminal]
        alive = [b for b in kept if not b.node.terminal]
        beams = [alive[i] for i in beam_select([b.reward for b in alive], beam_width)]
        drop(b for b in level if b not in beams)
        grant = verdict.allowed(used, cap)
    answer, best = final_answer(finished, beams), max((b.reward for b in finished), default=None)
    drop(beams)
    ctx.finish(
        answer,
        exit_reason="cap" if beams else "completed",
        steps=used,
        levels=levels,
        finished=len(finished),
        best_reward=None if best is None else round(best, 4),
        answers=[b.node.answer for b in finished],
    )


SPEC = dl.ProgramSpec(
    name="beam-search",
    algorithm="beam",
    function=beam_search,
    knob="expansions",
    signal="reward",
    description="step-level beam search over judged steps; stop when a path is judged right",
)
