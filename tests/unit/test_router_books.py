"""The router's books balance: slots, reservations, rids and aborts, one regression per defect.

Each test reproduces one defect of issue 22 (scripts in ../shared/repro/router/) against the
fake worker and checks the healthy outcome; ordering is by observed router state, not sleeps.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
from router_harness import assert_idle, gen, run, setup


async def until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait until `cond()` holds (observing state, polled)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        assert loop.time() < end, "condition not reached"
        await asyncio.sleep(0.005)


def test_a_request_granted_on_the_worker_its_program_moved_to_runs_and_ends_there() -> None:
    """move.py: a program moves while one of its requests waits; the request was granted on the
    new worker's slot but sent to, and released on, the old one (in flight -1 and +1)."""

    async def scenario() -> None:
        async with setup(workers=2, max_inflight_per_worker=2) as (client, router, fakes):
            await client.post("/programs", json={"program_id": "p", "policy": {"cap": 20}})

            def post(n: int) -> asyncio.Future[httpx.Response]:
                return asyncio.ensure_future(
                    client.post("/programs/p/generate", json=gen(max_new=n))
                )

            first = [post(100), post(100)]
            await fakes[0].wait_running(2)
            waiting = post(20)
            await until(lambda: router.admission.queue_length() == 1)
            w0, w1 = router.pool.workers
            assert (w0.inflight, w0.queued, w1.inflight) == (2, 1, 0)
            late = post(20)  # p moves to the idle worker, its waiting request with it
            replies = await asyncio.gather(*first, waiting, late)
            assert [r.status_code for r in replies] == [200] * 4
            await until(lambda: w0.inflight == 0 and w1.inflight == 0)
            assert_idle(router)
            assert [len(f.generate_bodies) for f in fakes] == [2, 2]

    run(scenario)
