"""Monte-Carlo tree search over reasoning steps, judged by the reward source.

Knob: iterations. Each iteration selects a path by UCT (`dynasor_sgl.tree.select_path`),
expands its leaf with `expand_children` one-step children (the steps of `beam_search.expand`),
judges each and back-propagates its reward; a selected finished solution back-propagates its
reward again without new tokens. `expand_children` defaults to 2: with 1, every expanded node
has a single child, so selection always descends it and the tree is a single chain. After each
iteration the router reads the mean reward of the finished solutions (default: stop at ≥ 0.4
at iteration 3). Until one exists no reward is reported, so the program cannot stop certain
without a finished solution (open paths' rewards would let it stop on half a solution).
Final answer: the finished solution with the best mean reward, else the best leaf's answer.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import sglang as sgl

from dynasor_sgl import lang as dl
from dynasor_sgl.answers import extract_answer
from dynasor_sgl.tree import (
    DEFAULT_EXPLORATION,
    Node,
    backpropagate,
    best_terminal,
    iter_nodes,
    path_text,
    select_path,
    terminals,
)
from dynasor_sgl.votes import best_of_n

from .steps import SYSTEM, Branch, StepParams, drop, expand, score


def leaves(root: Node) -> list[Node]:
    """The nodes below the root without children, in pre-order."""
    return [n for n in iter_nodes(root) if n is not root and not n.children]


def expandable(root: Node) -> bool:
    """Whether an iteration can still grow the tree (some leaf is not a finished solution)."""
    return any(not n.terminal for n in iter_nodes(root) if not n.children)


def final_answer(root: Node) -> str | None:
    """The best finished solution's answer, else the answer so far of the best leaf by mean."""
    best = best_terminal(root)
    if best is not None:
        return best.answer
    open_leaves = leaves(root)
    answers = [extract_answer(path_text(n)) for n in open_leaves]
    index = best_of_n([n.mean for n in open_leaves], answers)
    return None if index is None else answers[index]


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
):
    s += sgl.system(SYSTEM)
    s += sgl.user(question)
    s += sgl.assistant_begin()
    ctx = dl.context(s)
    step = StepParams(max_depth, step_tokens, temperature)
    root = Node()
    tree, names = {root: Branch("root", s, root)}, (f"n{k}" for k in itertools.count())
    done, budget = 0, min(ctx.config.initial, ctx.config.cap)
    while budget > 0 and expandable(root):
        iterate(ctx, root, tree, names, step, expand_children, exploration)
        done += 1
        finished = terminals(root)
        verdict = ctx.report(
            done,
            rewards={tree[n].name: n.mean for n in finished},
            answers={tree[n].name: n.answer for n in finished},
        )
        prune(tree, verdict.trim)
        budget = verdict.allowed(done, ctx.config.cap)
    best = best_terminal(root)
    ctx.finish(
        final_answer(root),
        exit_reason="cap" if expandable(root) else "completed",
        steps=done,
        nodes=len(tree) - 1,
        finished=len(terminals(root)),
        best_reward=None if best is None else round(best.mean, 4),
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
