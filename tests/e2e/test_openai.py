"""The OpenAI door on the real CPU workers, through the official `openai` SDK: early exit on
chat completions (non-streaming and streaming), the same response as the worker's without it,
and a client that hangs up mid-stream."""

from __future__ import annotations

import re
import time
from typing import Any

import httpx
import openai
import pytest

from dynasor_sgl.launch.cluster import Cluster
from dynasor_sgl.programs.steps import SYSTEM

pytestmark = pytest.mark.e2e

# The CoT test's question and system prompt: greedy probes on it give a non-empty, unhesitating
# answer after the first 32 tokens (0.6 on this machine: the tiny model's probes are weak), and
# without early exit the model writes ~120 tokens. Which later probes agree depends on the CPU
# (see test_programs.py), so the stop reads a window of one probe; agreement over longer windows
# is unit-tested.
QUESTION = (
    "A train travels 60 miles per hour for 3 hours. How far does it travel? "
    "Explain each step carefully."
)
MESSAGES: list[Any] = [
    {"role": "system", "content": SYSTEM},
    {"role": "user", "content": QUESTION},
]
EARLY = {"dynasor": {"probe_interval": 32, "certainty_window": 1}}
BUDGET = 200


def client(router_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{router_url}/v1", api_key="unused", max_retries=0)


def metric(router_url: str, line: str) -> float:
    for row in httpx.get(f"{router_url}/metrics", timeout=30).text.splitlines():
        if row.startswith(line + " "):
            return float(row.split()[-1])
    return 0.0


def shape(value: Any) -> Any:
    """The field names of a JSON value, recursively (values aside)."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(v) for v in value[:1]]
    return None


def test_without_dynasor_the_response_is_the_workers(router_url: str, worker_url: str) -> None:
    body = {"model": "default", "messages": MESSAGES, "max_tokens": 12, "temperature": 0}
    via_router = httpx.post(f"{router_url}/v1/chat/completions", json=body, timeout=300)
    direct = httpx.post(f"{worker_url}/v1/chat/completions", json=body, timeout=300)
    assert via_router.status_code == direct.status_code == 200
    assert shape(via_router.json()) == shape(direct.json())
    ours, theirs = via_router.json()["choices"][0], direct.json()["choices"][0]
    assert ours["message"]["content"] == theirs["message"]["content"]


def test_early_exit_answers_with_fewer_tokens_than_without(router_url: str) -> None:
    sdk = client(router_url)
    aborts = metric(router_url, 'dynasor_aborts_total{cause="stop"}')
    plain = sdk.chat.completions.create(
        model="default", messages=MESSAGES, max_tokens=BUDGET, temperature=0
    )
    early = sdk.chat.completions.create(
        model="default", messages=MESSAGES, max_tokens=BUDGET, temperature=0, extra_body=EARLY
    )
    assert plain.usage is not None and early.usage is not None
    dyn = early.usage.model_dump()["dynasor"]
    assert dyn["exit_reason"] == "certain" and dyn["answer"]
    content = early.choices[0].message.content or ""
    assert content.strip() and dyn["answer"] in content and "suddenly" not in content
    assert early.choices[0].finish_reason == "stop"
    assert early.usage.completion_tokens < plain.usage.completion_tokens
    details = early.usage.completion_tokens_details
    assert details is not None and details.reasoning_tokens is not None
    assert early.usage.completion_tokens == details.reasoning_tokens + dyn["probe_tokens"]
    assert dyn["tokens_saved"] > 0 and dyn["certaindex"][-1]["consistency"] == 1.0
    # The reasoning chunk running when the probe answered was aborted in the worker.
    assert metric(router_url, 'dynasor_aborts_total{cause="stop"}') > aborts


def test_early_exit_streams_openai_chunks(router_url: str) -> None:
    stream = client(router_url).chat.completions.create(
        model="default",
        messages=MESSAGES,
        max_tokens=BUDGET,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
        extra_body=EARLY,
    )
    parts, finishes, usage = [], [], None
    for chunk in stream:
        if chunk.choices:
            parts.append(chunk.choices[0].delta.content or "")
            finishes.append(chunk.choices[0].finish_reason)
        if chunk.usage is not None:
            usage = chunk.usage.model_dump()
    content = "".join(parts)
    assert usage is not None and usage["dynasor"]["exit_reason"] == "certain"
    assert content.strip() and usage["dynasor"]["answer"] in content
    assert finishes[-1] == "stop" and len(parts) > 3
    assert "suddenly" not in content


def _running(cluster: Cluster) -> int:
    total = 0
    for w in cluster.workers:
        load = httpx.get(f"{w.url}/get_load", timeout=30).json()
        total += sum(entry["num_reqs"] for entry in load)
    return total


@pytest.mark.parametrize("early", [False, True], ids=["plain", "early-exit"])
def test_a_client_gone_mid_stream_frees_the_worker_within_a_second(
    router_url: str, cluster: Cluster, early: bool
) -> None:
    body: dict[str, Any] = {"model": "default", "messages": MESSAGES, "max_tokens": 1000}
    body |= {"stream": True, "temperature": 0.8, **(EARLY if early else {})}
    with httpx.stream("POST", f"{router_url}/v1/chat/completions", json=body, timeout=300) as r:
        seen = b""
        for chunk in r.iter_bytes():  # until the first generated text: it is running
            seen += chunk
            if re.search(rb'"content": ?"[^"]', seen):
                break
        assert _running(cluster) >= 1
    deadline = time.monotonic() + 1.0
    while _running(cluster) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _running(cluster) == 0
