"""Bounded under load: 1,000 programs registered and driven at once against two fake workers
(programs spill and move between them under the load), half of them by clients that vanish
midway. Every program ends with a result or an explicit
error, the router's queue, schedulers and reservations are empty afterwards, the program table
holds nothing running, and memory stays bounded (RSS is printed for the record; the bound is
checked loosely, as growth under 200 MB, since a test is not a benchmark)."""

from __future__ import annotations

import asyncio
import gc
from collections import Counter

import httpx
import psutil
import pytest
from router_harness import BRANCH, assert_idle, gen, run, setup

from dynasor_sgl.router.core import Router

pytestmark = pytest.mark.io

PROGRAMS = 1000
POLICY = {"cap": 8, "initial": 4, "pace": 4, "detect_at": 4}


async def drive(client: httpx.AsyncClient, i: int, vanish: bool) -> str:
    """One program: register, 4 branches at once, a report; vanished clients stop there."""
    pid = f"p{i}"
    resp = await client.post("/programs", json={"program_id": pid, "policy": POLICY})
    assert resp.status_code == 201, resp.text
    branches = [
        client.post(f"/programs/{pid}/generate", json=gen(max_new=4), headers={BRANCH: f"b{j}"})
        for j in range(4)
    ]
    for reply in await asyncio.gather(*branches):
        assert reply.status_code in (200, 409), reply.text
    answers = {f"b{j}": str(j % (1 + i % 3)) for j in range(4)}  # some agree, some do not
    report = await client.post(f"/programs/{pid}/report", json={"used": 4, "answers": answers})
    assert report.status_code in (200, 409), report.text
    if vanish:
        return "vanished"
    finish = await client.post(f"/programs/{pid}/finish", json={"answer": answers["b0"]})
    assert finish.status_code in (200, 409), finish.text
    return "finished"


def test_a_thousand_programs_half_abandoned_leave_nothing_behind() -> None:
    async def scenario() -> None:
        async with setup(
            workers=2,
            token_delay=0.0005,
            max_programs=PROGRAMS,
            program_ttl_s=3600,
            max_inflight_per_worker=12,
        ) as (client, router, fakes):
            gc.collect()
            rss_before = psutil.Process().memory_info().rss
            outcomes = await asyncio.gather(
                *(drive(client, i, i % 2 == 1) for i in range(PROGRAMS))
            )
            assert outcomes.count("vanished") == PROGRAMS // 2
            reaped = await reap_all(router)
            assert reaped == PROGRAMS // 2 - stopped_early(router)
            listed = (await client.get("/programs")).json()["programs"]
            assert len(listed) == PROGRAMS
            assert not [p for p in listed if p["status"] == "running"]
            exits = {p["exit_reason"] for p in listed}
            assert exits <= {"threshold", "finished", "abandoned"}, exits
            assert router.admission.queue.programs() == 0
            assert all(w.slots.reserved == 0 for w in router.pool.workers)
            assert all(fake.running == {} for fake in fakes)
            served = [len(fake.generate_bodies) for fake in fakes]
            assert all(served), served  # both workers took programs' requests
            assert_idle(router)
            gc.collect()
            rss_after = psutil.Process().memory_info().rss
            growth = (rss_after - rss_before) / 2**20
            print(
                f"RSS {rss_before / 2**20:.0f} MB -> {rss_after / 2**20:.0f} MB "
                f"(+{growth:.0f} MB) for {PROGRAMS} programs; requests per worker {served}; "
                f"exits {sorted(Counter(p['exit_reason'] for p in listed).items())}"
            )
            assert growth < 200

    run(scenario, timeout=300)


async def reap_all(router: Router) -> int:
    """Jump the table's clock past the TTL and reap (the vanished clients' programs)."""
    real = router.programs.clock
    router.programs.clock = lambda: real() + 2 * router.config.program_ttl_s
    try:
        return await router.reap()
    finally:
        router.programs.clock = real


def stopped_early(router: Router) -> int:
    """Vanished programs whose report already stopped them (they need no reaping)."""
    return sum(
        p.exit_reason == "threshold" and int(p.program_id[1:]) % 2 == 1
        for p in router.programs.all()
    )
