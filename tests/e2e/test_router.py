"""The router in front of two real SGLang CPU workers: programs, enforced stop/trim, pinning,
and a worker dying mid-run."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx
import pytest

from dynasor_sgl.launch.cluster import Cluster

pytestmark = pytest.mark.e2e
LONG = 1500  # a token budget the test never lets a branch reach


def register(router_url: str, **policy: Any) -> str:
    pid = f"t{uuid.uuid4().hex[:10]}"
    body = {"algorithm": "sc", "program_id": pid, "policy": policy}
    resp = httpx.post(f"{router_url}/programs", json=body, timeout=30)
    assert resp.status_code == 201, resp.text
    return pid


def gen_body(rid: str, text: str, max_new_tokens: int, **extra: Any) -> dict[str, Any]:
    params = {"max_new_tokens": max_new_tokens, "temperature": 0.8, "ignore_eos": True}
    return {"rid": rid, "text": text, "sampling_params": params, **extra}


async def running_requests(client: httpx.AsyncClient, worker_url: str) -> int:
    load = (await client.get(f"{worker_url}/get_load")).json()
    return sum(entry["num_reqs"] for entry in load)


async def wait_running(client: httpx.AsyncClient, worker_url: str, n: int) -> None:
    deadline = time.monotonic() + 120
    while await running_requests(client, worker_url) < n:
        assert time.monotonic() < deadline, f"{n} requests never ran on {worker_url}"
        await asyncio.sleep(0.2)


async def wait_inflight(client: httpx.AsyncClient, router_url: str, pid: str, n: int) -> int:
    """Wait until `n` requests of the program are in flight; returns its worker index."""
    deadline = time.monotonic() + 120
    while True:
        info = (await client.get(f"{router_url}/programs/{pid}")).json()
        if info["inflight"] >= n:
            return int(info["worker"])
        assert time.monotonic() < deadline, f"program {pid} never had {n} requests in flight"
        await asyncio.sleep(0.1)


def program(router_url: str, pid: str) -> dict[str, Any]:
    return httpx.get(f"{router_url}/programs/{pid}", timeout=30).json()


def test_fork_program_runs_through_the_router_and_is_accounted(router_url: str) -> None:
    import sglang as sgl

    @sgl.function
    def four_ideas(s, topic):  # type: ignore[no-untyped-def]
        s += "Give one short idea about " + topic + ".\n"
        forks = s.fork(4)
        for f in forks:
            f += "Idea:" + sgl.gen("idea", max_tokens=8, temperature=0.8)
        s["ideas"] = [f["idea"] for f in forks]

    pid = register(router_url)
    backend = sgl.RuntimeEndpoint(f"{router_url}/programs/{pid}", chat_template_name="chatml")
    state = four_ideas.run(topic="saving water", backend=backend)
    assert state.error() is None
    assert len(state["ideas"]) == 4 and all(i.strip() for i in state["ideas"])
    info = program(router_url, pid)
    assert info["requests"] >= 4 and info["inflight"] == 0
    assert info["tokens"]["completion"] >= 4  # four branches generated at least a token each
    # A plain RuntimeEndpoint on the router works unchanged too.
    plain = four_ideas.run(topic="bees", backend=sgl.RuntimeEndpoint(router_url))
    assert plain.error() is None and len(plain["ideas"]) == 4


def test_stop_aborts_every_branch_in_the_worker(router_url: str, cluster: Cluster) -> None:
    pid = register(router_url, cap=8, initial=4, detect_at=4)

    async def scenario() -> tuple[list[httpx.Response], dict[str, Any], int]:
        async with httpx.AsyncClient(timeout=600) as client:
            branches = [
                asyncio.create_task(
                    client.post(
                        f"{router_url}/generate",
                        json=gen_body(
                            f"{pid}::b{i}", "Write a very long story about a dragon.", LONG
                        ),
                    )
                )
                for i in range(4)
            ]
            index = await wait_inflight(client, router_url, pid, 4)
            worker = cluster.workers[index].url
            await wait_running(client, worker, 4)
            report = {"used": 4, "answers": {f"b{i}": "42" for i in range(4)}}
            decision = (
                await client.post(f"{router_url}/programs/{pid}/report", json=report)
            ).json()
            results = await asyncio.gather(*branches)
            await asyncio.sleep(0.5)
            return results, decision, await running_requests(client, worker)

    results, decision, still_running = asyncio.run(scenario())
    assert decision["action"] == "stop" and decision["reason"] == "threshold"
    assert decision["aborted"] == 4
    for r in results:
        meta = r.json()["meta_info"]
        assert meta["finish_reason"]["type"] == "abort"
        assert meta["completion_tokens"] < LONG // 4
    assert still_running == 0
    info = program(router_url, pid)
    assert info["status"] == "stopped" and info["aborted_requests"] == 4
    refused = httpx.post(f"{router_url}/generate", json=gen_body(f"{pid}::b9", "x", 4))
    assert refused.status_code == 409 and "stopped" in refused.json()["error"]["message"]
    metrics = httpx.get(f"{router_url}/metrics").text
    assert 'dynasor_aborts_total{cause="stop"}' in metrics


def test_trim_aborts_exactly_the_named_branch(router_url: str, cluster: Cluster) -> None:
    pid = register(
        router_url, cap=20, initial=4, detect_at=4, trim="minority", thresholds={"entropy": 0.99}
    )

    async def scenario() -> tuple[dict[str, httpx.Response], dict[str, Any]]:
        async with httpx.AsyncClient(timeout=600) as client:
            budgets = {"b0": 40, "b1": 40, "b2": 40, "b3": LONG}
            tasks = {
                b: asyncio.create_task(
                    client.post(
                        f"{router_url}/generate",
                        json=gen_body(f"{pid}::{b}", "Tell me a story.", n),
                    )
                )
                for b, n in budgets.items()
            }
            index = await wait_inflight(client, router_url, pid, 4)
            worker = cluster.workers[index].url
            await wait_running(client, worker, 4)
            report = {"used": 4, "answers": {"b0": "4", "b1": "4", "b2": "4", "b3": "7"}}
            decision = (
                await client.post(f"{router_url}/programs/{pid}/report", json=report)
            ).json()
            return {b: await t for b, t in tasks.items()}, decision

    results, decision = asyncio.run(scenario())
    assert decision["action"] == "trim" and decision["trim"] == ["b3"], decision
    assert decision["aborted"] == 1
    assert results["b3"].json()["meta_info"]["finish_reason"]["type"] == "abort"
    for b in ("b0", "b1", "b2"):
        meta = results[b].json()["meta_info"]
        assert meta["finish_reason"]["type"] == "length" and meta["completion_tokens"] == 40
    refused = httpx.post(f"{router_url}/generate", json=gen_body(f"{pid}::b3", "x", 4))
    assert refused.status_code == 409 and refused.json()["error"]["type"] == "branch_trimmed"
    assert program(router_url, pid)["status"] == "running"


def test_programs_stay_on_their_worker_and_hit_the_prefix_cache(router_url: str) -> None:
    pids = [register(router_url), register(router_url)]
    seen: dict[str, set[int]] = {}
    for pid in pids:
        prefix = f"Program {pid}. " + " ".join(f"Rule {i}: keep {i} apples." for i in range(80))
        first = httpx.post(
            f"{router_url}/programs/{pid}/generate",
            json={"text": prefix, "sampling_params": {"max_new_tokens": 1}},
            timeout=300,
        ).json()
        shared = first["meta_info"]["prompt_tokens"]
        worker = program(router_url, pid)["worker"]
        seen[pid] = {worker}
        for q in range(2):
            out = httpx.post(
                f"{router_url}/programs/{pid}/generate",
                json={
                    "text": prefix + f" Question {q}: how many apples?",
                    "sampling_params": {"max_new_tokens": 1},
                },
                timeout=300,
            ).json()
            seen[pid].add(program(router_url, pid)["worker"])
            assert out["meta_info"]["cached_tokens"] >= 0.9 * shared
    assert all(len(w) == 1 for w in seen.values()), seen
    assert seen[pids[0]] != seen[pids[1]], "two idle workers: the programs should spread out"


def test_a_dying_worker_fails_cleanly_and_the_router_keeps_serving(
    router_url: str, cluster: Cluster
) -> None:
    pid = register(router_url, cap=20)
    victim_index = None

    async def scenario() -> tuple[bytes, httpx.Response]:
        nonlocal victim_index
        async with httpx.AsyncClient(timeout=600) as client:
            body = gen_body(f"{pid}::s", "Write a long poem.", LONG, stream=True)
            async with client.stream("POST", f"{router_url}/generate", json=body) as stream:
                chunks = stream.aiter_bytes()
                first = await anext(chunks)  # something was streamed: no retry is possible
                victim_index = await wait_inflight(client, router_url, pid, 1)
                plain = asyncio.create_task(
                    client.post(
                        f"{router_url}/generate", json=gen_body(f"{pid}::p", "Hello there.", 60)
                    )
                )
                await asyncio.sleep(1.0)
                cluster.workers[victim_index].proc.kill()  # SIGKILL: a crash, not a shutdown
                rest = b"".join([chunk async for chunk in chunks])
            return first + rest, await plain

    streamed, plain = asyncio.run(scenario())
    assert victim_index is not None
    victim = cluster.workers[victim_index]
    try:
        # The streamed request ends with a clear error event, not a hang or a silent cut.
        assert b'"worker_unavailable"' in streamed and b"failed while streaming" in streamed
        # The one that had nothing streamed yet was retried on the other worker.
        assert plain.status_code == 200, plain.text
        assert plain.json()["meta_info"]["completion_tokens"] == 60
        health = httpx.get(f"{router_url}/health").json()
        assert health["healthy_workers"] == 1
        again = httpx.post(
            f"{router_url}/generate", json={"text": "Hi", "sampling_params": {"max_new_tokens": 2}}
        )
        assert again.status_code == 200
    finally:
        victim.stop()
        cluster.workers[victim_index] = victim.restart()
    cluster.workers[victim_index].wait_healthy(600)
    deadline = time.monotonic() + 60
    while httpx.get(f"{router_url}/health").json()["healthy_workers"] < 2:
        assert time.monotonic() < deadline, "the router never took the worker back"
        time.sleep(0.5)
