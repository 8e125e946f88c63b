"""Clustering a program's answers makes a bounded number of math-verify checks: equal normalized
text and plain numbers are grouped in-process, and only the largest classes go to the one
verifier process that every program's decisions share. math-verify is replaced here by a
table of which normalized forms are equal, counted per call."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dynasor_sgl.answers import equivalence
from dynasor_sgl.answers.equivalence import (
    MAX_ANSWER_CHARS,
    MAX_VERIFIED_CLASSES,
    cluster,
    normalize,
)
from dynasor_sgl.answers.verifier import FifoLock

VALUE = {r"\frac{1}{2}": "0.5", "1+x": "x+1", "x2": "2x"}  # a form -> its value's form


def value(form: str) -> object:
    form = VALUE.get(form, form)
    return float(form) if equivalence._as_number(form) is not None else form


class Verifier:
    """A stand-in for `math_verify_equal`: forms of one value are equal, counted per call."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, a: str, b: str) -> bool:
        self.calls += 1
        return value(a) == value(b)


@pytest.fixture
def verifier(monkeypatch: pytest.MonkeyPatch) -> Iterator[Verifier]:
    fake = Verifier()
    monkeypatch.setattr(equivalence, "math_verify_equal", fake)
    equivalence.clear_cache()
    yield fake
    equivalence.clear_cache()


def pairwise(answers: Sequence[str | None]) -> list[list[int]]:
    """Clustering as it was: every distinct normalized form against the first member of every
    earlier class, whatever their number (the reference for few classes)."""
    groups: list[tuple[str, list[int]]] = []
    singles: list[list[int]] = []
    for i, answer in enumerate(answers):
        key = normalize(answer)
        if not key:
            singles.append([i])
            continue
        for rep, group in groups:
            if equivalence._equivalent_keys(rep, key):
                group.append(i)
                break
        else:
            groups.append((key, [i]))
    result = [sorted(g) for _, g in groups] + singles
    return sorted(result, key=lambda g: (-len(g), g[0]))


def test_two_hundred_distinct_answers_take_a_bounded_number_of_checks(verifier: Verifier) -> None:
    answers = [f"x^{i}+{i}" for i in range(200)]
    assert cluster(answers) == [[i] for i in range(200)]
    assert verifier.calls <= MAX_VERIFIED_CLASSES * (MAX_VERIFIED_CLASSES - 1) // 2


def test_plain_numbers_are_grouped_without_math_verify(verifier: Verifier) -> None:
    answers = [str(i % 150) + (".0" if i % 3 == 0 else "") for i in range(450)]
    groups = cluster(answers)
    assert len(groups) == 150
    assert all(len({float(answers[i]) for i in g}) == 1 for g in groups)
    assert verifier.calls == 0


def test_the_largest_classes_still_merge_past_many_rare_answers(verifier: Verifier) -> None:
    rare = [f"y^{i}" for i in range(100)]
    answers = rare[:50] + [r"\frac{1}{2}"] * 3 + rare[50:] + ["0.5"] * 2 + ["x+1", "1+x"] * 2
    groups = cluster(answers)
    assert groups[0] == [50, 51, 52, 103, 104]
    assert groups[1] == [105, 106, 107, 108]
    assert len(groups) == 2 + 100
    assert verifier.calls <= MAX_VERIFIED_CLASSES * (MAX_VERIFIED_CLASSES - 1) // 2


FORMS = [r"\frac{1}{2}", "0.5", "0.50", "x+1", "1+x", "2x", "x2", "A", "B", "7", "7.0", None, ""]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(FORMS), max_size=14))
def test_few_classes_cluster_as_every_pair_compared(answers: list[str | None]) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(equivalence, "math_verify_equal", Verifier())
        equivalence.clear_cache()
        assert cluster(answers) == pairwise(answers)
    equivalence.clear_cache()


def test_an_answer_past_the_size_bound_is_text_only_and_not_cached(verifier: Verifier) -> None:
    long = "x+" * MAX_ANSWER_CHARS + "1"
    cached = equivalence._normalize.cache_info().currsize
    assert normalize(long) == long
    assert equivalence._normalize.cache_info().currsize == cached
    assert cluster([long, long + "+0", long, "1+x"]) == [[0, 2], [1], [3]]
    assert verifier.calls == 0
    assert equivalence._equivalent_normalized.cache_info().currsize == 0


def test_the_verifier_serves_waiting_calls_in_the_order_they_came() -> None:
    """One program's run of checks releases and asks again at once; another program's call,
    asked in between, goes first (`threading.Lock` may hand the lock back to the runner)."""
    lock = FifoLock()
    order: list[str] = []
    lock.__enter__()  # the runner's first check
    other = threading.Thread(
        target=lambda: (lock.__enter__(), order.append("other"), lock.__exit__())
    )
    other.start()
    while lock.asked < 2:  # observe the other call waiting, not a sleep
        time.sleep(0.001)
    lock.__exit__()
    with lock:  # the runner's next check, asked after the other call
        order.append("runner")
    other.join()
    assert order == ["other", "runner"]


def test_a_waiter_that_goes_away_does_not_block_the_calls_after_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lock = FifoLock()
    wait_for = lock._cond.wait_for

    def interrupted(predicate: Any) -> Any:
        if threading.current_thread().name == "gone":
            raise KeyboardInterrupt
        return wait_for(predicate)

    monkeypatch.setattr(lock._cond, "wait_for", interrupted)
    raised: list[BaseException] = []

    def go_away() -> None:
        try:
            lock.__enter__()
        except KeyboardInterrupt as exc:
            raised.append(exc)

    with lock:
        gone = threading.Thread(target=go_away, name="gone")
        gone.start()
        gone.join()
    assert raised
    got = threading.Event()
    after = threading.Thread(
        target=lambda: (lock.__enter__(), got.set(), lock.__exit__()), daemon=True
    )
    after.start()
    after.join(timeout=10)
    assert got.is_set() and lock.asked == 3
