"""Programs over HTTP (real ASGI client, fake worker): tagging, stop and trim enforced by
aborts in the worker, refusals as JSON 409/404, and policy errors as 400."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from router_harness import (
    BRANCH,
    LONG,
    POLICY,
    assert_idle,
    error_of,
    finish_reason,
    gen,
    register,
    run,
    setup,
    sse_events,
)

pytestmark = pytest.mark.io  # sockets, subprocesses or a served router


def test_stop_aborts_every_inflight_request_of_the_program_and_refuses_new_ones() -> None:
    async def scenario() -> None:
        async with setup() as (client, router, (fake,)):
            info = await register(client, "p")
            assert info["status"] == "running" and info["config"]["cap"] == 8
            other = await register(client, "other")
            assert other["program_id"] == "other"
            reqs = [
                client.post("/programs/p/generate", json=gen(), headers={BRANCH: "b0"}),
                client.post("/programs/p/generate", json=gen(stream=True), headers={BRANCH: "b1"}),
                client.post("/generate", json=gen(rid="p::b2")),
                client.post("/generate", json=gen(rid="p::b3::mine")),
                client.post("/programs/other/generate", json=gen()),
            ]
            tasks = [asyncio.create_task(r) for r in reqs]
            await fake.wait_running(5)
            rids = sorted(r for r in fake.running if r.startswith("p::"))
            assert [r.split("::")[1] for r in rids] == [f"b{i}" for i in range(4)]
            assert all(re.fullmatch(r"p::b[0-3]::\d+::", r) for r in rids)
            assert any(r.startswith("other::main::") for r in fake.running)
            shown = (await client.get("/programs/p")).json()
            assert shown["inflight"] == 4 and shown["branches"] == ["b0", "b1", "b2", "b3"]

            report = {"used": 4, "answers": {f"b{i}": "42" for i in range(4)}}
            resp = await client.post("/programs/p/report", json=report)
            assert resp.status_code == 200, resp.text
            decision = resp.json()
            assert decision["action"] == "stop" and decision["reason"] == "threshold"
            assert decision["aborted"] == 4 and decision["status"] == "stopped"
            assert decision["values"]["entropy"] >= 0.99

            b0, b1, b2, b3 = await asyncio.gather(*tasks[:4])
            for done in (b0, b2, b3):
                assert finish_reason(done) == "abort"
                assert done.json()["meta_info"]["completion_tokens"] < LONG
            last = sse_events(b1.text)[-1]["meta_info"]
            assert last["finish_reason"]["type"] == "abort" and last["completion_tokens"] < LONG
            assert sorted(a["rid"] for a in fake.aborts) == rids
            assert [r.split("::")[0] for r in fake.running] == ["other"]  # untouched
            assert (await client.post("/programs/other/abort")).json()["aborted"] == 1
            assert finish_reason(await tasks[4]) == "abort"

            for refused in (
                await client.post("/programs/p/generate", json=gen(), headers={BRANCH: "b9"}),
                await client.post("/generate", json=gen(rid="p::b0")),
            ):
                error = error_of(refused, 409)
                assert error["type"] == "program_stopped" and "p" in error["message"]
            shown = (await client.get("/programs/p")).json()
            assert shown["status"] == "stopped" and shown["exit_reason"] == "threshold"
            assert shown["inflight"] == 0 and shown["aborted_requests"] == 4
            # The one estimate: units the stop left (8 - 4) x completion tokens per unit used
            # (how many tokens the aborted requests had made depends on timing).
            tokens = shown["tokens"]
            assert tokens["saved_estimate"] == (8 - 4) * tokens["completion"] // 4
            assert len(fake.running) == 0
            assert_idle(router)

            metrics = (await client.get("/metrics")).text
            assert 'dynasor_aborts_total{cause="stop"} 4.0' in metrics
            assert 'dynasor_programs_ended_total{exit_reason="threshold"} 1.0' in metrics
            assert 'dynasor_decisions_total{action="stop"} 1.0' in metrics
            decided = re.search(
                r"dynasor_decision_seconds_count\{algorithm=\"\w+\"\} (\S+)", metrics
            )
            assert decided is not None and float(decided.group(1)) >= 1
            assert "dynasor_programs_registered_total 2.0" in metrics
            assert "dynasor_programs_active 0.0" in metrics
            completion = re.search(r'dynasor_tokens_total\{kind="completion"\} (\S+)', metrics)
            assert completion is not None and float(completion.group(1)) > 0

    run(scenario)


def test_trim_aborts_exactly_the_named_branches() -> None:
    async def scenario() -> None:
        async with setup() as (client, router, (fake,)):
            await register(client, "t", trim="minority", thresholds={"entropy": 0.99})
            bodies = {f"b{i}": gen(max_new=150 if i < 3 else LONG) for i in range(4)}
            bodies["b3"]["stream"] = True
            tasks = {
                b: asyncio.create_task(
                    client.post("/programs/t/generate", json=body, headers={BRANCH: b})
                )
                for b, body in bodies.items()
            }
            await fake.wait_running(4)
            answers = {"b0": "1", "b1": "1", "b2": "1", "b3": "2"}
            resp = await client.post("/programs/t/report", json={"used": 4, "answers": answers})
            decision = resp.json()
            assert decision["action"] == "trim" and decision["trim"] == ["b3"], decision
            assert decision["aborted"] == 1 and decision["status"] == "running"
            assert [a["rid"].split("::")[1] for a in fake.aborts] == ["b3"]
            for b in ("b0", "b1", "b2"):
                assert finish_reason(await tasks[b]) == "length"
            last = sse_events((await tasks["b3"]).text)[-1]["meta_info"]
            assert last["finish_reason"]["type"] == "abort"
            error = error_of(
                await client.post("/programs/t/generate", json=gen(), headers={BRANCH: "b3"}), 409
            )
            assert error["type"] == "branch_trimmed"
            ok = await client.post(
                "/programs/t/generate", json=gen(max_new=3), headers={BRANCH: "b0"}
            )
            assert finish_reason(ok) == "length"
            shown = (await client.get("/programs/t")).json()
            assert shown["trimmed"] == ["b3"] and shown["aborted_requests"] == 1
            assert_idle(router)

    run(scenario)


def test_a_waiting_request_of_a_stopped_program_gets_409_not_a_hang() -> None:
    async def scenario() -> None:
        async with setup(max_inflight_per_worker=1) as (client, router, (fake,)):
            await register(client, "p")
            first = asyncio.create_task(
                client.post("/programs/p/generate", json=gen(), headers={BRANCH: "b0"})
            )
            await fake.wait_running(1)
            second = asyncio.create_task(
                client.post("/programs/p/generate", json=gen(), headers={BRANCH: "b1"})
            )
            for _ in range(100):
                if router.admission.queue_length():
                    break
                await asyncio.sleep(0.01)
            assert "dynasor_queue_length 1.0" in (await client.get("/metrics")).text
            resp = await client.post("/programs/p/abort")
            assert resp.status_code == 200 and resp.json()["status"] == "stopped"
            assert finish_reason(await first) == "abort"
            assert error_of(await second, 409)["type"] == "program_stopped"
            assert_idle(router)
            assert finish_reason(await client.post("/generate", json=gen(max_new=2))) == "length"

    run(scenario)


def test_finish_and_report_on_a_finished_program() -> None:
    async def scenario() -> None:
        async with setup() as (client, _, _):
            await register(client, "f")
            resp = await client.post("/programs/f/finish", json={"answer": "42"})
            assert resp.status_code == 200
            assert resp.json()["status"] == "finished" and resp.json()["answer"] == "42"
            error = error_of(await client.post("/programs/f/report", json={"used": 4}), 409)
            assert "finished" in error["message"]
            assert (
                error_of(await client.post("/programs/f/finish"), 409)["type"] == "program_finished"
            )
            error_of(await client.post("/programs/f/generate", json=gen()), 409)
            listed = (await client.get("/programs", params={"status": "finished"})).json()
            assert [p["program_id"] for p in listed["programs"]] == ["f"]
            running = (await client.get("/programs", params={"status": "running"})).json()
            assert running["programs"] == [] and running["total"] == 0

    run(scenario)


def test_old_step_keys_still_work_over_http_and_answers_use_the_new_names() -> None:
    async def scenario() -> None:
        async with setup() as (client, _, _):
            old_policy = {"cap": 8, "initial": 2, "step": 3, "detect_at": 2, "detect_every": 2}
            resp = await client.post("/programs", json={"program_id": "o", "policy": old_policy})
            assert resp.status_code == 201, resp.text
            config = resp.json()["config"]
            assert config["pace"] == 3 and "step" not in config
            split = {"a": "1", "b": "2"}
            body = {"step": 2, "answers": split, "slack": 0}  # no expansion: the pace alone
            resp = await client.post("/programs/o/report", json=body)
            assert resp.status_code == 200, resp.text
            assert resp.json()["grant"] == 3  # the pace the old key set
            shown = (await client.get("/programs/o")).json()
            assert shown["used"] == 2 and "step" not in shown
            both = {"step": 4, "used": 4}
            error = error_of(await client.post("/programs/o/report", json=both), 400)
            assert "step" in error["message"]  # both names: the old one is an unknown key

    run(scenario)


def test_unknown_programs_are_404_json() -> None:
    async def scenario() -> None:
        async with setup() as (client, _, _):
            for method, path, body in [
                ("GET", "/programs/nope", None),
                ("POST", "/programs/nope/generate", gen()),
                ("POST", "/programs/nope/report", {"used": 1}),
                ("POST", "/programs/nope/finish", {}),
                ("POST", "/programs/nope/abort", None),
            ]:
                resp = await client.request(method, path, json=body)
                error = error_of(resp, 404)
                assert "nope" in error["message"] and error["type"] == "not_found"
            error_of(await client.get("/no/such/route"), 404)
            error_of(await client.delete("/generate"), 405)

    run(scenario)


# Regression (fixed): errors raised by the policy code are not mapped to
# 400. A non-object `thresholds` raises AttributeError in PolicyConfig (only ValueError and
# TypeError are caught); rewards outside [0, 1], a token with one logprob or a negative seed
# raise ValueError inside `router.report` (policy.decide), which nothing catches: all 500s.
@pytest.mark.parametrize(
    "policy, report",
    [
        ({"thresholds": 5}, None),
        ({"thresholds": ["entropy"]}, None),
        ({"thresholds": {"reward": 0.5}}, {"used": 4, "rewards": {"b0": 5.0}}),
        ({"thresholds": {"reward": 0.5}}, {"used": 4, "rewards": {"b0": -1}}),
        ({"thresholds": {"confidence": 0.5}}, {"used": 4, "top_logprobs": [[-0.1]]}),
        ({"rule": "posterior", "seed": -1}, {"used": 4, "answers": {"a": "1", "b": "2", "c": "3"}}),
    ],
)
def test_bad_policy_or_report_values_are_400_not_500(
    policy: dict[str, Any], report: dict[str, Any] | None
) -> None:
    async def scenario() -> None:
        async with setup() as (client, _, _):
            resp = await client.post(
                "/programs", json={"program_id": "p", "policy": {**POLICY, **policy}}
            )
            if report is None:
                error_of(resp, 400)
                return
            if resp.status_code == 400:  # refused up front: fine too
                return
            assert resp.status_code == 201, resp.text
            error_of(await client.post("/programs/p/report", json=report), 400)
            assert (await client.get("/programs/p")).json()["status"] == "running"

    run(scenario)
