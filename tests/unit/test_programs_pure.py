"""The non-LLM logic of the step-level programs (best-of-N, beam search, REBASE, MCTS).

Generation and judging are replaced by fakes where a function takes them (`expand`, `score`), so
the search bookkeeping runs without an SGLang worker.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dynasor_sgl.lang import Verdict
from dynasor_sgl.programs import beam_search as beam
from dynasor_sgl.programs import best_of_n as bon
from dynasor_sgl.programs import cot_probe, get_program, steps
from dynasor_sgl.programs import mcts as mcts_prog
from dynasor_sgl.programs import rebase as rebase_prog
from dynasor_sgl.programs.steps import Branch, StepParams
from dynasor_sgl.search.tree import Node, add_child, backpropagate

NEWLINE = {"type": "stop", "matched": "\n"}
EOS = {"type": "stop", "matched": 2}
LENGTH = {"type": "length", "length": 32}
STEP = StepParams(max_depth=3, tokens=32, temperature=0.7)


class FakeState:
    """Stands in for a fork: `dl.discard` ends it."""

    def __init__(self) -> None:
        self.ended = 0

    def end(self) -> None:
        self.ended += 1


def names() -> Iterator[str]:
    return (f"n{k}" for k in range(1000))


def branch(
    name: str,
    parent: Branch | None = None,
    *,
    text: str = "step\n",
    terminal: bool = False,
    answer: str | None = None,
    reward: float = 0.0,
) -> Branch:
    """A branch with a fake fork: the root without a parent, else a new child of `parent`."""
    if parent is None:
        return Branch(name, FakeState(), Node(), reward)
    node = add_child(parent.node, text, terminal=terminal, answer=answer)
    return Branch(name, FakeState(), node, reward)


def fake_expand(finishing: set[str], calls: list[list[int]]) -> Callable[..., list[Branch]]:
    """An `expand` that writes "<name>\\n" per child; children named in `finishing`, or at
    max_depth, finish with their name as answer."""

    def expand(
        parents: Sequence[Branch], counts: Sequence[int], names: Iterator[str], step: StepParams
    ) -> list[Branch]:
        calls.append(list(counts))
        out = []
        for parent, count in zip(parents, counts, strict=True):
            for _ in range(count):
                name = next(names)
                done = name in finishing or parent.node.depth + 1 >= step.max_depth
                out.append(
                    branch(
                        name, parent, text=f"{name}\n", terminal=done, answer=name if done else None
                    )
                )
        return out

    return expand


def fake_score(_ctx: object, branches: Sequence[Branch]) -> None:
    """Reward 0.1 · (k mod 10) for branch n<k>: deterministic and different per branch."""
    for b in branches:
        b.reward = (int(b.name[1:]) % 10) / 10


# --- steps ---------------------------------------------------------------------------------------


def test_ended_on_newline_only_for_the_step_separator() -> None:
    assert steps.ended_on_newline(NEWLINE)
    assert not steps.ended_on_newline(EOS)  # EOS: matched is the token id
    assert not steps.ended_on_newline({"type": "stop", "matched": "</s>"})
    assert not steps.ended_on_newline(LENGTH)
    assert not steps.ended_on_newline(None)
    assert not steps.ended_on_newline({})


def test_is_terminal() -> None:
    assert not steps.is_terminal("We add 3 and 4.\n", NEWLINE, 1, 3)
    assert steps.is_terminal("So the answer is \\boxed{7}.\n", NEWLINE, 1, 3)
    assert steps.is_terminal("3 + 4 = 7.", EOS, 1, 3)  # the model ended its solution
    assert steps.is_terminal("cut short", {"type": "abort"}, 1, 3)
    assert not steps.is_terminal("a long line cut by max_tokens", LENGTH, 1, 3)
    assert steps.is_terminal("a long line cut by max_tokens", LENGTH, 3, 3)  # at max_depth
    assert steps.is_terminal("We add.\n", NEWLINE, 4, 3)


def test_granted_clips_to_the_cap_and_stops() -> None:
    assert Verdict("continue", grant=4).allowed(4, 40) == 4
    assert Verdict("continue", grant=4).allowed(38, 40) == 2
    assert Verdict("expand", grant=8, expand=4).allowed(0, 40) == 8
    assert Verdict("stop", grant=4, reason="threshold").allowed(4, 40) == 0
    assert Verdict("continue", grant=4).allowed(41, 40) == 0


def test_level_counts_known_values() -> None:
    assert beam.level_counts(2, 2, 4) == [2, 2]
    assert beam.level_counts(2, 2, 10) == [2, 2]  # never more than `children` per beam
    assert beam.level_counts(2, 2, 3) == [2, 1]  # the better beam gets the remainder
    assert beam.level_counts(3, 2, 1) == [1, 0, 0]
    assert beam.level_counts(1, 4, 4) == [4]
    assert beam.level_counts(0, 2, 4) == []
    assert beam.level_counts(2, 2, 0) == [0, 0]


@given(st.integers(0, 8), st.integers(1, 6), st.integers(-2, 60))
def test_level_counts_spends_the_budget_evenly(beams: int, children: int, budget: int) -> None:
    counts = beam.level_counts(beams, children, budget)
    assert len(counts) == beams
    assert sum(counts) == min(beams * children, max(budget, 0))
    assert all(0 <= c <= children for c in counts)
    assert counts == sorted(counts, reverse=True)
    assert not counts or max(counts) - min(counts) <= 1


def test_beam_final_answer() -> None:
    root = branch("root")
    a = branch("n0", root, text="3 + 4 = 8\n", terminal=True, answer="8", reward=0.4)
    b = branch("n1", root, text="3 + 4 = 7\n", terminal=True, answer="7", reward=0.9)
    empty = branch("n2", root, text="hmm\n", terminal=True, answer=None, reward=1.0)
    open_ = branch("n3", root, text="So \\boxed{5} so far\n", reward=0.5)
    assert beam.final_answer([a, b], [open_]) == "7"
    assert beam.final_answer([a, empty], []) == "8"  # an answer beats a higher empty one
    assert beam.final_answer([], [open_]) == "5"  # nothing finished: the best beam's answer
    assert beam.final_answer([], []) is None
    # every finished solution is answer-less: the best path whose text has an answer, not None
    assert beam.final_answer([empty], [open_]) == "5"
    assert beam.final_answer([empty], []) is None  # no text has one


def test_only_finished_solutions_with_an_answer_count_toward_a_stop() -> None:
    root = branch("root")
    solved = branch("n0", root, text="\\boxed{7}\n", terminal=True, answer="7", reward=0.2)
    empty = branch("n1", root, text="hmm\n", terminal=True, answer=None, reward=0.9)
    blank = branch("n2", root, text="\n", terminal=True, answer="  ", reward=0.9)
    open_ = branch("n3", root, text="So \\boxed{5} so far\n", reward=0.9)
    assert [b.name for b in steps.counted([solved, empty, blank, open_])] == ["n0"]
    assert steps.has_answer(solved.node) and not steps.has_answer(open_.node)


def test_best_answer_falls_back_to_the_best_paths_text() -> None:
    root = Node()
    empty = add_child(root, "I am not sure.\n", terminal=True, answer=None)
    words = add_child(root, "The capital of France is \\boxed{Paris}\n")  # open, high score
    solved = add_child(root, "\\boxed{7}\n", terminal=True, answer="7")
    assert steps.best_answer([(empty, 0.9), (words, 0.8), (solved, 0.1)]) == "7"  # solved first
    assert steps.best_answer([(empty, 0.9), (words, 0.8)]) == "Paris"  # the best text with one
    assert steps.best_answer([(empty, 0.9)]) is None
    assert steps.best_answer([]) is None
    assert steps.path_answer(words) == "Paris" and steps.path_answer(solved) == "7"


def test_drop_discards_each_fork_once_and_never_the_root() -> None:
    root = branch("root")
    child = branch("n0", root)
    root_state, child_state = root.state, child.state
    beam.drop([root, child])
    beam.drop([child])
    assert root_state.ended == 0 and root.state is root_state
    assert child_state.ended == 1 and child.state is None


# --- best-of-N -----------------------------------------------------------------------------------


def test_best_of_n_choose() -> None:
    assert bon.choose({"c0": ("8", 0.4), "c1": ("7", 0.9), "c2": ("7", 0.9)}) == ("c1", "7")
    assert bon.choose({"c0": ("8", 0.4), "c1": (None, 0.99)}) == ("c0", "8")
    assert bon.choose({"c0": (None, 0.2)}) == ("c0", None)
    assert bon.choose({}) == (None, None)


# --- REBASE --------------------------------------------------------------------------------------


def test_rebase_final_answer_votes_then_falls_back_to_the_best_text() -> None:
    root = branch("root")
    seven = [branch(f"n{i}", root, terminal=True, answer="7", reward=0.3) for i in range(2)]
    eight = branch("n2", root, terminal=True, answer="8", reward=0.5)
    assert rebase_prog.final_answer([*seven, eight]) == "7"  # weight 0.6 against 0.5
    empty = branch("n3", root, text="hmm\n", terminal=True, answer=None, reward=0.9)
    assert rebase_prog.final_answer([empty]) is None
    assert rebase_prog.final_answer([]) is None


def test_completed_left() -> None:
    root = branch("root")
    level = [branch("n0", root, terminal=True, answer="7"), branch("n1", root)]
    done, frontier, left = rebase_prog.completed_left(level, 4)
    assert [b.name for b in done] == ["n0"]
    assert [b.name for b in frontier] == ["n1"]
    assert left == 3


@pytest.mark.parametrize("width", [1, 4, 7])
def test_search_round_completes_exactly_width_solutions(
    width: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[list[int]] = []
    monkeypatch.setattr(rebase_prog, "expand", fake_expand({"n1", "n2"}, calls))
    monkeypatch.setattr(rebase_prog, "score", fake_score)
    root_state = FakeState()
    done = rebase_prog.search_round(None, root_state, width, names(), STEP, 0.2)  # type: ignore[arg-type]
    assert len(done) == width
    assert all(b.node.terminal and b.state is None for b in done)  # finished forks discarded
    assert calls[0] == [width]  # the prompt gets the whole width
    left = width
    for depth, counts in enumerate(calls, start=1):  # each depth spawns the width still left
        assert sum(counts) == left
        left -= sum(1 for b in done if b.node.depth == depth)
    assert left == 0 and len(calls) <= STEP.max_depth
    assert root_state.ended == 0


def test_search_round_gives_better_nodes_more_children(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[int]] = []
    monkeypatch.setattr(rebase_prog, "expand", fake_expand(set(), calls))
    monkeypatch.setattr(rebase_prog, "score", fake_score)  # n0 < n1 < n2 < n3 by reward
    rebase_prog.search_round(None, FakeState(), 4, names(), STEP, 0.2)  # type: ignore[arg-type]
    assert calls[0] == [4]
    assert sum(calls[1]) == 4 and calls[1] == sorted(calls[1])  # n3 (best) gets the most


# --- MCTS ----------------------------------------------------------------------------------------


def _tree() -> tuple[Node, dict[Node, Branch]]:
    root = branch("root")
    tree = {root.node: root}
    for b in (branch("n0", root), branch("n1", root, terminal=True, answer="7", reward=0.8)):
        tree[b.node] = b
    grandchild = branch("n2", tree[root.node.children[0]], reward=0.3)
    tree[grandchild.node] = grandchild
    for b in (tree[root.node.children[1]], grandchild):
        backpropagate(b.node, b.reward)
    return root.node, tree


def test_leaves_and_expandable() -> None:
    root, tree = _tree()
    assert [tree[n].name for n in mcts_prog.leaves(root)] == ["n2", "n1"]
    assert mcts_prog.expandable(root)
    assert mcts_prog.expandable(Node())  # a fresh root is the first leaf to expand
    only_finished = Node()
    add_child(only_finished, "done", terminal=True, answer="7")
    assert not mcts_prog.expandable(only_finished)


def test_mcts_final_answer() -> None:
    root, _ = _tree()
    assert mcts_prog.final_answer(root) == "7"  # the visited finished solution
    open_tree = Node()
    low = add_child(open_tree, "x = 3\n")
    high = add_child(open_tree, "x = 5\n")
    backpropagate(low, 0.2)
    backpropagate(high, 0.6)
    assert mcts_prog.final_answer(open_tree) == "5"  # no solution: the best leaf's answer
    assert mcts_prog.final_answer(Node()) is None
    # the case: one finished node without an answer neither counts toward a stop nor
    # makes the answer null
    add_child(open_tree, "I think that is it.\n", terminal=True, answer=None)
    backpropagate(open_tree.children[-1], 0.9)
    assert mcts_prog.solutions(open_tree) == []
    assert mcts_prog.final_answer(open_tree) == "5"
    root, _ = _tree()
    assert [n.answer for n in mcts_prog.solutions(root)] == ["7"]


def test_prune_drops_subtrees_keeps_the_root() -> None:
    root, tree = _tree()
    n0 = root.children[0]
    states = [tree[n].state for n in (n0, n0.children[0])]
    mcts_prog.prune(tree, ("n0", "n2", "root"))
    assert [tree[n].name for n in root.children] == ["n1"]
    assert set(tree) == {root, root.children[0]}
    assert [s.ended for s in states] == [1, 1]
    assert root.visits == 2  # rewards already back-propagated stay


def test_iterate_expands_then_revisits_finished_leaves(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[int]] = []
    monkeypatch.setattr(mcts_prog, "expand", fake_expand({"n0"}, calls))
    monkeypatch.setattr(mcts_prog, "score", fake_score)
    root = branch("root")
    tree, gen = {root.node: root}, names()
    mcts_prog.iterate(None, root.node, tree, gen, STEP, 2, 1.4)  # type: ignore[arg-type]
    assert calls == [[2]] and root.node.visits == 2
    n0, n1 = root.node.children
    assert n0.terminal and tree[n0].state is None  # finished: fork discarded at once
    assert not n1.terminal and tree[n1].state is not None
    assert root.node.value == pytest.approx(0.0 + 0.1)
    # both children are visited once; UCT with the higher mean picks n1 and expands it
    mcts_prog.iterate(None, root.node, tree, gen, STEP, 2, 1.4)  # type: ignore[arg-type]
    assert calls == [[2], [2]] and len(n1.children) == 2
    # a finished leaf selected again back-propagates its reward without new tokens
    finished = Node()
    leaf = add_child(finished, "7\n", terminal=True, answer="7")
    backpropagate(leaf, 0.5)
    tree2 = {finished: Branch("root", FakeState(), finished), leaf: Branch("n9", None, leaf, 0.5)}
    mcts_prog.iterate(None, finished, tree2, gen, STEP, 2, 1.4)  # type: ignore[arg-type]
    assert calls == [[2], [2]] and leaf.visits == 2 and leaf.mean == 0.5


# --- registry ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "algorithm", "knob", "signal"),
    [
        ("best-of-n", "bon", "candidates", "reward"),
        ("beam-search", "beam", "expansions", "reward"),
        ("rebase", "rebase", "width", "entropy"),
        ("mcts", "mcts", "iterations", "reward"),
    ],
)
def test_specs(name: str, algorithm: str, knob: str, signal: str) -> None:
    spec = get_program(name)
    assert (spec.name, spec.algorithm, spec.knob, spec.signal) == (name, algorithm, knob, signal)


def test_a_reasoning_that_ends_without_a_box_still_answers() -> None:
    # the final probe's answer wins; when it has none, the reasoning's own words answer
    assert cot_probe.probed_or_read("Lyon", "The capital of France is Paris.") == "Lyon"
    assert cot_probe.probed_or_read(None, "The capital of France is Paris.") == "Paris"
    assert cot_probe.probed_or_read(None, "Hmm, let me think.") is None
