"""Online serving in the router, on a virtual clock: reaping abandoned programs, the deadline
stop, reports of one program applied in order, and expansion slack reserved when granted."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from router_harness import BRANCH, assert_idle, gen, register, run, setup

from dynasor_sgl.policy.machine import Decision, Report
from dynasor_sgl.router.core import Router

pytestmark = pytest.mark.io  # sockets, subprocesses or a served router


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def virtual_clock(router: Router) -> Clock:
    """Puts the program table and admission on one virtual clock (before any registration)."""
    clock = Clock()
    router.programs.clock = clock
    router.admission.clock = clock
    return clock


def metric(router: Router, name: str, **labels: str) -> float:
    value = router.metrics.registry.get_sample_value(name, labels or None)
    return value or 0.0


def test_an_idle_program_is_reaped_as_abandoned_and_leaves_nothing_behind() -> None:
    async def scenario() -> None:
        async with setup(program_ttl_s=60) as (client, router, _):
            clock = virtual_clock(router)
            await register(client, "gone")
            await register(client, "busy")
            for pid in ("gone", "busy"):
                resp = await client.post(f"/programs/{pid}/generate", json=gen(max_new=2))
                assert resp.status_code == 200
            clock.now += 59
            assert await router.reap() == 0
            await client.post("/programs/busy/report", json={"used": 1})  # still alive
            clock.now += 2
            assert await router.reap() == 1
            gone = (await client.get("/programs/gone")).json()
            assert (gone["status"], gone["exit_reason"]) == ("stopped", "abandoned")
            assert (await client.get("/programs/busy")).json()["status"] == "running"
            assert metric(router, "dynasor_programs_abandoned_total") == 1
            assert metric(router, "dynasor_programs_ended_total", exit_reason="abandoned") == 1
            assert router.admission.queue.home("gone") is None
            assert router.pool.pinned("gone") is None
            clock.now += 120
            assert await router.reap() == 1  # "busy" too, once it goes quiet
            assert router.admission.queue.programs() == 0
            assert_idle(router)

    run(scenario)


def test_a_program_in_flight_is_never_reaped() -> None:
    async def scenario() -> None:
        async with setup(program_ttl_s=60) as (client, router, (fake,)):
            clock = virtual_clock(router)
            await register(client, "p")
            task = asyncio.create_task(client.post("/programs/p/generate", json=gen()))
            await fake.wait_running(1)
            clock.now += 3600
            assert await router.reap() == 0
            await client.post("/programs/p/abort")
            await task

    run(scenario)


def test_a_program_that_cannot_meet_its_deadline_stops_with_reason_deadline() -> None:
    async def scenario() -> None:
        async with setup(deadline_stop=True) as (client, router, _):
            clock = virtual_clock(router)
            for pid, deadline in (("late", 30.0), ("fine", 300.0)):
                resp = await client.post(
                    "/programs",
                    json={"program_id": pid, "deadline_s": deadline, "policy": {"cap": 8}},
                )
                assert resp.status_code == 201
                await client.post(f"/programs/{pid}/generate", json=gen(max_new=4))
            clock.now += 20  # 5 units in 20 s: 4 s a unit; the next grant (3) needs 12 s
            split = {"used": 5, "answers": {str(i): str(i) for i in range(5)}}
            late = (await client.post("/programs/late/report", json=split)).json()
            assert (late["action"], late["reason"], late["status"]) == (
                "stop",
                "deadline",
                "stopped",
            )
            fine = (await client.post("/programs/fine/report", json=split)).json()
            assert fine["action"] == "continue" and fine["grant"] == 3
            shown = (await client.get("/programs/late")).json()
            assert shown["exit_reason"] == "deadline"

    run(scenario)


def test_without_the_deadline_stop_a_late_program_runs_on() -> None:
    async def scenario() -> None:
        async with setup(deadline_stop=False) as (client, router, _):
            clock = virtual_clock(router)
            await client.post("/programs", json={"program_id": "p", "deadline_s": 1.0})
            await client.post("/programs/p/generate", json=gen(max_new=4))
            clock.now += 20
            split = {"used": 5, "answers": {str(i): str(i) for i in range(5)}}
            assert (await client.post("/programs/p/report", json=split)).json()["action"] != "stop"

    run(scenario)


def test_concurrent_reports_of_one_program_apply_in_the_order_they_arrived() -> None:
    async def scenario() -> None:
        async with setup() as (client, router, _):
            await register(client, "p", detect_at=1, detect_every=1, thresholds={"entropy": 1.0})
            prog = router.programs.get("p")
            first_running = threading.Event()
            decide = prog.policy.decide

            def slow_first(report: Report) -> Decision:
                if report.used == 1:
                    first_running.set()
                    time.sleep(0.3)  # without the lock the second report would overtake it
                return decide(report)

            prog.policy.decide = slow_first  # type: ignore[method-assign]
            one = {"used": 1, "answers": {"a": "1", "b": "2"}}
            two = {"used": 2, "answers": {"a": "1", "b": "2", "c": "3"}}
            t1 = asyncio.create_task(client.post("/programs/p/report", json=one))
            while not first_running.is_set():
                await asyncio.sleep(0.01)
            t2 = asyncio.create_task(client.post("/programs/p/report", json=two))
            r1, r2 = await asyncio.gather(t1, t2)
            assert r1.status_code == r2.status_code == 200
            shown = (await client.get("/programs/p")).json()
            assert [c["used"] for c in shown["certaindex"]] == [1, 2] and shown["used"] == 2

    run(scenario)


def test_granted_expansion_is_reserved_so_a_second_report_sees_less_slack() -> None:
    async def scenario() -> None:
        async with setup(max_inflight_per_worker=8) as (client, router, _):
            policy: dict[str, Any] = {
                "cap": 20,
                "detect_every": 4,
                "thresholds": {"entropy": 1.0},
                "expand_past_readings": True,
            }
            for pid in ("a", "b"):
                await register(client, pid, **policy)
                await client.post(
                    f"/programs/{pid}/generate", json=gen(max_new=2), headers={BRANCH: "x"}
                )
            split = {"used": 4, "answers": {str(i): str(i) for i in range(4)}}
            a = (await client.post("/programs/a/report", json=split)).json()
            # 8 free slots: a gets its 4 at the normal pace plus all 8 as expansion (SC: one
            # slot a sample), and the 8 are held for it.
            assert (a["action"], a["grant"], a["expand"]) == ("expand", 12, 8)
            slots = router.pool.workers[0].slots
            assert slots.reserved == 8
            b = (await client.post("/programs/b/report", json=split)).json()
            assert (b["action"], b["expand"]) == ("continue", 0)  # nothing left to expand into
            # a's next request takes one of its reserved slots.
            await client.post("/programs/a/generate", json=gen(max_new=2), headers={BRANCH: "y"})
            assert slots.reserved == 7
            await client.post("/programs/a/finish", json={"answer": None})
            assert slots.reserved == 0 and router.admission.slack(router.pool.workers[0]) == 8

    run(scenario)


def test_a_failing_health_round_is_logged_and_counted_and_the_loop_lives_on() -> None:
    async def scenario() -> None:
        async with setup(health_interval_s=0.05) as (_, router, _):
            calls = 0

            async def broken(session: Any) -> None:
                nonlocal calls
                calls += 1
                raise RuntimeError("boom")

            router.pool.check_all = broken  # type: ignore[method-assign]
            while calls < 3:
                await asyncio.sleep(0.05)
            assert metric(router, "dynasor_health_check_errors_total") >= 2
            assert router._health_task is not None and not router._health_task.done()

    run(scenario)


def test_abort_request_aborts_what_the_rid_names_and_an_unknown_rid_is_a_404() -> None:
    """A client's own rid on a program request used to abort nothing and answer ok."""

    async def scenario() -> None:
        async with setup() as (client, router, (fake,)):
            await register(client, "p")
            mine = asyncio.create_task(client.post("/generate", json=gen(rid="p::b0::mine")))
            other = asyncio.create_task(
                client.post("/programs/p/generate", json=gen(), headers={BRANCH: "b1"})
            )
            third = asyncio.create_task(
                client.post("/programs/p/generate", json=gen(), headers={BRANCH: "b1"})
            )
            await fake.wait_running(3)
            resp = await client.post("/abort_request", json={"rid": "p::b0::mine"})
            assert resp.status_code == 200 and resp.json()["ok"] == 1
            assert (await mine).json()["meta_info"]["finish_reason"]["type"] == "abort"
            resp = await client.post("/abort_request", json={"rid": "p::b1"})  # a branch
            assert resp.json()["ok"] == 2
            for task in (other, third):
                assert (await task).json()["meta_info"]["finish_reason"]["type"] == "abort"
            for unknown in ("nope", "p::b7", "p::b0::mine"):
                resp = await client.post("/abort_request", json={"rid": unknown})
                assert resp.status_code == 404 and "no request in flight" in resp.text
            assert_idle(router)

    run(scenario)


def test_metrics_count_the_same_saving_the_program_shows() -> None:
    async def scenario() -> None:
        async with setup() as (client, router, (fake,)):
            await register(client, "p")
            await client.post("/programs/p/generate", json=gen(max_new=8), headers={BRANCH: "a"})
            running = asyncio.create_task(
                client.post("/programs/p/generate", json=gen(), headers={BRANCH: "b"})
            )
            await fake.wait_running(1)
            await asyncio.sleep(0.05)  # it generates a few tokens before the stop
            report = {"used": 4, "answers": {f"b{i}": "42" for i in range(4)}}
            assert (await client.post("/programs/p/report", json=report)).json()["action"] == "stop"
            await running
            shown = (await client.get("/programs/p")).json()["tokens"]
            assert shown["saved_estimate"] == (8 - 4) * shown["completion"] // 4 > 0
            assert metric(router, "dynasor_tokens_saved_total") == shown["saved_estimate"]

    run(scenario)


def test_a_report_with_inf_or_nan_is_a_400_and_the_listing_stays_json() -> None:
    """Found by the fuzz test: an Infinity in a report's values reached the trajectory, and
    every later GET /programs was a 500 (JSON has no inf)."""

    async def scenario() -> None:
        async with setup() as (client, _, _):
            await register(client, "p", detect_at=1)
            for bad in (
                '{"used": 1, "values": {"entropy": Infinity}}',
                '{"used": 1, "rewards": {"a": NaN}}',
            ):
                resp = await client.post(
                    "/programs/p/report", content=bad, headers={"content-type": "application/json"}
                )
                assert resp.status_code == 400, resp.text
            assert (await client.get("/programs")).status_code == 200

    run(scenario)
