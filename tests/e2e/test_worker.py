"""The real SGLang CPU worker, as started by `run_cluster`, serves what we rely on."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import httpx
import pytest

from dynasor_sgl.launch.cluster import Cluster
from dynasor_sgl.sim.steps import steps_from_lines

pytestmark = pytest.mark.e2e


def generate(url: str, text: str, max_new_tokens: int = 8, **params: object) -> dict:
    body = {
        "text": text,
        "sampling_params": {"max_new_tokens": max_new_tokens, "temperature": 0.0, **params},
    }
    resp = httpx.post(f"{url}/generate", json=body, timeout=120)
    resp.raise_for_status()
    return resp.json()


def test_generate_returns_text(worker_url: str) -> None:
    out = generate(worker_url, "The capital of France is", max_new_tokens=8)
    assert isinstance(out["text"], str) and out["text"].strip()
    meta = out["meta_info"]
    assert meta["completion_tokens"] >= 1
    assert meta["finish_reason"]["type"] in ("length", "stop")


def test_step_trace_times_every_step_the_worker_runs(cluster: Cluster) -> None:
    worker = cluster.workers[0]
    trace = Path(str(cluster.config.step_trace))
    prompt = f"Trace {uuid.uuid4().hex}: count from one to twenty."
    out = generate(worker.url, prompt, max_new_tokens=6, ignore_eos=True)
    assert out["meta_info"]["completion_tokens"] == 6
    lines = [json.loads(x) for x in trace.read_text().splitlines()]
    mine = [x for x in lines if x["worker"] == worker.port]
    assert {x["mode"] for x in mine} >= {"decode", "extend"}
    new_tokens = out["meta_info"]["prompt_tokens"] - out["meta_info"]["cached_tokens"]
    assert any(x["mode"] == "extend" and x["new_tokens"] == new_tokens for x in mine)
    steps = steps_from_lines(mine)
    assert all(0 < s.seconds < 30 for s in steps)
    assert sum(s.mode == "decode" for s in steps) >= 5  # the first token comes with the prefill


def test_shared_prefix_is_served_from_radix_cache(worker_url: str) -> None:
    # A prefix unique to this run, so no earlier request can have cached it.
    tag = uuid.uuid4().hex
    prefix = f"Session {tag}. " + " ".join(
        f"Fact {i}: the number {i} squared is {i * i}." for i in range(60)
    )
    first = generate(worker_url, prefix, max_new_tokens=1)
    prefix_tokens = first["meta_info"]["prompt_tokens"]
    assert prefix_tokens > 500
    second = generate(worker_url, prefix + " Question: what is 7 squared?", max_new_tokens=1)
    cached = second["meta_info"]["cached_tokens"]
    assert cached >= 0.9 * prefix_tokens, (cached, prefix_tokens)


def test_fork_program_through_runtime_endpoint(worker_url: str) -> None:
    import sglang as sgl

    @sgl.function
    def four_ideas(s, topic):  # type: ignore[no-untyped-def]
        s += "Give one short idea about " + topic + ".\n"
        forks = s.fork(4)
        for f in forks:
            f += "Idea:" + sgl.gen("idea", max_tokens=12, temperature=0.8)
        s["ideas"] = [f["idea"] for f in forks]

    backend = sgl.RuntimeEndpoint(worker_url, chat_template_name="chatml")
    state = four_ideas.run(topic="saving water", backend=backend)
    assert state.error() is None
    ideas = state["ideas"]
    assert len(ideas) == 4
    assert all(isinstance(i, str) and i.strip() for i in ideas)


def test_regex_constrained_gen_matches_and_worker_survives(worker_url: str) -> None:
    import sglang as sgl

    @sgl.function
    def year(s):  # type: ignore[no-untyped-def]
        s += "In which year did Apollo 11 land on the Moon? Answer: "
        s += sgl.gen("year", max_tokens=8, regex=r"[0-9]{4}", temperature=0.0)

    backend = sgl.RuntimeEndpoint(worker_url, chat_template_name="chatml")
    state = year.run(backend=backend)
    assert state.error() is None
    assert re.fullmatch(r"[0-9]{4}", state["year"]), state["year"]
    # The default grammar backend (xgrammar) would have killed the worker by now.
    assert httpx.get(f"{worker_url}/health", timeout=30).status_code == 200
    assert generate(worker_url, "Hello", max_new_tokens=2)["text"] is not None
