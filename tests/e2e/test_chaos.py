"""Chaos on the real workers: 40 programs of three algorithms through the router of the session
cluster while clients give up at random and one worker is SIGKILLed and started again. Every
program ends with a result or a clear error; afterwards nothing runs anywhere (the workers'
own load, the router's in-flight counts) and the router's program counts add up."""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from dynasor_sgl import lang as dl
from dynasor_sgl.launch.cluster import Cluster

pytestmark = pytest.mark.e2e

PROGRAMS = 40
SEED = 20261207
# Small knobs: the point is the books, not the answers (two workers share two cores).
KINDS: dict[str, dict[str, Any]] = {
    "self-consistency": {"policy": {"cap": 4}, "params": {"max_tokens": 16}},
    "cot-probe": {"policy": {"cap": 48}, "params": {}},
    "mcts": {"policy": {"cap": 2}, "params": {"max_depth": 2, "step_tokens": 16}},
}
QUESTIONS = ("What is 3 + 4?", "What is the capital of France?", "How many legs has a cat?")


def metrics(url: str) -> dict[str, float]:
    """Each sample of the router's /metrics, summed over labels, by sample name."""
    text = httpx.get(f"{url}/metrics", timeout=30).text
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[sample.name] = out.get(sample.name, 0.0) + sample.value
    return out


def ended(m: dict[str, float]) -> float:
    return m.get("dynasor_programs_ended_total", 0.0)


def worker_load(url: str) -> int:
    load = httpx.get(f"{url}/get_load", timeout=30).json()
    return sum(int(entry["num_reqs"]) for entry in load)


def wait_until(what: str, check: Any, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.5)


def test_programs_end_cleanly_through_cancellations_and_a_worker_crash(
    router_url: str, cluster: Cluster
) -> None:
    rng = random.Random(SEED)
    plan = [
        (
            i,
            rng.choice(list(KINDS)),
            rng.choice(QUESTIONS),
            # a quarter of the clients give up after a few seconds (run_program aborts them)
            rng.uniform(1.0, 6.0) if rng.random() < 0.25 else None,
        )
        for i in range(PROGRAMS)
    ]
    before = metrics(router_url)
    results: dict[int, dl.ProgramResult] = {}
    half_done = threading.Event()

    def one(i: int, name: str, question: str, timeout_s: float | None) -> None:
        kind = KINDS[name]
        results[i] = dl.run_program(
            name,
            question,
            router=router_url,
            policy=kind["policy"],
            params=kind["params"],
            program_id=f"chaos-{i}",
            timeout_s=timeout_s,
        )
        if len(results) >= PROGRAMS // 4:
            half_done.set()

    victim_index = 1
    victim = cluster.workers[victim_index]
    try:
        with ThreadPoolExecutor(8) as pool:
            jobs = [pool.submit(one, *p) for p in plan]
            assert half_done.wait(600), "a quarter of the programs never finished"
            victim.proc.kill()  # SIGKILL mid-run: a crash, not a shutdown
            for job in jobs:
                job.result()
    finally:
        victim.stop()
        cluster.workers[victim_index] = victim.restart()
    cluster.workers[victim_index].wait_healthy(600)
    wait_until(
        "the router never took the worker back",
        lambda: httpx.get(f"{router_url}/health").json()["healthy_workers"] == 2,
    )

    # Every program ended with a result or a clear error, none silently.
    assert len(results) == PROGRAMS
    for i, result in results.items():
        if result.status == "ok":
            assert result.exit_reason, (i, result)
        else:
            assert result.error and result.error.strip(), (i, result)
    statuses = [r.status for r in results.values()]
    assert statuses.count("ok") >= PROGRAMS // 2, statuses

    # Nothing runs anywhere once the aborts are back.
    wait_until(
        "requests still ran in a worker",
        lambda: all(worker_load(w.url) == 0 for w in cluster.workers),
    )
    wait_until(
        "the router still counted requests in flight",
        lambda: metrics(router_url).get("dynasor_worker_inflight", 0) == 0,
    )
    for i in range(PROGRAMS):
        shown = httpx.get(f"{router_url}/programs/chaos-{i}", timeout=30).json()
        assert shown["status"] != "running" and shown["inflight"] == 0, shown

    # The books: every program registered here ended once, by one exit reason.
    after = metrics(router_url)
    registered = after["dynasor_programs_registered_total"] - before.get(
        "dynasor_programs_registered_total", 0.0
    )
    assert registered == PROGRAMS
    assert ended(after) - ended(before) == PROGRAMS
    assert after["dynasor_programs_active"] == 0
