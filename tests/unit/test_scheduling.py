"""Program scheduling on a virtual clock: SJF with per-algorithm priors, gang, FIFO, FCFS,
least-slack deadlines, PLAS (least attained service), aging that reaches the priority sent,
moves, and the starvation bound."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dynasor_sgl.scheduling import (
    PRIOR_TOKENS_PER_UNIT,
    Dispatch,
    Order,
    Scheduler,
    SchedulerConfig,
)


def test_config_validation() -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"order": "lifo"}, "lifo"),
        ({"aging_rate": 0}, "aging_rate"),
        ({"starvation_bound_s": -1}, "starvation_bound_s"),
        ({"starvation_bound_s": math.inf}, "starvation_bound_s"),
        ({"prior_weight": 0}, "prior_weight"),
        ({"max_priority": 0}, "max_priority"),
    ]
    for kwargs, name in cases:
        with pytest.raises(ValueError, match=name):
            SchedulerConfig(**kwargs)
    cfg = SchedulerConfig(order="fifo", aging_rate=10, starvation_bound_s=60)  # type: ignore[arg-type]
    assert cfg.order is Order.FIFO and cfg.work_cap == 600


def test_predicted_work_uses_the_algorithm_prior_then_its_own_average() -> None:
    s = Scheduler()
    s.add("sc", now=0, remaining_units=10, algorithm="sc")
    s.add("cot", now=0, remaining_units=2048, algorithm="cot")
    assert s.predicted_work("sc") == 10 * PRIOR_TOKENS_PER_UNIT["sc"]
    # A CoT unit is a token: 2048 tokens, not 2048 × 256 clamped to the cap.
    assert s.predicted_work("cot") == 2048
    s.on_report("sc", tokens=150, units=3)  # 50 tokens a unit, 7 units left
    assert s.tokens_per_unit("sc") == 50 and s.predicted_work("sc") == 350
    s.on_report("sc", tokens=0, units=0, remaining_units=2)  # the policy stopped it early
    assert s.predicted_work("sc") == 100
    capped = Scheduler(SchedulerConfig(aging_rate=1, starvation_bound_s=500))
    capped.add("q", now=0, remaining_units=10**6)
    assert capped.predicted_work("q") == 500
    with pytest.raises(ValueError):
        s.on_report("sc", tokens=-1)
    with pytest.raises(KeyError):
        s.predicted_work("missing")
    with pytest.raises(ValueError):
        s.add("sc", now=0, remaining_units=1)
    s.on_report("gone", tokens=5)  # a report racing with the end of its program is ignored


def test_new_programs_learn_the_algorithms_running_average() -> None:
    s = Scheduler(SchedulerConfig(prior_weight=0.5))
    s.add("a", 0, 10, algorithm="sc")
    s.on_report("a", tokens=64, units=4)  # 16 a unit, against the 256 prior
    s.add("b", 1, 10, algorithm="sc")
    assert s.tokens_per_unit("b") == pytest.approx(0.5 * 256 + 0.5 * 16)
    s.add("plain", 1, 1, algorithm="plain", tokens_per_unit=8)
    assert s.predicted_work("plain") == 8


def test_sjf_dispatches_shortest_first_as_a_gang() -> None:
    s = Scheduler()
    s.add("long", 0, remaining_units=20)
    s.add("short", 0, remaining_units=2)
    s.enqueue("long", ["long/0", "long/1"], now=0)
    s.enqueue("short", ["short/0", "short/1", "short/2"], now=0)
    assert s.order(0) == ["short", "long"]
    assert s.priority("short", 0) > s.priority("long", 0)
    first = s.next(0)
    assert first is not None
    assert (first.program_id, first.request_ids) == ("short", ["short/0", "short/1", "short/2"])
    second = s.next(0)
    assert second is not None and second.request_ids == ["long/0", "long/1"]
    assert s.next(0) is None


def test_aging_reaches_the_priority_sent() -> None:
    """The priority a gang goes out with includes its wait (it used to be computed after the
    wait was reset, so aging never reached SGLang)."""
    cfg = SchedulerConfig(aging_rate=64, tokens_per_level=64, max_priority=1000)
    s = Scheduler(cfg)
    s.add("p", 0, remaining_units=10)  # 2560 tokens: level 1000 - 40
    s.enqueue("p", ["r"], now=0)
    assert s.priority("p", 0) == 960
    sent = s.next(now=30)  # 30 s waited: 30 × 64 tokens forgiven = 30 levels
    assert sent == Dispatch("p", ["r"], 990)


def test_fifo_ignores_predicted_work_and_fcfs_ignores_programs() -> None:
    s = Scheduler(SchedulerConfig(order=Order.FIFO))
    s.add("long", 0, remaining_units=20)
    s.add("short", 1, remaining_units=1)
    s.enqueue("short", ["s"], now=1)
    s.enqueue("long", ["l"], now=2)
    assert s.order(2) == ["long", "short"]
    assert s.priority("long", 2) == s.priority("short", 2) == 500
    d = s.next(2)
    assert d is not None and d.request_ids == ["l"]

    f = Scheduler(SchedulerConfig(order=Order.FCFS))
    f.add("a", 0, 5)
    f.add("b", 0, 5)
    f.enqueue("a", ["a0"], now=0)
    f.enqueue("b", ["b0"], now=1)
    f.enqueue("a", ["a1"], now=2)
    got = []
    while (d := f.next(3)) is not None:
        got += d.request_ids
    assert got == ["a0", "b0", "a1"]  # request by request, in the order they became ready


def test_deadline_order_is_least_slack_first_and_late_programs_go_last() -> None:
    s = Scheduler(SchedulerConfig(order=Order.DEADLINE, prior_token_rate=100))
    # predicted time = units × 256 tokens / 100 tokens/s
    s.add("relaxed", 0, remaining_units=1, deadline_at=100.0)  # slack ~97 s
    s.add("tight", 0, remaining_units=1, deadline_at=10.0)  # slack ~7 s
    s.add("hopeless", 0, remaining_units=10, deadline_at=5.0)  # needs 25.6 s: late
    s.add("none", 0, remaining_units=1)  # no deadline: due after the starvation bound
    for pid in ("relaxed", "tight", "hopeless", "none"):
        s.enqueue(pid, [f"{pid}/0"], now=0)
    assert s.order(0) == ["tight", "relaxed", "none", "hopeless"]
    got = []
    while (d := s.next(0)) is not None:
        got.append(d.program_id)
    assert got == ["tight", "relaxed", "none", "hopeless"]
    assert s.priority("tight", 0) > s.priority("relaxed", 0)


def test_deadline_pace_is_learned_from_reports() -> None:
    s = Scheduler(SchedulerConfig(order=Order.DEADLINE))
    s.add("p", 10, remaining_units=20, deadline_at=100.0)
    s.on_report("p", tokens=500, units=5, remaining_units=15, now=20)  # 2 s a unit
    assert s.predicted_time("p") == 30 and s.predicted_time("p", units=5) == 10


def test_detach_attach_and_withdraw() -> None:
    a, b = Scheduler(), Scheduler()
    a.add("p", 0, 10)
    a.on_report("p", tokens=40, units=2)
    a.enqueue("p", ["x", "y", "z"], now=1)
    assert a.withdraw("p", "y") and not a.withdraw("p", "nope") and not a.withdraw("q", "x")
    state = a.detach("p")
    assert state is not None and "p" not in a and a.next(5) is None
    b.attach(state)
    assert b.tokens_per_unit("p") == 20 and b.pending("p") == ["x", "z"]
    d = b.next(5)
    assert d is not None and d.request_ids == ["x", "z"]
    with pytest.raises(ValueError):
        b.attach(state)


def test_abort_and_finish() -> None:
    s = Scheduler()
    s.add("p", 0, 3)
    s.enqueue("p", ["x", "y"], now=0)
    assert s.abort("p") == ["x", "y"] and "p" not in s
    assert s.abort("p") == []
    s.add("q", 0, 3)
    s.enqueue("q", ["r"], now=0)
    s.on_finish("q")
    s.on_finish("q")  # finishing twice is harmless
    assert "q" not in s and s.next(0) is None and len(s) == 0


events = st.lists(
    st.tuples(
        st.sampled_from(["add", "enqueue", "report", "serve", "next", "finish"]),
        st.integers(0, 5),
        st.integers(0, 30),
    ),
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(list(Order)), events)
def test_the_heap_dispatches_what_a_full_sort_would(
    policy: Order, script: list[tuple[str, int, int]]
) -> None:
    """The O(log P) heap agrees with sorting every ready program at each dispatch."""
    s = Scheduler(SchedulerConfig(order=policy, prior_token_rate=64))
    now, seq = 0.0, 0
    for op, who, n in script:
        pid = f"p{who}"
        now += 0.5
        if op == "add" and pid not in s:
            s.add(pid, now, n, deadline_at=now + n if who % 2 else None)
        elif pid not in s:
            continue
        elif op == "enqueue":
            s.enqueue(pid, [f"{pid}.{seq}"], now)
            seq += 1
        elif op == "report":
            s.on_report(pid, tokens=n * 7, units=1 + n % 3, now=now)
        elif op == "serve":
            s.on_served(pid, n * 11, now)
        elif op == "finish":
            s.on_finish(pid)
        elif op == "next":
            expected = s.order(now)
            d = s.next(now)
            assert (d is None) == (not expected)
            if d is not None:
                assert d.program_id == expected[0]


def simulate(
    policy: Order,
    bound_s: float,
    knob: int,
    t0: int,
    arrivals: list[list[int]],
    horizon: int,
    aging: float = 256,
    served: int = 0,
) -> tuple[int | None, int]:
    """One dispatch per tick; short programs (with tight deadlines under `deadline`) arrive
    every tick. Returns when the long program was dispatched and N = the others ready at
    t0 + bound. `served`: tokens the long program has been served already (plas); each
    dispatch of a short one serves it 10."""
    s = Scheduler(SchedulerConfig(order=policy, aging_rate=aging, starvation_bound_s=bound_s))
    remaining: dict[str, int] = {}
    ready: set[str] = set()
    n_at_bound = -1
    for t in range(horizon):
        for j, units in enumerate(arrivals[t % len(arrivals)]):
            pid = f"s{t}.{j}"
            s.add(pid, t, units, deadline_at=t + 10.0 * units)
            remaining[pid] = units
        if t == t0:
            s.add("long", t, knob)
            s.on_served("long", served, t)
            remaining["long"] = knob
        for pid in remaining:
            if pid not in ready:
                s.enqueue(pid, [f"{pid}@{t}"], now=t)
                ready.add(pid)
        if n_at_bound < 0 and t >= t0 + bound_s:
            n_at_bound = len(ready - {"long"})
        picked = s.next(t)
        assert picked is not None
        pid = picked.program_id
        if pid == "long":
            return t, n_at_bound
        ready.discard(pid)
        remaining[pid] -= 1
        s.on_report(pid, tokens=10, units=1, now=t)
        s.on_served(pid, 10, t)
        if remaining[pid] == 0:
            del remaining[pid]
            s.on_finish(pid)
    return None, n_at_bound


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from([Order.SJF, Order.DEADLINE, Order.PLAS]),
    st.floats(1, 40),
    st.integers(1, 400),
    st.integers(0, 5),
    st.lists(st.lists(st.integers(1, 3), min_size=1, max_size=2), min_size=1, max_size=4),
)
def test_no_program_waits_past_the_stated_bound(
    policy: Order, bound_s: float, knob: int, t0: int, arrivals: list[list[int]]
) -> None:
    """The documented bound: dispatched by t0 + B + (N + 1)·d, with d = 1 tick (under plas
    the long program has been served far more than any other)."""
    served = 10**9 if policy is Order.PLAS else 0
    dispatched, n = simulate(policy, bound_s, knob, t0, arrivals, horizon=400, served=served)
    assert dispatched is not None
    assert dispatched <= t0 + bound_s + n + 1


def test_without_aging_and_bound_the_long_program_starves_under_sjf() -> None:
    dispatched, _ = simulate(
        Order.SJF, 1e12, knob=40, t0=0, arrivals=[[1]], horizon=300, aging=1e-6
    )
    assert dispatched is None


def test_without_aging_and_bound_the_most_served_program_starves_under_plas() -> None:
    dispatched, _ = simulate(
        Order.PLAS, 1e12, knob=40, t0=0, arrivals=[[1]], horizon=300, aging=1e-6, served=10**6
    )
    assert dispatched is None


def test_plas_serves_the_least_served_program_first_as_a_gang() -> None:
    s = Scheduler(SchedulerConfig(order=Order.PLAS))
    for pid, served in (("a", 500), ("b", 100), ("c", 0)):
        s.add(pid, now=0, remaining_units=4)
        s.on_served(pid, served, now=0)
        s.enqueue(pid, [f"{pid}1", f"{pid}2"], now=1)
    assert s.order(1) == ["c", "b", "a"]
    priorities = [s.priority(pid, 1) for pid in ("c", "b", "a")]
    assert priorities == sorted(priorities, reverse=True) and priorities[0] > priorities[2]
    assert s.next(1) == Dispatch("c", ["c1", "c2"], priorities[0])  # the whole gang
    s.on_served("b", 1000, now=2)  # b's requests completed meanwhile: now served most
    assert [d.program_id for d in (s.next(2), s.next(2))] == ["a", "b"]  # type: ignore[union-attr]


def test_plas_needs_no_prediction() -> None:
    """What a program has left (sjf's key) does not move it under plas; what it got does."""
    s = Scheduler(SchedulerConfig(order=Order.PLAS))
    s.add("huge", now=0, remaining_units=10**6)
    s.add("tiny", now=0, remaining_units=1)
    s.on_served("tiny", 300, now=0)
    s.on_report("huge", tokens=10, units=1, remaining_units=10**6, now=0)
    for pid in ("tiny", "huge"):
        s.enqueue(pid, [pid], now=0)
    assert s.order(0) == ["huge", "tiny"]
    sjf = Scheduler(SchedulerConfig(order=Order.SJF))
    for pid, units in (("huge", 10**6), ("tiny", 1)):
        sjf.add(pid, now=0, remaining_units=units)
        sjf.enqueue(pid, [pid], now=0)
    assert sjf.order(0) == ["tiny", "huge"]
    s.on_served("gone", 5)  # a completion racing with the end of its program is ignored
    with pytest.raises(ValueError, match="tokens"):
        s.on_served("tiny", -1)
