"""Worker pool: pinning to the least-loaded healthy worker, spill under overload, health."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from fake_worker import FakeWorker

from dynasor_sgl.router.pool import Worker, WorkerPool


def pool(n: int = 3, bound: int = 4) -> tuple[WorkerPool, list[Worker]]:
    p = WorkerPool(tuple(f"http://w{i}/" for i in range(n)), bound)
    for w in p.workers:
        w.healthy = True
    return p, p.workers


def test_urls_lose_their_trailing_slash_and_workers_start_down() -> None:
    p = WorkerPool(("http://a:1/", "http://b:2"), 4)
    assert [w.url for w in p.workers] == ["http://a:1", "http://b:2"]
    assert p.healthy() == [] and p.least_loaded() is None and p.worker_for("p") is None


def test_a_new_program_is_pinned_to_the_least_loaded_healthy_worker() -> None:
    p, (w0, w1, w2) = pool()
    w0.inflight, w1.healthy, w2.inflight = 3, False, 1
    assert p.worker_for("prog") is w2
    assert p.pinned("prog") is w2 and w2.programs == {"prog"}
    assert p.worker_for(None) is w2  # plain requests go to the least loaded, unpinned
    assert p.pinned("other") is None


def test_a_pinned_program_stays_while_its_worker_is_not_overloaded() -> None:
    p, (w0, w1, _) = pool()
    assert p.worker_for("prog") is w0
    w0.inflight = 3  # busier than the others, but below the bound
    assert p.worker_for("prog") is w0
    w0.inflight = 4  # at the bound, nothing queued: not overloaded
    assert p.worker_for("prog") is w0
    w0.inflight, w0.queued, w1.inflight = 4, 2, 2  # overloaded, but no one else has room
    w1.queued = 1
    p.workers[2].inflight = 3
    assert p.worker_for("prog") is w0
    assert p.pinned("prog") is w0


def test_an_overloaded_pinned_worker_spills_the_program_to_one_with_room() -> None:
    p, (w0, w1, w2) = pool()
    assert p.worker_for("prog") is w0
    w0.inflight, w0.queued = 4, 3
    w1.inflight = 3
    assert p.worker_for("prog") is w2
    assert p.pinned("prog") is w2
    assert "prog" not in w0.programs and w2.programs == {"prog"}
    w0.inflight, w0.queued = 0, 0
    assert p.worker_for("prog") is w2  # it stays on its new worker


def test_a_program_never_goes_to_an_unhealthy_worker() -> None:
    p, (w0, w1, w2) = pool()
    assert p.worker_for("prog") is w0
    w0.inflight, w0.queued = 4, 5
    w1.healthy = w2.healthy = False  # idle, but down
    for _ in range(3):
        assert p.worker_for("prog") is w0
    p.mark_down(w0, "gone")
    assert p.worker_for("prog") is None  # nobody is up: no worker, and no pin to a dead one
    p.mark_up(w1)
    assert p.worker_for("prog") is w1 and p.pinned("prog") is w1
    assert w0.programs == set() and w1.programs == {"prog"}


def test_a_pinned_worker_that_goes_down_moves_the_program() -> None:
    p, (w0, w1, w2) = pool()
    w1.inflight, w2.inflight = 1, 2
    assert p.worker_for("prog") is w0
    p.mark_down(w0, "connection refused")
    assert p.worker_for("prog") is w1
    p.mark_up(w0)
    assert p.worker_for("prog") is w1  # taken back for new programs, but no flapping


def test_unpin_forgets_the_program() -> None:
    p, (w0, w1, _) = pool()
    assert p.worker_for("prog") is w0
    p.unpin("prog")
    p.unpin("prog")  # twice is harmless
    assert p.pinned("prog") is None and w0.programs == set()
    w0.inflight = 2
    assert p.worker_for("prog") is w1


def test_mark_down_and_up_track_health_and_failures() -> None:
    p, (w0, _, _) = pool()
    p.mark_down(w0, "x")
    p.mark_down(w0, "y")
    assert not w0.healthy and w0.failures == 2 and w0 not in p.healthy()
    p.mark_up(w0)
    assert w0.healthy and w0 in p.healthy()
    assert w0.load == 0
    w0.inflight, w0.queued = 2, 3
    assert w0.load == 5


# Regression (fixed): "room" is `load < max_inflight // 2`, which is
# `load < 0` when max_inflight_per_worker is 1: a program never spills, even to an idle worker.
def test_with_a_bound_of_one_an_overloaded_program_spills_to_an_idle_worker() -> None:
    p, (w0, w1) = pool(n=2, bound=1)
    assert p.worker_for("prog") is w0
    w0.inflight, w0.queued = 1, 3
    assert p.worker_for("prog") is w1


def test_health_check_marks_workers_up_and_down() -> None:
    async def scenario() -> None:
        fake = FakeWorker()
        await fake.start()
        p = WorkerPool((fake.url, "http://127.0.0.1:1"), 4)
        async with aiohttp.ClientSession() as session:
            await p.check_all(session)
            up, dead = p.workers
            assert up.healthy and not dead.healthy and dead.failures == 1
            assert up.last_check > 0
            fake.healthy = False  # /health answers 503
            assert await p.check(session, up) is False
            assert not up.healthy
            fake.healthy = True
            assert await p.check(session, up) is True
            await fake.stop()
            assert await p.check(session, up) is False
            assert up.failures == 2

    asyncio.run(asyncio.wait_for(scenario(), 20))


@pytest.mark.parametrize("bound", [2, 8])
def test_spill_needs_a_queue_not_only_a_full_worker(bound: int) -> None:
    p, (w0, w1) = pool(n=2, bound=bound)
    assert p.worker_for("prog") is w0
    w0.inflight = bound
    assert p.worker_for("prog") is w0
    w0.queued = 1
    assert p.worker_for("prog") is w1
