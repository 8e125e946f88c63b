"""Votes and selection (`votes`), the judged reward (`logprobs`), the token ledger (`tokens`)
and the step tree (`tree`)."""

from __future__ import annotations

import math
from random import Random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dynasor_sgl.lang.tokens import TokenUsage
from dynasor_sgl.policy.logprobs import top_logprobs_by_text, yes_probability
from dynasor_sgl.search import tree as mcts
from dynasor_sgl.search.votes import (
    Vote,
    beam_select,
    best_of_n,
    majority_vote,
    rebase_allocation,
    weighted_vote,
)

# Small integer answers: equivalence is decided by the fast path, no math-verify process.
answer_lists = st.lists(st.sampled_from(["1", "2", "3", "4", None, ""]), max_size=10)
rewards = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)


# --- votes -------------------------------------------------------------------------------------


def test_majority_vote_known_values() -> None:
    assert majority_vote(["4", "4", "5"]) == Vote("4", pytest.approx(2 / 3))
    assert majority_vote(["5", "4"]) == Vote("4", 0.5)  # tie: smallest normalized answer
    assert majority_vote(["4", "5"]) == Vote("4", 0.5)
    assert majority_vote(["1,000", "1000", "1000", "7"]) == Vote("1000", 0.75)
    # empty answers count in the share but never win
    assert majority_vote([None, None, None, "3"]) == Vote("3", 0.25)
    assert majority_vote(["", "  ", None, "3", "3"]) == Vote("3", 0.4)


def test_majority_vote_edges() -> None:
    assert majority_vote([]) == Vote(None, 0.0)
    assert majority_vote([None, "", "  "]) == Vote(None, 0.0)
    assert majority_vote(["7"]) == Vote("7", 1.0)


def test_weighted_vote_known_values() -> None:
    # two low-reward votes for 5 lose to one confident vote for 4
    vote = weighted_vote(["5", "5", "4"], [0.2, 0.3, 0.9])
    assert vote.answer == "4"
    assert vote.share == pytest.approx(0.9 / 1.4)
    assert weighted_vote(["5", "4"], [0.5, 0.5]) == Vote("4", 0.5)  # tie: smallest answer
    assert weighted_vote(["5", "5", "4"], [0.0, 0.0, 0.0]) == Vote("5", 0.0)  # then by count
    assert weighted_vote([None, "3"], [0.9, 0.1]) == Vote("3", pytest.approx(0.1))
    assert weighted_vote([], []) == Vote(None, 0.0)
    assert weighted_vote([None], [1.0]) == Vote(None, 0.0)


@pytest.mark.parametrize(
    ("answers", "weights"),
    [(["1"], [0.1, 0.2]), (["1", "2"], [0.5, -0.1]), (["1"], [math.nan]), (["1"], [math.inf])],
)
def test_weighted_vote_rejects_bad_weights(answers: list[str], weights: list[float]) -> None:
    with pytest.raises(ValueError):
        weighted_vote(answers, weights)


@settings(max_examples=100, deadline=None)
@given(answer_lists, st.randoms(use_true_random=False))
def test_votes_invariant_to_order(answers: list[str | None], rnd: Random) -> None:
    weights = [round(rnd.random(), 3) for _ in answers]
    order = list(range(len(answers)))
    rnd.shuffle(order)
    shuffled = [answers[i] for i in order]
    assert majority_vote(shuffled) == majority_vote(answers)
    assert weighted_vote(shuffled, [weights[i] for i in order]) == weighted_vote(answers, weights)


@settings(max_examples=100, deadline=None)
@given(answer_lists)
def test_majority_vote_winner_is_a_largest_non_empty_class(answers: list[str | None]) -> None:
    vote = majority_vote(answers)
    filled = [a for a in answers if a]
    if not filled:
        assert vote == Vote(None, 0.0)
        return
    assert vote.answer in filled
    assert filled.count(vote.answer) == max(filled.count(a) for a in filled)
    assert vote.share == filled.count(vote.answer) / len(answers)


# --- best-of-n and beam --------------------------------------------------------------------------


def test_best_of_n() -> None:
    assert best_of_n([0.2, 0.9, 0.5]) == 1
    assert best_of_n([0.9, 0.9]) == 0  # ties: smallest index
    assert best_of_n([]) is None
    # the empty answer has the best reward but loses to any real answer ...
    assert best_of_n([0.9, 0.1, 0.3], [None, "2", "3"]) == 2
    # ... unless every answer is empty
    assert best_of_n([0.1, 0.9], [None, ""]) == 1
    with pytest.raises(ValueError):
        best_of_n([0.1, math.nan])
    with pytest.raises(ValueError):
        best_of_n([0.1], ["1", "2"])


def test_beam_select() -> None:
    assert beam_select([0.1, 0.9, 0.5, 0.9], 2) == [1, 3]  # stable among equals
    assert beam_select([0.1, 0.9, 0.5], 10) == [1, 2, 0]
    assert beam_select([0.1, 0.9], 0) == []
    assert beam_select([], 3) == []
    with pytest.raises(ValueError):
        beam_select([0.1], -1)
    with pytest.raises(ValueError):
        beam_select([math.inf], 1)


# --- REBASE allocation ---------------------------------------------------------------------------


def test_rebase_allocation_known_values() -> None:
    # softmax([1, 0] / 0.5) = [0.881, 0.119] -> quotas 3.52 / 0.48 -> [4, 0]
    assert rebase_allocation([1.0, 0.0], 4, 0.5) == [4, 0]
    # quotas 7.05 / 0.95 -> largest remainder gives the 8th child to the second node
    assert rebase_allocation([1.0, 0.0], 8, 0.5) == [7, 1]
    assert rebase_allocation([0.5, 0.5, 0.5], 7, 1.0) == [3, 2, 2]  # equal: even split
    assert rebase_allocation([0.3, 0.9, 0.9], 5, 1e-9) == [0, 3, 2]  # T -> 0: best nodes only
    assert rebase_allocation([0.3, 0.9], 3, 1e-320) == [0, 3]  # no overflow trouble


def test_rebase_allocation_edges() -> None:
    assert rebase_allocation([], 16, 1.0) == []
    assert rebase_allocation([0.2, 0.7], 0, 1.0) == [0, 0]
    assert rebase_allocation([0.4], 5, 0.1) == [5]
    for width, temperature in ((-1, 1.0), (True, 1.0), (2, 0.0), (2, -1.0), (2, math.inf)):
        with pytest.raises(ValueError):
            rebase_allocation([0.1, 0.2], width, temperature)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        rebase_allocation([0.1, math.nan], 2, 1.0)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(rewards, max_size=12),
    st.integers(min_value=0, max_value=64),
    st.floats(min_value=1e-3, max_value=10.0),
)
def test_rebase_allocation_properties(r: list[float], width: int, temperature: float) -> None:
    alloc = rebase_allocation(r, width, temperature)
    assert len(alloc) == len(r)
    if not r:
        return
    assert sum(alloc) == width
    assert all(n >= 0 for n in alloc)
    for i in range(len(r)):
        for j in range(len(r)):
            if r[i] > r[j]:
                assert alloc[i] >= alloc[j]
    # largest remainder: each count is its quota rounded down or up
    p = np.exp((np.array(r) - max(r)) / temperature)
    quotas = width * p / p.sum()
    assert all(abs(n - q) < 1 + 1e-9 for n, q in zip(alloc, quotas, strict=True))


# --- self-judged reward --------------------------------------------------------------------------


def test_yes_probability() -> None:
    lp = {" Yes": math.log(0.6), " No": math.log(0.2), " The": math.log(0.1)}
    assert yes_probability(lp) == pytest.approx(0.75)
    # variants pool: " Yes" + "Yes" + " yes" against " No"
    lp = {" Yes": math.log(0.3), "Yes": math.log(0.2), " yes": math.log(0.1), "no": math.log(0.4)}
    assert yes_probability(lp) == pytest.approx(0.6)
    assert yes_probability({" Yes": -0.1}) == 1.0
    assert yes_probability({" NO": -3.0, " Maybe": -0.1}) == 0.0
    assert yes_probability({" Maybe": -0.1}) == 0.5  # judge abstains
    assert yes_probability({}) == 0.5
    assert yes_probability({" Yes": -math.inf, " No": -math.inf}) == 0.5
    assert yes_probability({" Yes": -2000.0, " No": -2001.0}) == pytest.approx(1 / (1 + math.e**-1))
    with pytest.raises(ValueError):
        yes_probability({" Yes": math.nan})


def test_top_logprobs_by_text() -> None:
    entries = [[-0.5, 11, " Yes"], [-1.5, 12, " No"], [-2.0, 13, " Yes"]]
    merged = top_logprobs_by_text(entries)
    assert merged[" No"] == -1.5
    assert merged[" Yes"] == pytest.approx(math.log(math.exp(-0.5) + math.exp(-2.0)))
    assert top_logprobs_by_text(None) == {}
    with pytest.raises(ValueError, match="return_text_in_logprobs"):
        top_logprobs_by_text([[-0.5, 11, None]])


# --- token accounting ----------------------------------------------------------------------------


def test_token_usage_counts_prefill_after_cache_and_generated() -> None:
    usage = TokenUsage()
    assert (
        usage.add("reasoning", {"prompt_tokens": 100, "cached_tokens": 0, "completion_tokens": 64})
        == 164
    )
    assert (
        usage.add("probe", {"prompt_tokens": 180, "cached_tokens": 164, "completion_tokens": 5})
        == 21
    )
    assert usage.add("reward", {"prompt_tokens": 90, "completion_tokens": 1}) == 91  # no cache key
    assert usage.add("probe", None) == 0
    assert (usage.reasoning, usage.probe, usage.reward) == (164, 21, 91)
    assert usage.total == 276 == usage.prefill + usage.generated
    assert (usage.cached, usage.requests) == (164, 3)
    assert usage.to_dict()["total"] == 276
    with pytest.raises(ValueError):
        usage.add("other", {})  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        usage.add("probe", {"prompt_tokens": 5, "cached_tokens": 6})
    assert usage.total == 276  # rejected requests leave no trace


# --- MCTS ----------------------------------------------------------------------------------------


def _tree() -> tuple[mcts.Node, list[mcts.Node]]:
    root = mcts.Node(text="Q:")
    a = mcts.add_child(root, " a")
    b = mcts.add_child(root, " b")
    a1 = mcts.add_child(a, " a1=5", terminal=True, answer="5")
    return root, [a, b, a1]


def test_uct_known_values() -> None:
    _, (a, _, _) = _tree()
    assert mcts.uct(a, 0) == math.inf  # unvisited
    a.visits, a.value = 4, 2.0
    assert mcts.uct(a, 10, c=1.0) == pytest.approx(0.5 + math.sqrt(math.log(10) / 4))
    assert mcts.uct(a, 10, c=0.0) == 0.5
    assert mcts.uct(a, 0, c=1.0) == 0.5  # N_parent < 1 read as 1: no bonus


def test_select_prefers_unvisited_then_uct() -> None:
    root, (a, b, a1) = _tree()
    assert mcts.select_child(root) is a  # both unvisited: the first
    mcts.backpropagate(a1, 0.2)
    assert mcts.select_child(root) is b  # a visited, b not
    assert mcts.select_path(root) == [root, b]
    mcts.backpropagate(b, 0.9)
    assert mcts.select_child(root, c=0.0) is b  # greedy on the mean
    # a's exploration bonus wins once b has been visited often enough
    for _ in range(20):
        mcts.backpropagate(b, 0.5)
    assert mcts.select_child(root, c=2.0) is a
    assert mcts.select_path(root, c=2.0) == [root, a, a1]  # terminal leaf ends the descent
    with pytest.raises(ValueError):
        mcts.select_child(b)
    with pytest.raises(ValueError):
        mcts.select_child(root, c=-1.0)


def test_expansion_and_path_text() -> None:
    root, (a, _, a1) = _tree()
    assert [n.depth for n in (root, a, a1)] == [0, 1, 2]
    assert mcts.path_text(a1) == "Q: a a1=5"
    assert a.children == [a1] and a1.parent is a
    with pytest.raises(ValueError):
        mcts.add_child(a1, " more")
    assert [n.text for n in mcts.iter_nodes(root)] == ["Q:", " a", " a1=5", " b"]


def test_backpropagate_known_values() -> None:
    root, (a, b, a1) = _tree()
    assert mcts.backpropagate(a1, 0.8) == 3
    assert (root.visits, a.visits, a1.visits, b.visits) == (1, 1, 1, 0)
    assert (root.mean, a1.mean, b.mean) == (0.8, 0.8, 0.0)
    with pytest.raises(ValueError):
        mcts.backpropagate(a1, math.nan)
    assert a1.visits == 1


def _random_tree(rnd: Random, size: int) -> list[mcts.Node]:
    nodes = [mcts.Node()]
    for _ in range(size):
        nodes.append(mcts.add_child(rnd.choice(nodes), "s"))
    return nodes


@settings(max_examples=100, deadline=None)
@given(st.randoms(use_true_random=False), st.integers(min_value=0, max_value=30), rewards)
def test_backpropagate_updates_the_path_exactly_once(rnd: Random, size: int, r: float) -> None:
    nodes = _random_tree(rnd, size)
    for node in nodes:
        node.visits, node.value = rnd.randint(1, 5), rnd.random()
    before = {id(n): (n.visits, n.value) for n in nodes}
    leaf = rnd.choice(nodes)
    on_path = set()
    node: mcts.Node | None = leaf
    while node is not None:
        on_path.add(id(node))
        node = node.parent
    assert mcts.backpropagate(leaf, r) == len(on_path) == leaf.depth + 1
    for n in nodes:
        visits, value = before[id(n)]
        if id(n) in on_path:
            assert (n.visits, n.value) == (visits + 1, pytest.approx(value + r))
        else:
            assert (n.visits, n.value) == (visits, value)


@settings(max_examples=100, deadline=None)
@given(st.randoms(use_true_random=False), st.integers(min_value=1, max_value=30))
def test_select_child_picks_an_unvisited_child_first(rnd: Random, size: int) -> None:
    nodes = _random_tree(rnd, size)
    for node in nodes:
        node.visits, node.value = rnd.choice([0, 1, 3]), rnd.random()
    for node in nodes:
        if not node.children:
            continue
        chosen = mcts.select_child(node)
        unvisited = [c for c in node.children if c.visits == 0]
        if unvisited:
            assert chosen is unvisited[0]
        else:
            best = max(mcts.uct(c, node.visits) for c in node.children)
            assert mcts.uct(chosen, node.visits) == best


def test_best_terminal_and_terminals() -> None:
    root = mcts.Node()
    x = mcts.add_child(root, "x", terminal=True, answer="1")
    y = mcts.add_child(root, "y", terminal=True, answer=None)
    z = mcts.add_child(root, "z", terminal=True, answer="2")
    mcts.add_child(root, "w", terminal=True, answer="3")  # never rewarded: not a candidate
    assert mcts.best_terminal(root) is None
    mcts.backpropagate(x, 0.4)
    mcts.backpropagate(y, 0.99)  # best mean but no answer
    mcts.backpropagate(z, 0.7)
    mcts.backpropagate(z, 0.5)
    assert mcts.terminals(root) == [x, y, z]
    assert mcts.best_terminal(root) is z  # mean 0.6 > 0.4
