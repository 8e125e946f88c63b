"""Answer extraction, normalization, equivalence (math-verify in a worker) and clustering."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dynasor_sgl.answers import equivalence as answers
from dynasor_sgl.answers.equivalence import (
    cluster,
    equivalent,
    extract_answer,
    extract_probe_answer,
    majority_answer,
    normalize,
)
from dynasor_sgl.answers.verifier import TimedWorker


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (r"so \boxed{\frac{1}{2}} then \boxed{\frac{a}{b^{2}}}.", r"\frac{a}{b^{2}}"),
        (r"\boxed{\{1, 2\}}", r"\{1, 2\}"),
        (r"\fbox{7} is it", "7"),
        (r"The answer is \boxed{5}. Final Answer: 6", "5"),  # boxed wins
        (r"broken \boxed{12 and \boxed{13}", "13"),  # unclosed box is skipped
        ("We get 3. Final Answer: $42$", "42"),
        ("**Final Answer**: 17", "17"),
        ("The answer is 3.5. Then we stop", "3.5"),
        ("so the answer is x+1\nmore text 9", "x+1"),
        ("Answer: C", "C"),
        ("I pick (B) since 2 > 1", "B"),
        ("x = 3 so y = 1,234", "1234"),
        # Found by hand on the embedded model: filler and units used to stay in the answer
        # and split the vote; a word answer used to be no answer at all.
        ("The final answer is of 8", "8"),
        ("the answer is 8 apples", "8"),
        ("The capital of France is Paris.", "Paris"),
        ("The final answer is you want", None),
        ("The answer is: yes, it is.", "yes"),
        ("The answer is (B).", "B"),
        ("So the answer is twelve cookies.", "twelve cookies"),
        ("It is 1/2 of the cake", "1/2"),
        ("we have -2.5 left", "-2.5"),
        ("Let me think about this problem carefully first", None),
        ("Paris", "Paris"),  # a bare short answer
        ("The capital of France is Paris, which is located in the north", "Paris"),
        # From the labelled corpus (tests/data/answer_corpus.jsonl): the model's answer ends
        # where it starts the next turn or a new question; equations give their result.
        ("Sure!So, the answer is:France.\n\nUSER:The answer is:Churu.", "France"),
        (" 5 + 9 = 16\n\nQuestion: In a city, there are 100 houses.", "16"),
        (" 25 + 7 = 14\n\nHow do I make this more friendly?", "14"),
        ("[[15]]", "15"),
        (r"So the answer is \boxed{} 60", "60"),
        (r"\boxed{3 + 4 = 7}", "7"),
        ("The correct answer is: D. potato.", "D"),
        ("The sky on a clear day appears to be blue.", "blue"),
        ("The answer would be a cow, moo.", "cow"),
        ("The answer is 11\nStep 2: If the answer is 11 then you add", "11"),
        (" Yes.", "yes"),
        ("", None),
        (None, None),
    ],
)
def test_extract_answer(text: str | None, expected: str | None) -> None:
    assert extract_answer(text) == expected


def test_an_undecided_check_is_not_cached_as_different(monkeypatch: pytest.MonkeyPatch) -> None:
    """A math-verify timeout used to be cached as "different" for the life of the process."""
    answers.clear_cache()
    verdicts: list[bool | None] = [None, True]
    monkeypatch.setattr(answers, "math_verify_equal", lambda a, b: verdicts.pop(0))
    before = answers.undecided()
    assert not equivalent(r"\frac{1}{2}", "0.5")  # undecided: different for this call only
    assert answers.undecided() == before + 1
    assert equivalent(r"\frac{1}{2}", "0.5")  # asked again, and now it knows
    assert answers.undecided() == before + 1


def test_extract_probe_answer() -> None:
    assert extract_probe_answer(r"\frac{1}{2}}\n\]") == r"\frac{1}{2}"
    assert extract_probe_answer(" 42 } wait") == "42"
    assert extract_probe_answer("42 and then") is None  # never closed
    assert extract_probe_answer("}") is None
    assert extract_probe_answer(" 6 + 3 = 9 }") == "9"
    assert extract_probe_answer(r" \textbf{1. no. }}") == "no"
    assert extract_probe_answer(r"\text{Paris}}") == "Paris"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("$1,000$", "1000"),
        ("1,234,567.5", "1234567.5"),
        ("(1,2)", "(1,2)"),  # a tuple, not a thousands separator
        (r"\text{5 cm}", "5cm"),
        ("x = 3", "3"),
        (r"\dfrac{1}{2}.", r"\frac{1}{2}"),
        (r"\left( 1, 2 \right)", "(1,2)"),
        (r"30^\circ", "30"),
        (r"\(x^2\)", "x^2"),
        (None, ""),
        ("   ", ""),
    ],
)
def test_normalize(raw: str | None, expected: str) -> None:
    assert normalize(raw) == expected


def test_equivalent_fast_paths() -> None:
    assert equivalent("1,000", "1000")
    assert equivalent("0.5", ".5")
    assert equivalent("3", "3.00001")  # relative 1e-4
    assert not equivalent("3", "3.01")
    assert not equivalent("A", "B") and equivalent("(B)".strip("()"), "B")
    assert not equivalent(None, None) and not equivalent("", "") and not equivalent("1", None)


def test_equivalent_math_verify() -> None:
    assert equivalent(r"\frac{1}{2}", "0.5")
    assert equivalent("0.5", r"\frac{1}{2}")
    assert equivalent(r"\frac12", "1/2")
    assert equivalent("x^2+2x", "2x+x^2")
    assert equivalent(r"\sqrt{2}/2", r"\frac{\sqrt2}{2}")
    assert not equivalent(r"\frac{1}{3}", "0.5")
    assert not equivalent(r"\pi", "3")


def test_cluster() -> None:
    got = cluster(["1/2", "0.5", r"\frac12", None, "3", "3.0", "", " 3 "])
    assert got == [[0, 1, 2], [4, 5, 7], [3], [6]]
    assert cluster([]) == []
    assert cluster([None, None]) == [[0], [1]]
    assert cluster(["2", "1", "1", "2"]) == [[0, 3], [1, 2]]  # tie: smallest first index
    assert majority_answer(["2", "1", "1"]) == "1"
    assert majority_answer([None, ""]) is None


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(["1", "2", "2.0", "3", None, ""]), max_size=10))
def test_cluster_partitions_and_orders(values: list[str | None]) -> None:
    groups = cluster(values)
    flat = sorted(i for g in groups for i in g)
    assert flat == list(range(len(values)))
    assert [len(g) for g in groups] == sorted((len(g) for g in groups), reverse=True)
    for g in groups:
        if len(g) > 1:
            assert all(equivalent(values[g[0]], values[i]) for i in g)
        assert g == sorted(g)


def test_cache_makes_repeat_checks_cheap(monkeypatch: pytest.MonkeyPatch) -> None:
    answers.clear_cache()
    pair = (r"\frac{3}{4}", "0.75")
    assert equivalent(*pair)

    def no_second_call(a: str, b: str) -> bool:
        raise AssertionError("a cached pair went to math-verify again")

    monkeypatch.setattr(answers, "math_verify_equal", no_second_call)
    for _ in range(100):
        assert equivalent(pair[1], pair[0])  # reversed order hits the same entry
    assert answers._equivalent_normalized.cache_info().hits >= 100


def test_timed_worker_times_out_and_recovers() -> None:
    worker = TimedWorker(sum, timeout_s=0.5)
    try:
        assert worker.call(range(10)) == 45
        assert worker.call(range(10**13)) is None  # hours of work; killed after 0.5 s
        assert worker.restarts == 1
        assert worker.call(range(5)) == 10  # a fresh child serves the next call
        assert worker.restarts == 1
    finally:
        worker.close()


def test_timed_worker_reports_errors_as_none() -> None:
    worker = TimedWorker(divmod, timeout_s=5)
    try:
        assert worker.call(7, 2) == (3, 1)
        assert worker.call(1, 0) is None  # ZeroDivisionError in the child
        assert worker.call(9, 4) == (2, 1)  # and the child survives it
        assert worker.restarts == 0
    finally:
        worker.close()
    with pytest.raises(ValueError):
        TimedWorker(divmod, timeout_s=0)


@pytest.mark.parametrize(
    "text, expected",
    [
        # a description after the copula: the subject it describes is the answer
        ("Paris is the capital of France.", "Paris"),
        ("Mount Everest is the tallest mountain.", "Mount Everest"),
        (" Paris is the capital of France. Paris is located in North America.", "Paris"),
        # a value after the copula stays the answer
        ("The capital of France is Paris.", "Paris"),
        # a subject that names nothing (filler, lower case) leaves the predicate
        ("It is the city of lights", "city of lights"),
        # a colon ends a word answer, as a comma does
        ("Sure, here is the answer:Paris:The capital of France is Paris.", "Paris"),
    ],
)
def test_word_answers_read_the_named_thing_not_its_description(text: str, expected: str) -> None:
    assert extract_answer(text) == expected
