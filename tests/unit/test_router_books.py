"""The router's books balance: slots, reservations, rids and aborts, one regression per defect.

Each test reproduces one defect of issue 22 (scripts in ../shared/repro/router/) against the
fake worker and checks the healthy outcome; ordering is by observed router state, not sleeps.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import httpx
import pytest
from fake_worker import FakeWorker
from router_harness import (
    BRANCH,
    STALL_POLICY,
    assert_idle,
    error_of,
    finish_reason,
    gen,
    register,
    run,
    setup,
    sse_events,
    until,
)

from dynasor_sgl.policy.config import MAX_CAP
from dynasor_sgl.scheduling import Order, SchedulerConfig
from dynasor_sgl.scheduling.admission import AdmissionQueue, Slots


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


def test_a_reservation_of_every_free_slot_does_not_stall_an_idle_worker() -> None:
    """stall.py: a granted expansion reserved every free slot of an idle worker; a request from
    anyone else then queued with nothing in flight, and nothing ever dispatched it."""

    async def scenario() -> None:
        async with setup(max_inflight_per_worker=4) as (client, router, _):
            body = {"program_id": "p", "policy": STALL_POLICY}
            assert (await client.post("/programs", json=body)).status_code == 201
            assert (await client.post("/programs/p/generate", json=gen(max_new=3))).is_success
            report = {"used": 2, "answers": {"a": "1", "b": "2"}}
            decision = (await client.post("/programs/p/report", json=report)).json()
            assert decision["expand"] == 4
            w = router.pool.workers[0]
            assert (w.inflight, w.slots.reserved) == (0, 4)
            plain = await asyncio.wait_for(client.post("/generate", json=gen(max_new=3)), 5)
            assert plain.status_code == 200
            assert_idle(router)

    run(scenario)


def test_a_programs_own_request_takes_its_reservation_ahead_of_others_waiting() -> None:
    """stall2.py: the program's own next request queued behind the requests its reservation
    kept out, so the expansion it was granted waited on them."""
    queue = AdmissionQueue([Slots(0)], 2, SchedulerConfig())
    assert queue.submit(0, "blocker", None, 0.0) is not None
    queue.ensure_program(0, "p", 0.0, 10, "sc")
    queue.reserve("p", 1, 0.0)
    assert queue.submit(0, "other", None, 0.0) is None  # the free slot is p's
    assert queue.submit(0, "own", "p", 0.0) is not None
    w = queue.workers[0]
    assert (w.inflight, w.queued, w.reserved) == (2, 1, 0)
    assert [g.request_id for g in queue.release(0, 1.0)] == ["other"]


def test_the_reaper_does_not_abandon_a_program_whose_request_waits_for_a_slot() -> None:
    """stall2.py: the reaper counted only requests in flight as activity, so a program whose
    request had waited longer than the TTL was ended as abandoned while its client waited."""

    async def scenario() -> None:
        async with setup(max_inflight_per_worker=1, program_ttl_s=60) as (client, router, fakes):
            assert (await client.post("/programs", json={"program_id": "p"})).status_code == 201
            blocker = asyncio.ensure_future(client.post("/generate", json=gen()))
            await fakes[0].wait_running(1)
            own = asyncio.ensure_future(client.post("/programs/p/generate", json=gen(max_new=3)))
            await until(lambda: router.admission.queue_length() == 1)
            prog = router.programs.get("p")
            prog.last_active -= 120  # waited past the TTL
            assert await router.reap() == 0
            assert prog.status == "running"
            await client.post("/abort_request", json={"abort_all": True})
            assert (await blocker).status_code == 200
            assert (await own).status_code == 200

    run(scenario)


def test_a_cap_past_the_bound_is_a_400_naming_it_and_the_bound_itself_is_served() -> None:
    """hugecap.py: `cap` had no upper bound; 10**310 registered, then overflowed the priority."""

    async def scenario() -> None:
        async with setup() as (client, router, _):
            body = {"program_id": "big", "deadline_s": 100, "policy": {"cap": 10**310}}
            error = error_of(await client.post("/programs", json=body), 400)
            assert "cap" in error["message"] and str(MAX_CAP) in error["message"]
            body["policy"] = {"cap": MAX_CAP}
            assert (await client.post("/programs", json=body)).status_code == 201
            reply = await client.post("/programs/big/generate", json=gen(max_new=3))
            assert reply.status_code == 200
            assert_idle(router)

    run(scenario)


@pytest.mark.parametrize("policy", list(Order))
def test_a_grant_whose_priority_math_overflows_still_counts_its_slot_once(
    policy: Order,
) -> None:
    """hugecap.py: the slot was counted before the priority was computed; the priority raised
    and the slot was never returned. The priority is now total and computed first."""
    queue = AdmissionQueue([Slots(0)], 2, SchedulerConfig(order=policy))
    queue.ensure_program(0, "big", 0.0, 10**310, "sc", deadline_at=100.0)
    priority = queue.submit(0, "r", "big", 0.0)
    assert priority is not None and 0 <= priority <= queue.config.max_priority
    assert queue.workers[0].inflight == 1
    queue.release(0, 1.0)
    assert queue.workers[0].inflight == 0


def test_a_clients_own_rid_aborts_exactly_its_request_on_a_program_route() -> None:
    """prefix.py: `/abort_request` by the rid a client sent on a program route was a 404, and
    router rids were prefixes of each other (`p::main::1` of `p::main::10`), which SGLang's
    abort-by-prefix (as the fake now does) turns into aborting the siblings too."""

    async def scenario() -> None:
        async with setup(max_inflight_per_worker=16) as (client, router, (fake,)):
            await client.post("/programs", json={"program_id": "p", "policy": {"cap": 20}})
            tasks = [
                asyncio.ensure_future(
                    client.post("/programs/p/generate", json=gen(max_new=500, rid=f"c{i}"))
                )
                for i in range(12)
            ]
            await fake.wait_running(12)
            rids = list(fake.running)
            assert not [(a, b) for a in rids for b in rids if a != b and b.startswith(a)]
            victim = router.programs.by_client_rid("c1")[0][1].rid
            reply = await client.post("/abort_request", json={"rid": "c1"})
            assert reply.status_code == 200, reply.text
            assert [a["rid"] for a in fake.aborts] == [victim]
            assert finish_reason(await tasks[1]) == "abort"
            assert sorted(fake.running) == sorted(r for r in rids if r != victim)
            await client.post("/programs/p/abort")
            await asyncio.gather(*tasks)
            assert_idle(router)

    run(scenario)


def test_the_fake_worker_aborts_by_rid_prefix_as_sglang_does() -> None:
    """SGLang aborts every request whose rid starts with a tracked rid, and ignores an rid it
    does not track (tokenizer_manager.py and scheduler.py, `abort_request`)."""

    async def scenario() -> None:
        fake = FakeWorker(token_delay=0.01)
        await fake.start()
        try:
            async with httpx.AsyncClient(base_url=fake.url) as http:

                def post(rid: str) -> asyncio.Future[httpx.Response]:
                    return asyncio.ensure_future(
                        http.post("/generate", json=gen(max_new=500, rid=rid))
                    )

                tasks = {rid: post(rid) for rid in ("r1", "r10", "r2")}
                await fake.wait_running(3)
                await http.post("/abort_request", json={"rid": "r"})  # not tracked: nothing
                assert sorted(fake.running) == ["r1", "r10", "r2"]
                await http.post("/abort_request", json={"rid": "r1"})
                assert finish_reason(await tasks["r1"]) == "abort"
                assert finish_reason(await tasks["r10"]) == "abort"
                assert list(fake.running) == ["r2"]
                await http.post("/abort_request", json={"rid": "r2"})
                assert finish_reason(await tasks["r2"]) == "abort"
        finally:
            await fake.stop()

    run(scenario)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/programs/p/generate", gen(max_new=3, sampling_params={"max_new_tokens": 3, "n": 2})),
        ("/programs/p/generate", gen(["a", "b"], max_new=3)),
        ("/generate", gen(max_new=3, rid="p::b1", sampling_params={"n": 2})),
    ],
)
def test_a_program_request_for_several_sequences_is_a_400(path: str, body: dict[str, Any]) -> None:
    """`n > 1` took one slot for n sequences SGLang runs under fresh uuids, out of reach of
    the program's stops, trims and token counts: refused, like batches, with a clear 400."""

    async def scenario() -> None:
        async with setup() as (client, router, (fake,)):
            await client.post("/programs", json={"program_id": "p"})
            error = error_of(await client.post(path, json=body), 400)
            assert "one sample" in error["message"]
            assert fake.generate_bodies == []
            assert_idle(router)

    run(scenario)


def test_the_fake_worker_names_the_sequences_of_batches_and_samples_as_sglang_does() -> None:
    """A batch's requests run as `{rid}_{i}` (`GenerateReqInput._normalize_rid`); n > 1
    samples under fresh uuids (`TokenizerManager._handle_batch_request`), which an abort of
    the client's rid does not reach."""

    async def scenario() -> None:
        fake = FakeWorker(token_delay=0.01)
        await fake.start()
        try:
            async with httpx.AsyncClient(base_url=fake.url) as http:
                batch = await http.post("/generate", json=gen(["a", "b"], max_new=2, rid="y"))
                assert [o["meta_info"]["id"] for o in batch.json()] == ["y_0", "y_1"]
                params = {"max_new_tokens": 500, "n": 3}
                body = gen("a b", rid="x", sampling_params=params)
                samples = asyncio.ensure_future(http.post("/generate", json=body))
                await fake.wait_running(3)
                assert len(set(fake.running)) == 3 and "x" not in fake.running
                assert not [r for r in fake.running if r.startswith("x")]
                await http.post("/abort_request", json={"rid": "x"})
                assert len(fake.running) == 3  # the parent rid names nothing
                await http.post("/abort_request", json={"abort_all": True})
                outs = (await samples).json()
                assert len(outs) == 3
                assert {o["meta_info"]["finish_reason"]["type"] for o in outs} == {"abort"}
        finally:
            await fake.stop()

    run(scenario)


def test_a_hung_abort_holds_neither_the_programs_next_report_nor_its_own_for_long() -> None:
    """A program's report lock was held across the aborts its decision needed, and an abort
    waited up to the request timeout: one hung worker blocked the program's reports for an
    hour. Aborts now run after the lock, each with its own short timeout."""

    async def scenario() -> None:
        async with setup() as (client, router, (fake,)):
            router.forwarder.abort_timeout = aiohttp.ClientTimeout(total=1.5)
            await register(client, "t", trim="minority", thresholds={"entropy": 0.99})
            tasks = [
                asyncio.ensure_future(
                    client.post("/programs/t/generate", json=gen(), headers={BRANCH: f"b{i}"})
                )
                for i in range(4)
            ]
            await fake.wait_running(4)
            fake.abort_gate = asyncio.Event()  # the worker stops answering aborts
            answers = {"b0": "1", "b1": "1", "b2": "1", "b3": "2"}
            body = {"used": 4, "answers": answers}
            first = asyncio.ensure_future(client.post("/programs/t/report", json=body))
            await until(lambda: len(fake.aborts) == 1)
            again = {"used": 4}  # a decision that aborts nothing
            second = await asyncio.wait_for(client.post("/programs/t/report", json=again), 1)
            assert second.status_code == 200 and second.json()["aborted"] == 0, second.text
            assert not first.done()
            decision = (await asyncio.wait_for(first, 5)).json()
            assert decision["trim"] == ["b3"] and decision["aborted"] == 0
            fake.abort_gate.set()
            await client.post("/programs/t/abort")
            await asyncio.gather(*tasks)
            assert_idle(router)

    run(scenario)


def test_a_retried_request_keeps_its_clients_rid() -> None:
    """A retry on another worker recorded the router's rid of the failed attempt as the
    client's, so the client's own rid no longer named its request."""

    async def scenario() -> None:
        async with setup(workers=2, health_interval_s=60) as (client, router, fakes):
            assert (await client.post("/programs", json={"program_id": "p"})).status_code == 201
            await fakes[0].stop(crash=True)  # the router still counts it healthy
            task = asyncio.ensure_future(client.post("/programs/p/generate", json=gen(rid="mine")))
            await fakes[1].wait_running(1)
            assert not router.pool.workers[0].healthy  # the first attempt failed there
            (entry,) = router.programs.get("p").inflight.values()
            assert entry.client_rid == "mine" and entry.worker == 1
            reply = await client.post("/abort_request", json={"rid": "mine"})
            assert reply.status_code == 200, reply.text
            assert finish_reason(await task) == "abort"
            assert_idle(router)

    run(scenario)


def test_an_error_event_after_a_worker_dies_mid_event_is_framed_on_its_own() -> None:
    """The router relayed the worker's bytes as they came and, when the worker died, appended
    its error event right after them: glued to half an event, the stream no longer parsed."""

    async def scenario() -> None:
        async with setup(workers=1) as (client, router, (fake,)):
            fake.die_mid_event = 3
            reply = await client.post("/generate", json=gen(max_new=10, stream=True))
            assert reply.status_code == 200
            chunks = [c for c in reply.text.split("\n\n") if c]
            assert all(c.startswith("data: ") for c in chunks), reply.text
            events = [json.loads(c[6:]) for c in chunks]
            assert [e["meta_info"]["completion_tokens"] for e in events[:-1]] == [1, 2]
            assert events[-1]["error"]["code"] == "worker_unavailable"
            assert_idle(router)

    run(scenario)


def test_the_queue_of_a_failed_worker_moves_to_a_healthy_one() -> None:
    """One transport error failed every request waiting for that worker with 503, though
    another worker was up; they now move there (a program with its history)."""

    async def scenario() -> None:
        async with setup(workers=2, max_inflight_per_worker=1) as (client, router, fakes):
            assert (await client.post("/programs", json={"program_id": "p"})).status_code == 201
            w0, w1 = router.pool.workers

            def post(path: str, n: int) -> asyncio.Future[httpx.Response]:
                return asyncio.ensure_future(client.post(path, json=gen(max_new=n)))

            running = post("/programs/p/generate", 500)
            await fakes[0].wait_running(1)
            plain = post("/generate", 2000)
            await fakes[1].wait_running(1)
            waiting = post("/programs/p/generate", 3)
            await until(lambda: w0.queued == 1)
            await fakes[0].stop(crash=True)
            await until(lambda: not w0.healthy and w0.queued == 0)
            assert router.admission.queue.home("p") == 1 and w1.queued >= 1
            (blocker,) = fakes[1].running
            await client.post("/abort_request", json={"rid": blocker})
            assert finish_reason(await plain) == "abort"
            assert finish_reason(await waiting) == "length"
            await client.post("/programs/p/abort")
            assert (await running).status_code in (200, 409)
            assert_idle(router)

    run(scenario)


def test_a_plain_request_waiting_on_a_failed_worker_moves_and_is_granted_there() -> None:
    queue = AdmissionQueue([Slots(0), Slots(1)], 1, SchedulerConfig())
    assert queue.submit(0, "blocker", None, 0.0) is not None
    assert queue.submit(0, "plain", None, 0.0) is None
    (grant,) = queue.move_plain("plain", 1, 1.0)
    assert (grant.request_id, grant.worker) == ("plain", 1)
    assert [(w.inflight, w.queued) for w in queue.workers.values()] == [(1, 0), (1, 0)]
    assert queue.queue_length() == 0


def test_a_plain_clients_rid_that_prefixes_anothers_aborts_only_its_own_request() -> None:
    """Plain requests ran under their clients' rids, so an abort of `c1` reached `c10` too
    (SGLang aborts by prefix). They run under router rids now; replies show the client's."""

    async def scenario() -> None:
        async with setup(max_inflight_per_worker=4) as (client, router, (fake,)):
            tasks = {
                rid: asyncio.ensure_future(client.post("/generate", json=gen(max_new=300, rid=rid)))
                for rid in ("c1", "c10")
            }
            await fake.wait_running(2)
            assert not {"c1", "c10"} & set(fake.running)
            assert (await client.post("/abort_request", json={"rid": "c1"})).status_code == 200
            first = await tasks["c1"]
            assert finish_reason(first) == "abort" and first.json()["meta_info"]["id"] == "c1"
            assert len(fake.running) == 1
            stream = await client.post("/generate", json=gen(max_new=3, rid="s", stream=True))
            assert {e["meta_info"]["id"] for e in sse_events(stream.text)} == {"s"}
            await client.post("/abort_request", json={"rid": "c10"})
            assert finish_reason(await tasks["c10"]) == "abort"
            assert_idle(router)
            assert router._plain_rids == {}

    run(scenario)


@pytest.mark.parametrize("body", [{"abort_all": True}, {"rid": "mine"}])
def test_a_clients_abort_on_a_hung_worker_answers_after_the_abort_timeout(
    body: dict[str, Any],
) -> None:
    """`/abort_request` waited on a hung worker for the request timeout (an hour)."""

    async def scenario() -> None:
        async with setup() as (client, router, (fake,)):
            router.forwarder.abort_timeout = aiohttp.ClientTimeout(total=0.3)
            task = asyncio.ensure_future(client.post("/generate", json=gen(rid="mine")))
            await fake.wait_running(1)
            fake.abort_gate = asyncio.Event()
            reply = await asyncio.wait_for(client.post("/abort_request", json=body), 3)
            assert reply.json() == {"workers": 1, "ok": 0}
            fake.abort_gate.set()
            await client.post("/abort_request", json={"abort_all": True})
            assert finish_reason(await task) == "abort"

    run(scenario)
