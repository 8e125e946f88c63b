"""Router admission with hand-made events: bound, SJF/FIFO order, gang, aging, moves, failures,
a limit that moves, and attained service (plas) credited at completion."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import pytest
from router_harness import restless_limiter

from dynasor_sgl.router.errors import ApiError, conflict, unavailable
from dynasor_sgl.router.pool import Worker, WorkerPool
from dynasor_sgl.router.waiting import Admission
from dynasor_sgl.scheduling import Order, SchedulerConfig
from dynasor_sgl.scheduling.admission import AdmissionQueue, Slots


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def run(test: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), 10))


async def settle() -> None:
    """Let every ready task run until it blocks again."""
    for _ in range(5):
        await asyncio.sleep(0)


def make(
    max_inflight: int = 1, workers: int = 1, **sched: Any
) -> tuple[Admission, list[Worker], Clock]:
    pool = WorkerPool(tuple(f"http://w{i}" for i in range(workers)), max_inflight)
    for w in pool.workers:
        w.healthy = True
    clock = Clock()
    return Admission(pool, SchedulerConfig(**sched), clock=clock), pool.workers, clock


class Log:
    """Starts waiters as tasks and records the order in which they were admitted."""

    def __init__(self, adm: Admission) -> None:
        self.adm = adm
        self.admitted: list[str] = []
        self.tasks: dict[str, asyncio.Task[None]] = {}

    def wait(self, worker: Worker, rid: str, pid: str | None) -> asyncio.Task[None]:
        async def go() -> None:
            await self.adm.acquire(worker, rid, pid)
            self.admitted.append(rid)

        task = self.tasks[rid] = asyncio.create_task(go())
        # Mark a failure as seen: an unretrieved one is logged from Task.__del__ at some GC,
        # which can land inside pytest's own ast.parse (a CPython 3.11.7 reentrancy crash).
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
        return task


async def expect_error(task: Awaitable[None], status: int) -> ApiError:
    with pytest.raises(ApiError) as info:
        await task
    assert info.value.status == status
    return info.value


def test_below_the_bound_requests_go_straight_through_above_it_they_wait() -> None:
    async def scenario() -> None:
        adm, (w,), _ = make(max_inflight=2)
        await adm.acquire(w, "r0", None)
        await adm.acquire(w, "r1", "p")
        assert (w.inflight, w.queued, adm.queue_length()) == (2, 0, 0)
        log = Log(adm)
        log.wait(w, "r2", None)
        await settle()
        assert log.admitted == [] and (w.inflight, w.queued, adm.queue_length()) == (2, 1, 1)
        adm.release(w)
        await settle()
        assert log.admitted == ["r2"] and (w.inflight, w.queued, adm.queue_length()) == (2, 0, 0)
        adm.release(w)
        adm.release(w)
        assert w.inflight == 0

    run(scenario)


def test_freed_slot_goes_to_the_shortest_program_first() -> None:
    async def scenario() -> None:
        adm, (w,), clock = make(max_inflight=1)
        await adm.acquire(w, "blocker", None)
        adm.ensure_program(w, "long", remaining_units=20)
        adm.ensure_program(w, "short", remaining_units=2)
        assert adm.priority(w, "short") > adm.priority(w, "long")  # type: ignore[operator]
        log = Log(adm)
        log.wait(w, "long/0", "long")  # arrives first, but is ten times longer
        await settle()
        clock.now = 1.0
        log.wait(w, "short/0", "short")
        await settle()
        adm.release(w)
        await settle()
        assert log.admitted == ["short/0"]
        adm.release(w)
        await settle()
        assert log.admitted == ["short/0", "long/0"]

    run(scenario)


def test_the_fifo_order_admits_in_arrival_order() -> None:
    async def scenario() -> None:
        adm, (w,), clock = make(max_inflight=1, order="fifo")
        await adm.acquire(w, "blocker", None)
        log = Log(adm)
        for t, pid, knob in [(0.0, "long", 20), (1.0, "short", 2), (2.0, "mid", 5)]:
            clock.now = t
            adm.ensure_program(w, pid, remaining_units=knob)
            log.wait(w, f"{pid}/0", pid)
            await settle()
        for _ in range(3):
            adm.release(w)
            await settle()
        assert log.admitted == ["long/0", "short/0", "mid/0"]

    run(scenario)


def test_a_programs_waiting_requests_go_out_together() -> None:
    async def scenario() -> None:
        adm, (w,), _ = make(max_inflight=1)
        await adm.acquire(w, "blocker", None)
        adm.ensure_program(w, "a", remaining_units=1)
        adm.ensure_program(w, "b", remaining_units=10)
        log = Log(adm)
        log.wait(w, "b/0", "b")
        for i in range(3):
            log.wait(w, f"a/{i}", "a")
        log.wait(w, "b/1", "b")
        await settle()
        assert w.queued == 5
        adm.release(w)
        await settle()
        # The whole gang of "a" goes at once, past the bound by its size; "b" keeps waiting.
        assert sorted(log.admitted) == ["a/0", "a/1", "a/2"]
        assert (w.inflight, w.queued) == (3, 2)
        for _ in range(3):
            adm.release(w)
        await settle()
        assert sorted(log.admitted[3:]) == ["b/0", "b/1"] and w.queued == 0

    run(scenario)


@pytest.mark.parametrize("aging_rate, starves", [(1.0, False), (1e-6, True)])
def test_aging_lets_a_long_program_through_while_short_ones_keep_coming(
    aging_rate: float, starves: bool
) -> None:
    """Long work 10 units, shorts 1 (256 tokens a unit before any report), aging 256 tokens/s:
    the wait bound is W/a + 2 ticks = 12 ticks."""

    async def scenario() -> None:
        # Starving needs a bound as long as the aging is slow: work is clamped to a·B.
        bound = 1e12 if starves else 300.0
        adm, (w,), clock = make(
            max_inflight=1, aging_rate=aging_rate * 256, starvation_bound_s=bound
        )
        await adm.acquire(w, "blocker", None)
        adm.ensure_program(w, "long", remaining_units=10)
        log = Log(adm)
        log.wait(w, "long/0", "long")
        await settle()
        for t in range(1, 31):
            clock.now = float(t)
            adm.ensure_program(w, f"short{t}", remaining_units=1)
            log.wait(w, f"short{t}/0", f"short{t}")
            await settle()
            adm.release(w)  # the holder finishes; one waiter gets the slot
            await settle()
        assert log.admitted[0] == "short1/0"  # shorts do go first at the start
        if starves:
            assert "long/0" not in log.admitted
        else:
            assert "long/0" in log.admitted[:12]
        for task in log.tasks.values():
            task.cancel()

    run(scenario)


def test_fail_program_ends_only_that_programs_waiters_with_the_error() -> None:
    async def scenario() -> None:
        adm, (w,), _ = make(max_inflight=1)
        await adm.acquire(w, "blocker", None)
        log = Log(adm)
        a0, a1 = log.wait(w, "a/0", "a"), log.wait(w, "a/1", "a")
        log.wait(w, "b/0", "b")
        await settle()
        assert adm.fail_program("a", conflict("program a was stopped")) == 2
        err = await expect_error(a0, 409)
        assert "stopped" in err.message
        await expect_error(a1, 409)
        assert (w.queued, adm.queue_length()) == (1, 1)
        assert adm.fail_program("a", conflict("again")) == 0
        adm.release(w)
        await settle()
        assert log.admitted == ["b/0"] and (w.inflight, w.queued) == (1, 0)

    run(scenario)


def test_fail_worker_ends_the_waiters_of_that_worker_only() -> None:
    async def scenario() -> None:
        adm, (w0, w1), _ = make(max_inflight=1, workers=2)
        await adm.acquire(w0, "hold0", None)
        await adm.acquire(w1, "hold1", None)
        log = Log(adm)
        on0 = [log.wait(w0, "x/0", "x"), log.wait(w0, "plain", None)]
        log.wait(w1, "y/0", "y")
        await settle()
        assert adm.fail_worker(w0, unavailable("worker 0 is down")) == 2
        for task in on0:
            await expect_error(task, 503)
        assert (w0.queued, w1.queued) == (0, 1)
        adm.release(w1)
        await settle()
        assert log.admitted == ["y/0"]

    run(scenario)


def test_a_cancelled_waiter_does_not_leak_a_slot() -> None:
    async def scenario() -> None:
        adm, (w,), _ = make(max_inflight=1)
        await adm.acquire(w, "blocker", "p")
        log = Log(adm)
        gone = log.wait(w, "gone", "p")
        await settle()
        gone.cancel()
        await settle()
        assert gone.cancelled() and (w.queued, adm.queue_length()) == (0, 0)
        adm.release(w)
        assert w.inflight == 0
        await asyncio.wait_for(adm.acquire(w, "next", None), 1)  # straight through
        assert w.inflight == 1

    run(scenario)


# Regression (fixed): a waiter whose future was already failed or
# cancelled is popped from `_waiting` without `worker.queued -= 1`, and its own `finally`
# then finds nothing to pop, so `queued` stays 1 too high for ever. With `queued > 0` every
# later acquire queues, and on an idle worker nothing ever releases it: requests hang.
@pytest.mark.parametrize("how", ["fail_program", "cancel"])
def test_a_failed_waiter_dispatched_before_it_resumes_leaves_no_phantom_queue(how: str) -> None:
    async def scenario() -> None:
        adm, (w,), _ = make(max_inflight=1)
        await adm.acquire(w, "blocker", None)
        log = Log(adm)
        doomed = log.wait(w, "a/0", "a")
        log.wait(w, "b/0", "b")
        await settle()
        if how == "fail_program":
            adm.fail_program("a", conflict("program a was stopped"))
        else:
            doomed.cancel()
        adm.release(w)  # in the same loop turn: "a/0" has not resumed yet
        await settle()
        assert log.admitted == ["b/0"]
        assert w.queued == 0, "a waiter that is gone still counts as queued"
        adm.release(w)  # "b/0" done: the worker is idle
        await asyncio.wait_for(adm.acquire(w, "c/0", None), 1)

    run(scenario)


# Regression (fixed): a waiter that is granted its slot (future resolved
# by `_dispatch`, `inflight += 1`) and cancelled before it resumes raises CancelledError out
# of `acquire`; the caller never got the slot, so it never releases it: `inflight` leaks.
def test_a_waiter_cancelled_right_after_its_grant_gives_the_slot_back() -> None:
    async def scenario() -> None:
        adm, (w,), _ = make(max_inflight=1)
        await adm.acquire(w, "blocker", None)
        log = Log(adm)
        task = log.wait(w, "late", "p")
        await settle()
        adm.release(w)  # grants "late"
        task.cancel()  # ... whose client goes away in the same loop turn
        await settle()
        assert task.cancelled()
        assert w.inflight == 0, "the granted slot of a cancelled waiter was never released"

    run(scenario)


def test_a_moved_program_keeps_its_history_and_takes_its_waiting_requests() -> None:
    async def scenario() -> None:
        adm, (w0, w1), clock = make(max_inflight=1, workers=2)
        await adm.acquire(w0, "hold0", None)
        await adm.acquire(w1, "hold1", None)
        adm.ensure_program(w0, "p", remaining_units=10)
        adm.on_report("p", tokens=50, units=5, remaining_units=5)  # 10 tokens a unit
        log = Log(adm)
        log.wait(w0, "p/0", "p")
        log.wait(w0, "p/1", "p")
        await settle()
        assert (w0.queued, w1.queued) == (2, 0)
        clock.now = 3.0
        adm.ensure_program(w1, "p", remaining_units=5)  # the pool moved it to worker 1
        assert (w0.queued, w1.queued) == (0, 2)
        moved = adm.queue.scheduler(w1.index)
        assert "p" not in adm.queue.scheduler(w0.index) and "p" in moved
        assert moved.tokens_per_unit("p") == 10 and moved.predicted_work("p") == 50
        adm.release(w0)  # worker 0's slot frees: nothing of p waits there any more
        await settle()
        assert log.admitted == []
        adm.release(w1)
        await settle()
        assert sorted(log.admitted) == ["p/0", "p/1"] and w1.inflight == 2
        adm.forget_program("p")
        assert adm.priority(w1, "p") is None

    run(scenario)


def test_reports_teach_sjf_the_programs_own_tokens_per_unit() -> None:
    from dynasor_sgl.policy.machine import PolicyConfig, Report
    from dynasor_sgl.router.config import RouterConfig
    from dynasor_sgl.router.core import Router

    async def scenario() -> None:
        router = Router(RouterConfig(worker_urls=("http://127.0.0.1:9",)))
        prog = router.programs.register(PolicyConfig.for_algorithm("sc"), "p")
        worker = router.pool.workers[0]
        router.admission.ensure_program(worker, "p", prog.config.cap)
        sched = router.admission.queue.scheduler(worker.index)
        prior = sched.tokens_per_unit("p")
        prog.completion_tokens = 500  # five samples of 100 tokens each
        split = {str(i): a for i, a in enumerate(["1", "2", "3", "4", "5"])}  # no stop
        decision, _ = await router.report(prog, Report(used=5, answers=split))
        assert str(decision.action) != "stop"
        assert sched.tokens_per_unit("p") == 100 != prior
        assert sched.predicted_work("p") == 100 * (prog.config.cap - 5)
        await router.close()

    asyncio.run(scenario())


def test_a_limit_that_shrinks_below_the_requests_in_flight_drops_and_leaks_nothing() -> None:
    """Completions move the limit 4 -> 8 (slow start's doubling), back to 4 (it bought
    nothing), then down to 2 while 6 requests hold slots: nothing new goes until fewer than 2
    are left, and then the last waiting request is granted, its slot counted once."""
    q = AdmissionQueue([Slots(0)], 4, SchedulerConfig(order=Order.FCFS), restless_limiter(4, 8))
    assert q.limit(0) == 4
    assert all(q.submit(0, f"r{i}", None, 0.0) is not None for i in range(4))
    assert [q.submit(0, f"w{i}", None, 0.0) for i in range(6)] == [None] * 6
    q.limiter_of(0).on_complete(0.0, 1.0, 0, 4, 6)  # the first completion starts its clock
    grants = q.release(0, 1.0, 1.0, 100)
    assert q.limit(0) == 8  # probing up: five waiters go
    assert [g.request_id for g in grants] == ["w0", "w1", "w2", "w3", "w4"]
    assert q.release(0, 2.0, 1.0, 100) == []
    assert q.limit(0) == 4  # 100 tokens/s as before: the probe did not pay, back to 4
    assert q.release(0, 3.0, 1.0, 100) == []  # steady at 4: it probes down at once
    assert q.limit(0) == 2
    assert (q.workers[0].inflight, q.workers[0].queued) == (6, 1)
    assert all(q.release(0, 3.5) == [] for _ in range(4))  # failures: no window
    assert (q.limit(0), q.workers[0].inflight) == (2, 2)
    assert [g.request_id for g in q.release(0, 4.5)] == ["w5"]
    assert (q.workers[0].inflight, q.workers[0].queued, q.queue_length()) == (2, 0, 0)


def test_a_fixed_limit_ignores_completions() -> None:
    q = AdmissionQueue([Slots(0)], 3, SchedulerConfig())
    for t in range(1, 50):
        q.submit(0, f"r{t}", None, float(t))
        q.release(0, float(t), 0.5, 10 * t)
    assert q.limit(0) == 3 and q.limiter.mode == "fixed"


def test_completions_credit_their_program_and_plas_orders_by_it() -> None:
    """Admission feeds what completed requests generated to the program's attained service:
    under plas the program served least gets the freed slot."""
    q = AdmissionQueue([Slots(0)], 1, SchedulerConfig(order=Order.PLAS))
    for pid in ("a", "b"):
        q.ensure_program(0, pid, 0.0, 8, "sc")
    assert q.submit(0, "a1", "a", 0.0) is not None
    assert q.submit(0, "a2", "a", 0.0) is None and q.submit(0, "b1", "b", 0.0) is None
    grants = q.release(0, 1.0, 1.0, 256, program_id="a")  # a has been served 256 tokens
    assert [g.request_id for g in grants] == ["b1"]
    assert q.scheduler(0).score("a", 1.0) > q.scheduler(0).score("b", 1.0)
