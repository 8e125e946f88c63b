"""Online serving on the real CPU worker: the router's queue orders saturated work (a short
program that arrives after a long one finishes first under sjf, not under fifo), the deadline
stop ends a late program with its current answer, and one program's reports apply in order.

Each test starts its own `dynasor-sgl router` (a second or two) in front of a worker of the
shared session cluster, with a bound of one request in flight so the queue is in the router."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from dynasor_sgl import lang as dl
from dynasor_sgl.launch.worker import free_ports
from dynasor_sgl.online.servers import serve_router
from dynasor_sgl.online.systems import router_argv

pytestmark = pytest.mark.e2e


@contextmanager
def router(worker_url: str, log_dir: Path, *options: str) -> Iterator[str]:
    port = free_ports("127.0.0.1", 38400, 1)[0]
    cmd = router_argv(worker_url, port, options)
    with serve_router(cmd, port, log_dir / f"router-{port}.log", start_s=60) as url:
        yield url


def generate(url: str, pid: str, max_new: int, done: list[str]) -> None:
    body = {
        "text": f"Count slowly from one ({pid}):",
        "sampling_params": {"max_new_tokens": max_new, "temperature": 0.0, "ignore_eos": True},
    }
    reply = httpx.post(f"{url}/programs/{pid}/generate", json=body, timeout=300)
    assert reply.status_code == 200, reply.text
    done.append(pid)


def router_gauge(url: str, name: str) -> float:
    """One unlabelled sample (or the sum over labels) of the router's /metrics."""
    reply = httpx.get(f"{url}/metrics", timeout=30)
    assert reply.status_code == 200, reply.text
    for family in text_string_to_metric_families(reply.text):
        if family.name == name:
            return sum(sample.value for sample in family.samples)
    raise AssertionError(f"{name} not in the router's metrics")


def wait_for(url: str, name: str, value: float, timeout_s: float = 120) -> None:
    """Waits until the router's gauge `name` reads `value`: the test observes the router's
    state instead of guessing how long a step takes."""
    deadline = time.monotonic() + timeout_s
    while (seen := router_gauge(url, name)) != value:
        assert time.monotonic() < deadline, f"{name} stayed {seen}, expected {value}"
        time.sleep(0.01)


def finish_order(url: str) -> list[str]:
    """A blocker holds the one slot; then a long program (20 samples to go) queues, then a
    short one (1 sample); the blocker is aborted; returns the order in which the two finished.

    Each step waits for the router to show the state the next one needs (the blocker in
    flight, one then two requests queued), and the blocker holds its slot until it is aborted,
    so no step depends on how fast the worker decodes."""
    for pid, cap in (("long", 20), ("short", 1)):
        reply = httpx.post(
            f"{url}/programs",
            json={"program_id": pid, "algorithm": "sc", "policy": {"cap": cap}},
            timeout=30,
        )
        assert reply.status_code == 201, reply.text
    done: list[str] = []
    blocker_rid = f"blocker-{uuid.uuid4().hex}"
    with ThreadPoolExecutor(4) as pool:
        blocker = pool.submit(
            httpx.post,
            f"{url}/generate",
            timeout=300,
            json={
                "text": "Say hello.",
                "rid": blocker_rid,
                "sampling_params": {"max_new_tokens": 4096, "ignore_eos": True},
            },
        )
        wait_for(url, "dynasor_worker_inflight", 1)
        jobs = [pool.submit(generate, url, "long", 16, done)]
        wait_for(url, "dynasor_queue_length", 1)
        jobs.append(pool.submit(generate, url, "short", 16, done))
        wait_for(url, "dynasor_queue_length", 2)
        aborted = httpx.post(f"{url}/abort_request", json={"rid": blocker_rid}, timeout=30)
        assert aborted.status_code == 200, aborted.text
        blocker.result()
        for job in jobs:
            job.result()
    return done


@pytest.mark.parametrize("scheduling, first", [("sjf", "short"), ("fifo", "long")])
def test_the_router_queue_orders_saturated_work(
    worker_url: str, tmp_path: Path, scheduling: str, first: str
) -> None:
    opts = ("--scheduling", scheduling, "--max-inflight-per-worker", "1")
    with router(worker_url, tmp_path, *opts) as url:
        order = finish_order(url)
    assert order[0] == first, order


def test_a_late_program_ends_as_deadline_with_its_current_answer(
    worker_url: str, tmp_path: Path
) -> None:
    with router(worker_url, tmp_path, "--deadline-stop") as url:
        result = dl.run_program(
            "self-consistency",
            "How many days are in a week?",
            router=url,
            deadline_s=0.5,
            # near-greedy, so the samples it has hold an answer (at temperature 1.0 all five
            # 16-token samples were rambles with none, once in CI)
            params={"max_tokens": 16, "temperature": 0.2},
            policy={"thresholds": {}},
        )
        shown = httpx.get(f"{url}/programs/{result.program_id}", timeout=30).json()
    assert result.ok, result.error
    assert result.exit_reason == "deadline" and shown["exit_reason"] == "deadline"
    assert result.steps == 5 and result.answer is not None  # the 5 samples it had


def test_reports_of_one_program_apply_in_the_order_they_arrived(
    worker_url: str, tmp_path: Path
) -> None:
    with router(worker_url, tmp_path) as url:
        policy = {
            "cap": 200,
            "detect_at": 1,
            "detect_every": 1,
            "rule": "posterior",
            "mc_samples": 100_000,
        }
        reply = httpx.post(f"{url}/programs", json={"program_id": "p", "policy": policy})
        assert reply.status_code == 201, reply.text
        # The first report is slow to decide (a 100,000-draw posterior over 120 answers), the
        # second fast and sent while the first is being decided: without the per-program lock
        # the second would be applied first.
        slow = {"used": 120, "answers": {f"b{i}": str(i % 60) for i in range(120)}}
        fast = {"used": 121, "answers": {"b0": "1"}}
        replies: dict[int, httpx.Response] = {}

        def post(body: dict[str, object]) -> None:
            replies[int(str(body["used"]))] = httpx.post(
                f"{url}/programs/p/report", json=body, timeout=120
            )

        first = threading.Thread(target=post, args=(slow,))
        first.start()
        wait_for(url, "dynasor_reports_deciding", 1)  # the slow one holds the program's lock
        post(fast)
        first.join()
        shown = httpx.get(f"{url}/programs/p", timeout=30).json()
    assert all(r.status_code == 200 for r in replies.values())
    assert [c["used"] for c in shown["certaindex"]] == [120, 121] and shown["used"] == 121
