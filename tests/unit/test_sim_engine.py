"""The simulated engine on hand-computed cases: one step = 1 s + 0.5 s per decoding request
+ 0.01 s per prefill token."""

from __future__ import annotations

import dataclasses

import pytest

from dynasor_sgl.sim.engine import Engine
from dynasor_sgl.sim.profile import Profile, fit_split_step_model, fit_step_model
from dynasor_sgl.sim.queue import Finished, QueueOrder, Request

PROFILE = Profile("test", base_s=1.0, per_request_s=0.5, per_prefill_token_s=0.01)


def req(rid: str, new: int, shared: int = 0, own: int = 10, pid: str = "", **kw: int) -> Request:
    return Request(rid, pid or rid, shared, own, new, kw.pop("max_new", new), **kw)


def run_until(engine: Engine, t: float = float("inf")) -> list[Finished]:
    done: list[Finished] = []
    while engine.busy and engine.wake_at <= t:
        done += engine.on_wake(engine.wake_at)
    return done


def ends(done: list[Finished]) -> dict[str, float]:
    return {f.request.rid: round(f.at, 6) for f in done}


def test_one_request() -> None:
    e = Engine(PROFILE)
    e.submit(req("a", 4), 0.0)
    done = run_until(e)
    # prefill 10 tokens: 1.1 s, first token; 3 decode steps of 1.5 s
    assert ends(done) == {"a": 5.6}
    assert done[0].request.generated == 4 and done[0].request.prefilled == 10
    assert e.kv_used == 0 and not e.busy
    assert e.busy_s == pytest.approx(5.6)


def test_a_speed_schedule_slows_the_steps_that_start_after_it() -> None:
    e = Engine(PROFILE, speed=[(1.0, 2.0)])
    e.submit(req("a", 4), 0.0)
    # prefill at 0 (before the schedule): 1.1 s; 3 decode steps from 1.1 s at twice 1.5 s
    assert ends(run_until(e)) == {"a": 10.1}
    assert (e.slowdown(0.5), e.slowdown(1.0), e.slowdown(99.0)) == (1.0, 2.0, 2.0)


def test_each_admitted_request_costs_its_step_extra() -> None:
    e = Engine(Profile("t", 1.0, 0.5, 0.01, per_new_request_s=0.3))
    e.submit(req("a", 4), 0.0)
    e.submit(req("b", 4), 0.0)
    # the prefill step admits two: 1 + 0.2 + 2 x 0.3 = 1.8 s; then 3 steps of two (2 s)
    assert ends(run_until(e)) == {"a": 7.8, "b": 7.8}


def test_a_batch_shares_steps() -> None:
    e = Engine(PROFILE)
    e.submit(req("a", 2), 0.0)
    e.submit(req("b", 4), 0.0)
    # one prefill step of 20 tokens (1.2 s), one decode step of two (2 s): a ends; then b
    # alone for two steps of 1.5 s
    assert ends(run_until(e)) == {"a": 3.2, "b": 6.2}


def test_forks_prefill_the_shared_prompt_once() -> None:
    e = Engine(PROFILE)
    e.submit(req("prefix", 0, shared=100, own=0, pid="p"), 0.0)
    done = run_until(e)
    assert ends(done) == {"prefix": 2.0} and done[0].request.prefilled == 100
    e.submit(req("f1", 3, shared=100, own=0, pid="p"), 2.0)
    e.submit(req("f2", 3, shared=100, own=0, pid="p"), 2.0)
    done = run_until(e)
    # each fork recomputes one token (1.02 s), then two decode steps of two (4 s)
    assert ends(done) == {"f1": 7.02, "f2": 7.02}
    # SGLang counts the recomputed token as prefilled, not cached
    assert all(f.request.cached == 99 and f.request.prefilled == 1 for f in done)
    e.forget_program("p")
    assert "p" not in e.cache


def test_abort_frees_kv_at_once_and_the_waiting_request_goes_next() -> None:
    e = Engine(Profile("kv", 1.0, 0.5, 0.01, kv_tokens=30))
    e.submit(req("a", 10), 0.0)
    e.submit(req("b", 10), 0.0)  # 20 + 20 > 30: b waits
    run_until(e, 0.0)
    assert "b" in e.waiting and e.kv_used == 20
    run_until(e, 2.0)
    gone = e.abort("a", 2.0)
    assert gone is not None and gone.aborted and gone.request.generated == 1
    assert e.kv_used == 0
    # the decode step in progress (1.1 .. 2.6) ends, then b prefills (1.1 s)
    run_until(e, 2.6)
    assert e.prefilling["b"].admitted == pytest.approx(2.6)
    assert ends(run_until(e)) == {"b": pytest.approx(2.6 + 1.1 + 9 * 1.5)}


def test_abort_of_a_waiting_request() -> None:
    e = Engine(Profile("one", 1.0, 0.5, 0.01, max_running=1))
    e.submit(req("a", 3), 0.0)
    e.submit(req("b", 3), 0.0)
    run_until(e, 0.0)
    assert e.abort("b", 0.5) is not None and len(e.waiting) == 0
    assert e.abort("nope", 0.5) is None
    assert ends(run_until(e)) == {"a": 4.1}


def test_priority_order_with_one_running_slot() -> None:
    e = Engine(Profile("one", 1.0, 0.5, 0.01, max_running=1), QueueOrder.PRIORITY)
    e.submit(req("first", 2, priority=0), 0.0)
    run_until(e, 0.0)
    e.submit(req("low", 2, priority=1), 0.1)
    e.submit(req("high", 2, priority=9), 0.2)
    order = [f.request.rid for f in sorted(run_until(e), key=lambda f: f.at)]
    assert order == ["first", "high", "low"]


def test_fcfs_ignores_priority() -> None:
    e = Engine(Profile("one", 1.0, 0.5, 0.01, max_running=1), QueueOrder.FCFS)
    e.submit(req("first", 2), 0.0)
    run_until(e, 0.0)
    e.submit(req("low", 2, priority=1), 0.1)
    e.submit(req("high", 2, priority=9), 0.2)
    order = [f.request.rid for f in sorted(run_until(e), key=lambda f: f.at)]
    assert order == ["first", "low", "high"]


def test_lpm_takes_the_longest_cached_prefix_first() -> None:
    e = Engine(Profile("one", 1.0, 0.5, 0.01, max_running=1), QueueOrder.LPM)
    e.submit(req("warm", 1, shared=50, own=0, pid="p"), 0.0)
    run_until(e, 0.0)
    e.submit(req("cold", 1, shared=50, own=0, pid="q"), 0.1)
    e.submit(req("hit", 1, shared=50, own=0, pid="p"), 0.2)
    order = [f.request.rid for f in sorted(run_until(e), key=lambda f: f.at)]
    assert order == ["warm", "hit", "cold"]


def test_a_new_request_joins_at_the_next_step_boundary() -> None:
    e = Engine(dataclasses.replace(PROFILE, mixed_chunk=True))
    e.submit(req("a", 10), 0.0)  # prefill to 1.1, then 9 decode steps of 1.5 s
    run_until(e, 2.0)
    e.submit(req("b", 2), 2.0)
    assert e.wake_at == pytest.approx(2.6)  # the run of decode steps is cut
    done = run_until(e)
    # at 2.6 a has 2 tokens; it decodes beside b's prefill (1 + 0.5 + 0.1 = 1.6 s), then both
    # decode (2 s): b ends at 6.2 with a at 4 tokens; a's last 6 steps take 1.5 s each
    assert ends(done)["b"] == pytest.approx(6.2)
    assert ends(done)["a"] == pytest.approx(6.2 + 6 * 1.5)


def test_a_prefill_step_runs_alone_and_the_batch_waits() -> None:
    e = Engine(PROFILE)  # SGLang's default: no mixed chunk
    e.submit(req("a", 10), 0.0)  # prefill to 1.1, then 9 decode steps of 1.5 s
    run_until(e, 2.0)
    e.submit(req("b", 2), 2.0)
    assert e.wake_at == pytest.approx(2.6)
    done = run_until(e)
    # at 2.6 a has 2 tokens; b's prefill step alone (1 + 0.1 = 1.1 s) to 3.7, a still at 2;
    # both decode (2 s): b ends at 5.7 with a at 3 tokens; a's last 7 steps take 1.5 s each
    assert ends(done) == {"b": pytest.approx(5.7), "a": pytest.approx(5.7 + 7 * 1.5)}
    assert e.busy_s == pytest.approx(5.7 + 7 * 1.5)


def test_an_abort_during_a_prefill_step_counts_no_decode_progress() -> None:
    e = Engine(PROFILE)
    e.submit(req("a", 10), 0.0)
    run_until(e, 2.0)
    e.submit(req("b", 2), 2.0)
    run_until(e, 2.6)  # a has 2 tokens; b's prefill step runs 2.6 to 3.7
    gone = e.abort("a", 3.5)
    assert gone is not None and gone.request.generated == 2
    assert ends(run_until(e)) == {"b": pytest.approx(3.7 + 1.5)}  # b's prefill, one step alone


def test_a_warm_prefix_is_not_prefilled_again() -> None:
    e = Engine(PROFILE)
    e.submit(req("a", 1, shared=50, own=0, warm_len=30), 0.0)
    (done,) = run_until(e)
    # 20 of its 50 prompt tokens to prefill: 1 + 0.2 = 1.2 s, its one token there
    assert done.at == pytest.approx(1.2)
    assert (done.request.prefilled, done.request.cached) == (20, 30)


def test_a_prefill_step_has_its_own_fixed_cost() -> None:
    e = Engine(Profile("split", 1.0, 0.5, 0.01, prefill_base_s=2.0))
    e.submit(req("a", 3), 0.0)
    # prefill 10 tokens: 2 + 0.1 = 2.1 s; then 2 decode steps of 1 + 0.5 = 1.5 s
    assert ends(run_until(e)) == {"a": pytest.approx(5.1)}
    assert Profile("d", 1.0, 0.5, 0.01).step_s(0, 10) == pytest.approx(1.1)  # None: base_s


def test_split_fit_recovers_decode_and_prefill_apart() -> None:
    decode = [(b, 0, 0.05 + 0.007 * b) for b in (1, 4, 12, 24)]
    prefill = [(0, p, 0.07 + 0.0006 * p) for p in (64, 256, 1024)]
    got = fit_split_step_model(decode + prefill)
    assert got == pytest.approx((0.05, 0.007, 0.07, 0.0006))
    with pytest.raises(ValueError, match="prefill points"):
        fit_split_step_model(decode)


def test_fit_recovers_a_linear_model() -> None:
    points = [(b, p, 0.05 + 0.002 * b + 0.0001 * p) for b in (1, 4, 16) for p in (0, 512)]
    base, per_req, per_tok = fit_step_model(points)
    assert (base, per_req, per_tok) == pytest.approx((0.05, 0.002, 0.0001))
    assert fit_step_model([(b, 0, 0.1 + 0.01 * b) for b in (1, 2)])[2] == 0.0
