"""Program scheduling: SJF prediction, gang dispatch, FIFO, priority mapping and aging bound."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dynasor_sgl.scheduling import Scheduler, SchedulerConfig, fifo_order, gang_order


def test_config_validation() -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"policy": "lifo"}, "lifo"),
        ({"aging_rate": 0}, "aging_rate"),
        ({"work_cap": -1}, "work_cap"),
        ({"max_priority": 0}, "max_priority"),
    ]
    for kwargs, name in cases:
        with pytest.raises(ValueError, match=name):
            SchedulerConfig(**kwargs)


def test_predicted_work_uses_prior_then_own_average() -> None:
    s = Scheduler(SchedulerConfig(prior_tokens_per_step=100))
    s.add("p", now=0, remaining_knob=10)
    assert s.predicted_work("p") == 1000
    s.on_report("p", tokens=150, steps=3)  # 50 tokens per step, 7 steps left
    assert s.tokens_per_step("p") == 50 and s.predicted_work("p") == 350
    s.on_report("p", tokens=0, steps=0, remaining_knob=2)  # the policy stopped it early
    assert s.predicted_work("p") == 100
    capped = Scheduler(SchedulerConfig(work_cap=500))
    capped.add("q", now=0, remaining_knob=10**6)
    assert capped.predicted_work("q") == 500
    with pytest.raises(ValueError):
        s.on_report("p", tokens=-1)
    with pytest.raises(KeyError):
        s.predicted_work("missing")
    with pytest.raises(ValueError):
        s.add("p", now=0, remaining_knob=1)


def test_sjf_dispatches_shortest_first_as_a_gang() -> None:
    s = Scheduler()
    s.add("long", 0, remaining_knob=20)
    s.add("short", 0, remaining_knob=2)
    s.enqueue("long", ["long/0", "long/1"], now=0)
    s.enqueue("short", ["short/0", "short/1", "short/2"], now=0)
    assert s.order(0) == ["short", "long"]
    assert s.priority("short", 0) > s.priority("long", 0)
    assert s.next(0) == ("short", ["short/0", "short/1", "short/2"])
    assert s.next(0) == ("long", ["long/0", "long/1"])
    assert s.next(0) is None


def test_fifo_ignores_predicted_work() -> None:
    s = Scheduler(SchedulerConfig(policy="fifo"))
    s.add("long", 0, remaining_knob=20)
    s.add("short", 1, remaining_knob=1)
    s.enqueue("short", ["s"], now=1)
    s.enqueue("long", ["l"], now=2)
    assert s.order(2) == ["long", "short"]
    assert s.priority("long", 2) > s.priority("short", 2)
    assert s.next(2) == ("long", ["l"])


def test_priority_is_clamped_and_monotone() -> None:
    cfg = SchedulerConfig(prior_tokens_per_step=64, tokens_per_level=64, max_priority=100)
    s = Scheduler(cfg)
    for pid, knob in [("a", 0), ("b", 10), ("c", 50), ("d", 10**6)]:
        s.add(pid, 0, knob)
    prios = [s.priority(p, 0) for p in "abcd"]
    assert prios == [100, 90, 50, 0]
    s.enqueue("d", ["r"], now=0)
    assert s.priority("d", now=10**9) == 100  # aged to the front, clamped


def test_abort_and_finish() -> None:
    s = Scheduler()
    s.add("p", 0, 3)
    s.enqueue("p", ["x", "y"], now=0)
    assert s.abort("p") == ["x", "y"] and "p" not in s
    assert s.abort("p") == []
    s.add("q", 0, 3)
    s.on_finish("q")
    s.on_finish("q")  # finishing twice is harmless
    assert "q" not in s and s.next(0) is None


def test_gang_order() -> None:
    reqs = [("a", 1), ("b", 1), ("a", 2), ("c", 1), ("b", 2)]
    assert gang_order(reqs) == [("a", 1), ("a", 2), ("b", 1), ("b", 2), ("c", 1)]
    assert gang_order(reqs, ["c", "b"]) == [("c", 1), ("b", 1), ("b", 2), ("a", 1), ("a", 2)]
    assert fifo_order(reqs) == reqs


def simulate(
    aging_rate: float, knob: int, t0: int, arrivals: list[list[int]], horizon: int
) -> tuple[int | None, float, int]:
    """One dispatch per tick; short programs arrive every tick. Returns when the long program
    was first dispatched, its bound T* = t0 + W/a, and N = others ready at the first tick ≥ T*."""
    s = Scheduler(SchedulerConfig(prior_tokens_per_step=100, aging_rate=aging_rate))
    work = knob * 100.0
    t_star = t0 + work / aging_rate
    remaining: dict[str, int] = {}
    ready: set[str] = set()
    n_at_star = -1
    for t in range(horizon):
        for j, steps in enumerate(arrivals[t % len(arrivals)]):
            pid = f"s{t}.{j}"
            s.add(pid, t, steps)
            remaining[pid] = steps
        if t == t0:
            s.add("long", t, knob)
            remaining["long"] = knob
        for pid in remaining:
            if pid not in ready:
                s.enqueue(pid, [f"{pid}@{t}"], now=t)
                ready.add(pid)
        if n_at_star < 0 and t >= t_star:
            n_at_star = len(ready - {"long"})
        picked = s.next(t)
        assert picked is not None
        pid = picked[0]
        if pid == "long":
            return t, t_star, n_at_star
        ready.discard(pid)
        remaining[pid] -= 1
        s.on_report(pid, tokens=10, steps=1)
        if remaining[pid] == 0:
            del remaining[pid]
            s.on_finish(pid)
    return None, t_star, n_at_star


@settings(max_examples=60, deadline=None)
@given(
    st.floats(50, 2000),
    st.integers(1, 40),
    st.integers(0, 5),
    st.lists(st.lists(st.integers(1, 3), min_size=1, max_size=2), min_size=1, max_size=4),
)
def test_aging_bounds_the_wait(
    aging_rate: float, knob: int, t0: int, arrivals: list[list[int]]
) -> None:
    dispatched, t_star, n = simulate(aging_rate, knob, t0, arrivals, horizon=400)
    assert dispatched is not None
    # The documented bound: t0 + W/a + (N + 1)·d with d = 1 tick.
    assert dispatched <= t_star + n + 1
    assert dispatched - t0 <= math.ceil(knob * 100 / aging_rate) + n + 1


def test_without_aging_the_long_program_starves() -> None:
    dispatched, _, _ = simulate(1e-6, knob=40, t0=0, arrivals=[[1]], horizon=300)
    assert dispatched is None
