"""Monte-Carlo tree search over reasoning steps, judged by the reward source.

Knob: iterations. Each iteration selects a path by UCT (`dynasor_sgl.search.tree.select_path`),
expands its leaf with `expand_children` one-step children (the steps of `beam_search.expand`),
judges each and back-propagates its reward; a selected finished solution back-propagates its
reward again without new tokens. `expand_children` defaults to 2: with 1, every expanded node
has a single child, so selection always descends it and the tree is a single chain. After each
iteration the router reads the mean reward of the finished solutions that have an answer
(default: stop at ≥ 0.4 at iteration 3). Until one exists no reward is reported, so the program
cannot stop certain without an answer (open paths' rewards would let it stop on half a
solution, an answer-less one on none). Final answer: the finished solution with an answer and
the best mean reward, else the best leaf's answer so far (`steps.best_answer`).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import sglang as sgl

from dynasor_sgl import lang as dl
from dynasor_sgl.lang import (
    DEFAULT_EXPLORATION,
    Node,
    backpropagate,
    iter_nodes,
    select_path,
    terminals,
)

from .steps import SYSTEM, Branch, StepParams, best_answer, drop, expand, has_answer, score


def leaves(root: Node) -> list[Node]:
    """The nodes below the root without children, in pre-order."""
    return [n for n in iter_nodes(root) if n is not root and not n.children]


def expandable(root: Node) -> bool:
    """Whether an iteration can still grow the tree (some leaf is not a finished solution)."""
    return any(not n.terminal for n in iter_nodes(root) if not n.children)


def solutions(root: Node) -> list[Node]:
    """The finished solutions that count toward a stop: visited, with an answer (pre-order)."""
    return [n for n in terminals(root) if has_answer(n)]


def final_answer(root: Node) -> str | None:
    """The best finished solution's answer by mean reward, else the answer so far of the best
    leaf by mean (`steps.best_answer`)."""
    return best_answer([(n, n.mean) for n in leaves(root)])


def prune(tree: dict[Node, Branch], trim: tuple[str, ...]) -> None:
    """Drop the trimmed branches and their subtrees (their rewards stay in the ancestors')."""
    for branch in [b for b in tree.values() if b.name in trim]:
        if branch.node.parent is None or branch.node not in tree:
            continue
        branch.node.parent.children.remove(branch.node)
        for node in iter_nodes(branch.node):
            drop([tree.pop(node)])


def iterate(
    ctx: dl.ProgramContext,
    root: Node,
    tree: dict[Node, Branch],
    names: Iterator[str],
    step: StepParams,
    children: int,
    exploration: float,
) -> None:
    """One MCTS iteration: select a leaf by UCT, expand it (one gen per child), judge the
    children and back-propagate each reward; a finished leaf back-propagates its reward again."""
    leaf = select_path(root, exploration)[-1]
    if leaf.terminal:
        backpropagate(leaf, tree[leaf].reward)
        return
    new = expand([tree[leaf]], [children], names, step)
    score(ctx, new)
    for child in new:
        tree[child.node] = child
        backpropagate(child.node, child.reward)
    drop(b for b in new if b.node.terminal)  # finished solutions are never forked again


@sgl.function
def mcts(
    s,
    question,
    expand_children=2,
    max_depth=6,
    step_tokens=64,
    temperature=0.7,
    exploration=DEFAULT_EXPLORATION,
    system_prompt=None,
    few_shot=(),
):
    dl.open_chat(s, question, system_prompt or SYSTEM, few_shot)
    ctx = dl.context(s)
    step = StepParams(max_depth, step_tokens, temperature)
    root = Node()
    tree, names = {root: Branch("root", s, root)}, (f"n{k}" for k in itertools.count())
    done, budget = 0, min(ctx.config.initial, ctx.config.cap)
    while budget > 0 and expandable(root):
        iterate(ctx, root, tree, names, step, expand_children, exploration)
        done += 1
        solved = solutions(root)
        verdict = ctx.report(
            done,
            rewards={tree[n].name: n.mean for n in solved},
            answers={tree[n].name: n.answer for n in solved},
        )
        prune(tree, verdict.trim)
        budget = verdict.allowed(done, ctx.config.cap)
    best = max((n.mean for n in solutions(root)), default=None)
    ctx.finish(
        final_answer(root),
        exit_reason="cap" if expandable(root) else "completed",
        steps=done,
        nodes=len(tree) - 1,
        finished=len(terminals(root)),
        best_reward=None if best is None else round(best, 4),
    )
    drop(tree.values())


SPEC = dl.ProgramSpec(
    name="mcts",
    algorithm="mcts",
    function=mcts,
    knob="iterations",
    signal="reward",
    description="Monte-Carlo tree search over judged steps; stop when solutions are judged good",
)
