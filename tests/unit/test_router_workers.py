"""Workers that join and leave: the /workers routes against fake workers.

Listing, adding and removing workers while the router runs; a removed worker drains (its
programs and waiting requests move, its requests in flight finish, then it is forgotten) and
nothing is lost; every error is the router's JSON error. Ordering is by observed router state.
"""

from __future__ import annotations

import asyncio
from urllib.parse import quote

import httpx
from fake_worker import FakeWorker
from router_harness import (
    STALL_POLICY,
    assert_idle,
    error_of,
    finish_reason,
    gen,
    register,
    run,
    setup,
    until,
)


def series(text: str, worker: int) -> bool:
    return f'dynasor_worker_inflight{{worker="{worker}"}}' in text


async def listed(client: httpx.AsyncClient) -> list[tuple[int, bool]]:
    resp = await client.get("/workers")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["total"] == len(body["workers"])
    return [(w["id"], w["draining"]) for w in body["workers"]]


def test_get_workers_lists_each_worker_as_the_gateway_does() -> None:
    async def scenario() -> None:
        async with setup(workers=2) as (client, _, fakes):
            body = (await client.get("/workers")).json()
            assert (body["total"], body["healthy"]) == (2, 2)
            first = body["workers"][0]
            assert first == {
                "id": 0,
                "url": fakes[0].url,
                "healthy": True,
                "draining": False,
                "requests_active": 0,
                "requests_waiting": 0,
                "programs": 0,
            }
            by_url = await client.get("/workers/" + quote(fakes[1].url, safe=""))
            assert by_url.json()["id"] == 1
            assert (await client.get("/workers/0")).json()["url"] == fakes[0].url
            error_of(await client.get("/workers/7"), 404)
            error_of(await client.get("/workers/" + quote("http://nowhere:1", safe="")), 404)

    run(scenario)


def test_a_worker_added_at_run_time_takes_requests() -> None:
    async def scenario() -> None:
        async with setup(workers=1, max_inflight_per_worker=1) as (client, router, fakes):
            extra = FakeWorker(0.005)
            await extra.start()
            try:
                resp = await client.post("/workers", json={"url": extra.url + "/"})
                assert resp.status_code == 201, resp.text
                assert resp.json()["id"] == 1 and resp.json()["healthy"] is True
                assert resp.json()["url"] == extra.url
                replies = await asyncio.gather(
                    client.post("/generate", json=gen(max_new=40)),
                    client.post("/generate", json=gen(max_new=40)),
                )
                assert [r.status_code for r in replies] == [200, 200]
                assert len(fakes[0].generate_bodies) == len(extra.generate_bodies) == 1
                assert series((await client.get("/metrics")).text, 1)
                assert_idle(router)
            finally:
                await extra.stop()

    run(scenario)


def test_bad_additions_are_json_errors() -> None:
    async def scenario() -> None:
        async with setup(workers=1) as (client, router, fakes):
            assert error_of(await client.post("/workers", json={}), 400)["param"] == "url"
            for url in ("ftp://host:1", "not a url", "http://", "http://h:99999", 5):
                error = error_of(await client.post("/workers", json={"url": url}), 400)
                assert error["param"] == "url", url
            body = {"url": "http://h:1", "model_id": "m"}
            assert error_of(await client.post("/workers", json=body), 400)["param"] == "model_id"
            error_of(await client.post("/workers", content=b"{"), 400)
            for dup in (fakes[0].url, fakes[0].url + "/"):
                assert error_of(await client.post("/workers", json={"url": dup}), 409)
            assert len(router.pool.workers) == 1

    run(scenario)


def test_removal_errors_keep_the_worker() -> None:
    async def scenario() -> None:
        async with setup(workers=1) as (client, _, fakes):
            error_of(await client.delete("/workers/3"), 404)
            error_of(await client.delete("/workers", params={"url": "http://h:1"}), 404)
            assert error_of(await client.delete("/workers"), 400)["param"] == "url"
            error = error_of(await client.delete("/workers/0"), 409)
            assert "last worker" in error["message"]
            error_of(await client.delete("/workers", params={"url": fakes[0].url}), 409)
            assert await listed(client) == [(0, False)]
            assert (await client.post("/generate", json=gen(max_new=4))).status_code == 200

    run(scenario)


def test_an_idle_worker_leaves_at_once_and_its_index_is_never_reused() -> None:
    async def scenario() -> None:
        async with setup(workers=2) as (client, _, fakes):
            await client.get("/metrics")
            resp = await client.delete("/workers/" + quote(fakes[0].url, safe=""))
            assert resp.status_code == 200 and resp.json()["status"] == "removed"
            assert await listed(client) == [(1, False)]
            error_of(await client.get("/workers/0"), 404)
            error_of(await client.delete("/workers/0"), 404)
            assert not series((await client.get("/metrics")).text, 0)
            again = await client.post("/workers", json={"url": fakes[0].url})
            assert again.status_code == 201 and again.json()["id"] == 2
            assert await listed(client) == [(1, False), (2, False)]
            assert (await client.post("/generate", json=gen(max_new=4))).status_code == 200

    run(scenario)


def test_a_draining_worker_moves_its_program_and_finishes_what_it_runs() -> None:
    """A program with one request running on worker 0 and one waiting there: removing worker 0
    moves the program (pin, history, waiting request) to worker 1 at once, while the running
    request finishes on worker 0; then worker 0 is forgotten, and no request failed."""

    async def scenario() -> None:
        async with setup(workers=2, max_inflight_per_worker=1) as (client, router, fakes):
            await register(client, "p")

            def post(n: int) -> asyncio.Future[httpx.Response]:
                return asyncio.ensure_future(
                    client.post("/programs/p/generate", json=gen(max_new=n))
                )

            running = post(300)
            await fakes[0].wait_running(1)
            waiting = post(20)
            await until(lambda: router.admission.queue_length() == 1)
            w0 = router.pool.workers[0]
            assert (w0.inflight, w0.queued) == (1, 1)
            resp = await client.delete("/workers/0")
            assert resp.status_code == 202, resp.text
            assert resp.json()["status"] == "draining" and resp.json()["requests_active"] == 1
            assert resp.json()["requests_waiting"] == 0
            assert await listed(client) == [(0, True), (1, False)]
            assert (await client.delete("/workers/0")).status_code == 202  # idempotent
            assert router.pool.pinned("p") is router.pool.workers[1]
            assert router.admission.queue.home("p") == 1
            assert (await waiting).status_code == 200  # ran on worker 1 meanwhile
            assert not running.done()
            assert (await running).status_code == 200
            await until(lambda: 0 not in router.pool.workers)
            assert await listed(client) == [(1, False)]
            assert not series((await client.get("/metrics")).text, 0)
            assert (await post(4)).status_code == 200
            assert [len(f.generate_bodies) for f in fakes] == [1, 2]
            assert_idle(router)

    run(scenario)


def test_a_waiting_plain_request_moves_off_a_draining_worker() -> None:
    async def scenario() -> None:
        async with setup(workers=2, max_inflight_per_worker=1) as (client, router, fakes):

            def post(n: int) -> asyncio.Future[httpx.Response]:
                return asyncio.ensure_future(client.post("/generate", json=gen(max_new=n)))

            first = post(300)
            await fakes[0].wait_running(1)
            second = post(300)
            await fakes[1].wait_running(1)
            third = post(10)  # equal loads: worker 0 (the lower index) takes it, to wait
            await until(lambda: router.pool.workers[0].queued == 1)
            assert (await client.delete("/workers/0")).status_code == 202
            assert (router.pool.workers[0].queued, router.pool.workers[1].queued) == (0, 1)
            replies = await asyncio.gather(first, second, third)
            assert [r.status_code for r in replies] == [200, 200, 200]
            assert [len(f.generate_bodies) for f in fakes] == [1, 2]
            await until(lambda: 0 not in router.pool.workers)
            assert_idle(router)

    run(scenario)


def test_a_worker_whose_waiting_requests_nobody_can_take_stays() -> None:
    async def scenario() -> None:
        async with setup(workers=2, max_inflight_per_worker=1) as (client, router, fakes):
            fakes[1].healthy = False
            await until(lambda: not router.pool.workers[1].healthy)
            first = asyncio.ensure_future(client.post("/generate", json=gen(max_new=200)))
            await fakes[0].wait_running(1)
            second = asyncio.ensure_future(client.post("/generate", json=gen(max_new=4)))
            await until(lambda: router.pool.workers[0].queued == 1)
            error = error_of(await client.delete("/workers/0"), 409)
            assert "no other worker is up" in error["message"]
            assert not router.pool.workers[0].draining
            assert [(await first).status_code, (await second).status_code] == [200, 200]
            # The down worker holds nothing: it leaves at once.
            assert (await client.delete("/workers/1")).status_code == 200
            assert await listed(client) == [(0, False)]

    run(scenario)


def test_an_idle_program_moves_off_a_leaving_worker_with_its_reserved_slots() -> None:
    async def scenario() -> None:
        async with setup(workers=2, max_inflight_per_worker=4) as (client, router, fakes):
            body = {"program_id": "p", "policy": STALL_POLICY}
            assert (await client.post("/programs", json=body)).status_code == 201
            assert (await client.post("/programs/p/generate", json=gen(max_new=3))).is_success
            report = {"used": 2, "answers": {"a": "1", "b": "2"}}
            assert (await client.post("/programs/p/report", json=report)).json()["expand"] == 4
            w0, w1 = router.pool.workers
            assert (w0.slots.reserved, router.admission.queue.home("p")) == (4, 0)
            resp = await client.delete("/workers/0")
            assert resp.status_code == 200 and resp.json()["status"] == "removed"
            assert (w1.slots.reserved, router.admission.queue.home("p")) == (4, 1)
            assert router.pool.pinned("p") is w1
            assert (await client.post("/programs/p/generate", json=gen(max_new=3))).is_success
            assert [len(f.generate_bodies) for f in fakes] == [1, 1]

    run(scenario)


def test_abort_all_reaches_a_draining_worker() -> None:
    async def scenario() -> None:
        async with setup(workers=2) as (client, router, fakes):
            running = asyncio.ensure_future(client.post("/generate", json=gen()))
            await fakes[0].wait_running(1)
            assert (await client.delete("/workers/0")).status_code == 202
            resp = await client.post("/abort_request", json={"abort_all": True})
            assert resp.json() == {"workers": 2, "ok": 2}
            assert finish_reason(await running) == "abort"
            await until(lambda: 0 not in router.pool.workers)
            assert_idle(router)

    run(scenario)
