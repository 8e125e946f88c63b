"""The tree of reasoning steps that beam search, REBASE and MCTS grow, and its statistics.

Owns a small tree of steps (`Node`), UCT selection of the next leaf to expand (MCTS), the
bookkeeping of expansion, reward back-propagation and the choice of the final answer
(best-of-n by mean reward, through `dynasor_sgl.search.votes.best_of_n`). The program decides how
steps are sampled and rewarded, and when to stop; this module knows nothing about SGLang, the
router or certaindex. Pure Python, deterministic (ties always go to the earliest child).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass, field

from dynasor_sgl.search.votes import best_of_n

logger = logging.getLogger(__name__)

DEFAULT_EXPLORATION = math.sqrt(2)
"""UCT's c: the classic UCB1 constant for rewards in [0, 1]."""


@dataclass(eq=False)
class Node:
    """One reasoning step in the tree; the root holds the question and no step (text "").

    children keep creation order. visits N and value (the sum of rewards back-propagated through
    the node) change only in `backpropagate`. terminal: the step ends a solution, so it is never
    expanded; answer: the final answer extracted from it (None if none). Equality is identity.
    """

    text: str = ""
    parent: Node | None = field(default=None, repr=False)
    children: list[Node] = field(default_factory=list, repr=False)
    visits: int = 0
    value: float = 0.0
    terminal: bool = False
    answer: str | None = None

    @property
    def mean(self) -> float:
        """Q/N, the mean back-propagated reward; 0.0 while unvisited."""
        return self.value / self.visits if self.visits else 0.0

    @property
    def depth(self) -> int:
        """Steps below the root (root: 0)."""
        return 0 if self.parent is None else self.parent.depth + 1


def add_child(
    parent: Node, text: str, *, terminal: bool = False, answer: str | None = None
) -> Node:
    """Expansion: attach a newly sampled step below `parent` and return it (unvisited).

    A terminal parent ends its solution and cannot be expanded (ValueError).
    """
    if parent.terminal:
        raise ValueError("cannot expand a terminal node")
    child = Node(text=text, parent=parent, terminal=terminal, answer=answer)
    parent.children.append(child)
    return child


def uct(child: Node, parent_visits: int, c: float = DEFAULT_EXPLORATION) -> float:
    """UCT score Q/N + c·sqrt(ln N_parent / N); +inf for an unvisited child (N = 0).

    c ≥ 0 (c = 0 is greedy on the mean). N_parent below 1 is read as 1 (ln 1 = 0: no exploration
    bonus), which only happens in a tree whose statistics were not set by `backpropagate`.
    """
    if child.visits == 0:
        return math.inf
    bonus = math.sqrt(math.log(max(parent_visits, 1)) / child.visits)
    return child.mean + c * bonus


def select_child(node: Node, c: float = DEFAULT_EXPLORATION) -> Node:
    """The child to descend into: the first unvisited child, else the highest UCT score.

    Unvisited children score +inf (`uct`) and ties go to the earliest child, so the first
    unvisited child always wins. A node without children, or a negative or non-finite c,
    raises ValueError.
    """
    if not node.children:
        raise ValueError("node has no children to select from")
    if not (math.isfinite(c) and c >= 0):
        raise ValueError(f"exploration constant c must be finite and >= 0, got {c!r}")
    scores = [uct(child, node.visits, c) for child in node.children]
    return node.children[scores.index(max(scores))]


def select_path(root: Node, c: float = DEFAULT_EXPLORATION) -> list[Node]:
    """Selection: the path root → leaf, descending with `select_child` while the node has
    children and is not terminal. The leaf is the node to expand next, or a terminal node whose
    reward is to be back-propagated again. A fresh root -> [root].
    """
    path = [root]
    while path[-1].children and not path[-1].terminal:
        path.append(select_child(path[-1], c))
    return path


def backpropagate(leaf: Node, reward: float) -> int:
    """Adds one visit and `reward` to every node from `leaf` up to the root, each exactly once.

    reward: finite (P("Yes") in [0, 1] for the self-judged reward); NaN or ±inf raises
    ValueError. Returns the number of nodes updated (leaf.depth + 1).
    """
    if not math.isfinite(reward):
        raise ValueError(f"reward must be finite, got {reward!r}")
    updated = 0
    node: Node | None = leaf
    while node is not None:
        node.visits += 1
        node.value += reward
        updated += 1
        node = node.parent
    return updated


def path_text(node: Node) -> str:
    """The steps from the root down to `node`, concatenated (what the model has written so far)."""
    steps: list[str] = []
    current: Node | None = node
    while current is not None:
        steps.append(current.text)
        current = current.parent
    return "".join(reversed(steps))


def iter_nodes(root: Node) -> Iterator[Node]:
    """Every node of the tree in pre-order (a node before its children, children in order)."""
    stack = [root]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(reversed(node.children))


def terminals(root: Node) -> list[Node]:
    """The visited terminal nodes (finished, rewarded solutions) in pre-order: the paths whose
    answers and mean rewards feed certaindex (entropy over answers, mean reward)."""
    return [n for n in iter_nodes(root) if n.terminal and n.visits > 0]


def best_terminal(root: Node) -> Node | None:
    """The final answer's node: best-of-n over `terminals` by mean reward Q/N.

    Solutions with a non-empty answer are preferred (an empty one wins only if all are empty);
    ties go to the earliest in pre-order. No visited terminal node -> None.
    """
    done = terminals(root)
    index = best_of_n([n.mean for n in done], [n.answer for n in done])
    return None if index is None else done[index]
