"""The step primitives of the tree-search programs (beam search, REBASE, MCTS) and the one
system prompt every shipped program uses (and self-consistency's worked example).

A step is one line: a gen that stops at "\\n" on a fork of its parent node's fork, tagged with
its own branch `n<k>`; `expand` samples children of many parents concurrently, `score` judges
them with the run's reward source, `drop` discards forks no longer needed. `counted` and
`best_answer` are the answer rules the three share: only a finished solution with an answer
counts toward a stop, and the final answer falls back to the best path's text.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sglang as sgl

from dynasor_sgl import lang as dl
from dynasor_sgl.lang import Node, add_child, best_of_n, extract_answer, path_text

SYSTEM = (
    "You are a careful math assistant. Think step by step, then give the final answer in \\boxed{}."
)
# Self-consistency's one worked example, a user/assistant turn before the question unless the
# caller gives its own `few_shot`: it shows the model the answer's shape, which the system
# prompt alone does not (the embedded model, 20 samples of "What is the capital of France?": 7
# say Paris without it, 19 with it; docs/results/sc-factual.md).
EXAMPLE = {
    "question": "What is the capital of Japan?",
    "answer": "The capital of Japan is Tokyo. The final answer is \\boxed{Tokyo}.",
}
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


def has_answer(node: Node) -> bool:
    """Whether `node` is a finished solution with a non-blank answer: only those count toward a
    stop (a stop on an answer-less solution would end the program without an answer)."""
    return node.terminal and bool(node.answer and node.answer.strip())


def counted(branches: Iterable[Branch]) -> list[Branch]:
    """The branches whose solutions count toward a stop (`has_answer`), in order."""
    return [b for b in branches if has_answer(b.node)]


def path_answer(node: Node) -> str | None:
    """A node's answer: a finished solution's own, else `extract_answer` over its path so far."""
    return node.answer if has_answer(node) else extract_answer(path_text(node))


def best_answer(candidates: Sequence[tuple[Node, float]]) -> str | None:
    """The final answer of a tree search over (node, score) candidates.

    The best-scoring finished solution with an answer; when there is none, the best-scoring
    candidate (finished or open) whose path's text has an answer (`path_answer`); None only when
    no candidate's text has one. Ties go to the earliest candidate.
    """
    solved = [(n, r) for n, r in candidates if has_answer(n)]
    for group in (solved, candidates):
        answers = [path_answer(n) for n, _ in group]
        index = best_of_n([r for _, r in group], answers)
        if index is not None and (answers[index] or "").strip():
            return answers[index]
    return None


def drop(branches: Iterable[Branch]) -> None:
    """Discard the forks of branches no longer needed, once each (never the root's state: it is
    the program's own)."""
    for branch in branches:
        if branch.node.parent is not None and branch.state is not None:
            dl.discard(branch.state)
            branch.state = None
