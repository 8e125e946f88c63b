"""The fake worker of the unit tests behaves as the real SGLang worker does: each behaviour the
router's books depend on is run against both, the same request, the same observation.

Behaviours: /abort_request ends every request whose rid starts with the rid given; streams are
cumulative; the samples of n > 1 run under fresh rids the client does not know; a connection
idle for 5 s is closed by the worker."""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest

from unit.fake_worker import KEEP_ALIVE_S, FakeWorker, LoopThread

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def fake_url() -> Iterator[str]:
    loop = LoopThread()
    fake = FakeWorker(token_delay=0.02)
    try:
        yield loop.run(fake.start())
    finally:
        loop.run(fake.stop())
        loop.close()


@pytest.fixture(params=["real", "fake"])
def url(request: pytest.FixtureRequest) -> str:
    name = "worker_url" if request.param == "real" else "fake_url"
    return str(request.getfixturevalue(name))


def body(rid: str | None, max_new: int, **extra: Any) -> dict[str, Any]:
    params = {"max_new_tokens": max_new, "temperature": 0.0, "ignore_eos": True}
    out: dict[str, Any] = {"text": "Count to a thousand:", "sampling_params": params, **extra}
    if rid is not None:
        out["rid"] = rid
    return out


def events(lines: list[str]) -> list[dict[str, Any]]:
    return [json.loads(line[6:]) for line in lines if line.startswith("data: {")]


def test_an_abort_ends_every_request_whose_rid_starts_with_it(url: str) -> None:
    base = f"dbl-{uuid.uuid4().hex[:8]}"
    rids = [f"{base}-1", f"{base}-10"]  # the first is a prefix of the second

    async def scenario() -> list[dict[str, Any]]:
        async with httpx.AsyncClient(timeout=300) as client:

            async def stream(rid: str, started: asyncio.Event) -> list[str]:
                seen: list[str] = []
                payload = body(rid, 4000, stream=True)
                async with client.stream("POST", f"{url}/generate", json=payload) as resp:
                    async for line in resp.aiter_lines():
                        seen.append(line)
                        if line.startswith("data: {"):
                            started.set()
                return seen

            flags = [asyncio.Event(), asyncio.Event()]
            tasks = [asyncio.create_task(stream(r, f)) for r, f in zip(rids, flags, strict=True)]
            for flag in flags:  # both run (each streamed a token) before the abort
                await asyncio.wait_for(flag.wait(), 300)
            aborted = await client.post(f"{url}/abort_request", json={"rid": rids[0]})
            assert aborted.status_code == 200, aborted.text
            results = await asyncio.wait_for(asyncio.gather(*tasks), 300)
        return [events(lines)[-1] for lines in results]

    last = asyncio.run(scenario())
    for event in last:
        assert event["meta_info"]["finish_reason"]["type"] == "abort", event["meta_info"]
        assert event["meta_info"]["completion_tokens"] < 4000


def test_a_stream_is_cumulative(url: str) -> None:
    with httpx.stream("POST", f"{url}/generate", json=body(None, 8, stream=True), timeout=300) as r:
        seen = events(list(r.iter_lines()))
    texts = [e["text"] for e in seen]
    assert len(texts) >= 2
    assert all(b.startswith(a) for a, b in itertools.pairwise(texts)), texts
    assert seen[-1]["meta_info"]["completion_tokens"] == 8


def test_the_samples_of_n_run_under_fresh_rids(url: str) -> None:
    rid = f"par-{uuid.uuid4().hex[:8]}"
    params = {"max_new_tokens": 2, "temperature": 0.7, "n": 2}
    reply = httpx.post(
        f"{url}/generate",
        json={"text": "Say hi.", "rid": rid, "sampling_params": params},
        timeout=300,
    )
    assert reply.status_code == 200, reply.text
    samples = reply.json()
    assert isinstance(samples, list) and len(samples) == 2
    ids = [s["meta_info"]["id"] for s in samples]
    assert len(set(ids)) == 2 and not any(i.startswith(rid) for i in ids), ids


def test_an_idle_connection_is_closed_by_the_worker(url: str) -> None:
    where = urlparse(url)
    with socket.create_connection((where.hostname, where.port), timeout=30) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: worker\r\nConnection: keep-alive\r\n\r\n")
        first = sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 200"), first[:80]
        idle_from = time.monotonic()
        sock.settimeout(KEEP_ALIVE_S * 4)
        rest = b""
        while chunk := sock.recv(65536):  # b"": the worker closed the connection
            rest += chunk
        idle = time.monotonic() - idle_from
    # Closed by the worker's keep-alive timeout: not before it, and long before ours.
    assert KEEP_ALIVE_S - 1 <= idle < KEEP_ALIVE_S * 4, idle
