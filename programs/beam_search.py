"""Step-level beam search, and the step primitives REBASE and MCTS share with it.

Knob: expansions (nodes generated, = width × depth for a full search). A step is one line: a gen
that stops at "\\n" on a fork of its parent node's fork, tagged with its own branch `n<k>`. The
first level samples `beam_width × children` steps from the prompt; each later level expands
every beam into `children` nodes (fewer when the grant is smaller). The reward source judges
them; the router reads the best reward (default: stop at ≥ 0.8 from 12 expansions on) and trims
the lowest half. The top `beam_width` unfinished nodes are the next beams; finished ones are
collected. Final answer: the best finished solution by reward, else the best beam's so far.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sglang as sgl

from dynasor_sgl import lang as dl
from dynasor_sgl.answers import extract_answer
from dynasor_sgl.mcts import Node, add_child, path_text
from dynasor_sgl.search import beam_select, best_of_n

SYSTEM = (
    "You are a careful math assistant. Think step by step, then give the final answer in \\boxed{}."
)
STEP_STOP = "\n"
BLANK_RETRIES = 2  # a blank line is the model's paragraph break: try again, at most this often


@dataclass(eq=False)
class Branch:
    """A search node with its SGLang fork. name: its branch at the router; state: the fork that
    holds the path up to and including this step; node: the step in the tree (text, terminal,
    answer); reward: its judged score in [0, 1]."""

    name: str
    state: Any
    node: Node
    reward: float = 0.0


@dataclass(frozen=True)
class StepParams:
    """How a step is sampled: at most `max_depth` steps per solution, `tokens` per step, at
    `temperature`."""

    max_depth: int
    tokens: int
    temperature: float


def ended_on_newline(finish_reason: Mapping[str, Any] | None) -> bool:
    """Whether a gen stopped at the step separator (SGLang drops the matched stop string)."""
    if not finish_reason:
        return False
    return finish_reason.get("type") == "stop" and finish_reason.get("matched") == STEP_STOP


def is_terminal(
    step_text: str, finish_reason: Mapping[str, Any] | None, depth: int, max_depth: int
) -> bool:
    """A step ends its solution when it writes `\\boxed`, when it is at `max_depth`, or when the
    gen ended for another reason than the newline (EOS or another stop token, an abort). A step
    cut by `max_tokens` ("length") is not terminal: it is a long line the next step continues."""
    if "\\boxed" in step_text or depth >= max_depth:
        return True
    kind = finish_reason.get("type") if finish_reason else None
    return kind != "length" and not ended_on_newline(finish_reason)


def granted(verdict: dl.Verdict, used: int, cap: int) -> int:
    """Knob units the program may use before its next report: the grant, never past the cap."""
    return 0 if verdict.stop else max(0, min(verdict.grant, cap - used))


def queue_step(state: Any, attempt: int, step: StepParams) -> str:
    """Queue try `attempt` of a step on `state` (runs on the state's thread); the gen's name."""
    name = f"step{attempt}"
    state += sgl.gen(name, max_tokens=step.tokens, stop=STEP_STOP, temperature=step.temperature)
    return name


def read_step(state: Any, step: StepParams) -> tuple[str, dict[str, Any]]:
    """Wait for the step queued on `state`: the text it added and its finish_reason.

    A step that ended on the newline gets it back, so the next step starts on a new line. A
    blank line is kept and followed by up to BLANK_RETRIES tries: a step is the next non-blank
    line.
    """
    text, attempt = "", 0
    while True:
        name = f"step{attempt}"
        line = str(dl.read(state, name))
        info = dl.meta(state, name).get("finish_reason")
        reason = dict(info) if isinstance(info, dict) else {"type": str(info)}
        text += line
        if not ended_on_newline(reason):
            return text, reason
        state += STEP_STOP
        text += STEP_STOP
        if line.strip() or attempt == BLANK_RETRIES:
            return text, reason
        attempt += 1
        queue_step(state, attempt, step)


def expand(
    parents: Sequence[Branch], counts: Sequence[int], names: Iterator[str], step: StepParams
) -> list[Branch]:
    """Sample `counts[i]` one-step children of `parents[i]`, all concurrently; the children in
    order, their steps read and attached to the tree (terminal ones with their answer)."""
    forks: list[tuple[Branch, str, Any]] = []
    for parent, count in zip(parents, counts, strict=True):
        for _ in range(count):
            fork, name = parent.state.fork(1)[0], next(names)  # fork(1): no prefill request
            dl.tag(fork, name)
            queue_step(fork, 0, step)
            forks.append((parent, name, fork))
    children = []
    for parent, name, fork in forks:
        text, reason = read_step(fork, step)
        terminal = is_terminal(text, reason, parent.node.depth + 1, step.max_depth)
        answer = extract_answer(path_text(parent.node) + text) if terminal else None
        children.append(
            Branch(name, fork, add_child(parent.node, text, terminal=terminal, answer=answer))
        )
    return children


def score(ctx: dl.ProgramContext, branches: Sequence[Branch]) -> None:
    """Judge the branches' paths with the run's reward source (concurrently)."""
    if ctx.reward is None:
        raise RuntimeError("this program needs a reward source: run it with run_program")
    for branch, reward in zip(branches, ctx.reward.score([b.state for b in branches]), strict=True):
        branch.reward = float(reward)


def drop(branches: Iterable[Branch]) -> None:
    """Discard the forks of branches no longer needed, once each (never the root's state: it is
    the program's own)."""
    for branch in branches:
        if branch.node.parent is not None and branch.state is not None:
            dl.discard(branch.state)
            branch.state = None


def level_counts(beams: int, children: int, budget: int) -> list[int]:
    """Children per beam (best first): `children` each, or the budget spread evenly when it is
    smaller, the better beams getting the remainder."""
    total = min(beams * children, max(budget, 0))
    return [total // beams + (i < total % beams) for i in range(beams)] if beams else []


def final_answer(finished: Sequence[Branch], beams: Sequence[Branch]) -> str | None:
    """The best finished solution's answer by reward, else the best beam's answer so far."""
    best = best_of_n([b.reward for b in finished], [b.node.answer for b in finished])
    if best is not None:
        return finished[best].node.answer
    return extract_answer(path_text(beams[0].node)) if beams else None


@sgl.function
def beam_search(
    s, question, beam_width=2, children=2, max_depth=8, step_tokens=64, temperature=0.7
):
    s += sgl.system(SYSTEM)
    s += sgl.user(question)
    s += sgl.assistant_begin()
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
        verdict = ctx.report(
            used,
            rewards={b.name: b.reward for b in level},
            answers={b.name: b.node.answer for b in level if b.node.terminal},
        )
        kept = [b for b in level if b.name not in verdict.trim]
        finished += [b for b in kept if b.node.terminal]
        alive = [b for b in kept if not b.node.terminal]
        beams = [alive[i] for i in beam_select([b.reward for b in alive], beam_width)]
        drop(b for b in level if b not in beams)
        grant = granted(verdict, used, cap)
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
