"""The router app in front of fake SGLang workers, an ASGI client for it, and assertions.

Shared by the HTTP tests. ASGITransport runs no lifespan, so `routed` starts and closes the
Router by hand (the app is wrapped by the Guard middleware: the Router is
`guard.app.state.router`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fake_worker import FakeWorker

from dynasor_sgl.router.app import create_app
from dynasor_sgl.router.config import RouterConfig
from dynasor_sgl.router.core import Router
from dynasor_sgl.scheduling.limiter import LimiterConfig

# Detect at 4 samples; four equal answers are certain, 3 against 1 is not (entropy 0.59).
POLICY = {"cap": 8, "initial": 4, "pace": 4, "detect_at": 4}
LONG = 2000  # tokens: ~10 s at the fake's pace, so only an abort ends these early
BRANCH = "X-Dynasor-Branch"
# A program whose first report, uncertain, reserves every free slot: expansion past pending
# readings (not the default), so that the reservation bookkeeping is exercised.
STALL_POLICY = {
    "cap": 20,
    "initial": 2,
    "pace": 2,
    "detect_at": 2,
    "detect_every": 2,
    "expand_past_readings": True,
}

Setup = tuple[httpx.AsyncClient, Router, list[FakeWorker]]


def run(test: Callable[[], Coroutine[Any, Any, None]], timeout: float = 30) -> None:
    asyncio.run(asyncio.wait_for(test(), timeout))


@asynccontextmanager
async def setup(
    workers: int = 1, token_delay: float = 0.005, first_delay: float = 0, **config: Any
) -> AsyncIterator[Setup]:
    """`workers` fresh fake workers with the router in front (config overrides in `config`)."""
    fakes = [FakeWorker(token_delay, first_delay=first_delay) for _ in range(workers)]
    for fake in fakes:
        await fake.start()
    try:
        async with routed(*fakes, **config) as (client, router):
            yield client, router, fakes
    finally:
        for fake in fakes:
            await fake.stop()


def error_of(resp: httpx.Response, status: int) -> dict[str, Any]:
    """The router's JSON error, after checking the status and the shape."""
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    error = resp.json()["error"]
    assert isinstance(error["message"], str) and error["message"]
    assert error["code"] == error["type"] and "param" in error  # OpenAI's error object
    return error


def gen(text: str | list[str] = "a b c", max_new: int = LONG, **extra: Any) -> dict[str, Any]:
    return {"text": text, "sampling_params": {"max_new_tokens": max_new}, **extra}


async def register(client: httpx.AsyncClient, pid: str, **policy: Any) -> dict[str, Any]:
    resp = await client.post("/programs", json={"program_id": pid, "policy": {**POLICY, **policy}})
    assert resp.status_code == 201, resp.text
    return resp.json()


def finish_reason(resp: httpx.Response) -> str:
    assert resp.status_code == 200, resp.text
    return resp.json()["meta_info"]["finish_reason"]["type"]


def sse_events(text: str) -> list[Any]:
    chunks = [c for c in text.split("\n\n") if c]
    assert all(c.startswith("data: ") for c in chunks), text
    assert chunks[-1] == "data: [DONE]"
    return [json.loads(c[6:]) for c in chunks[:-1]]


def assert_idle(router: Router) -> None:
    for w in router.pool.workers:
        assert (w.inflight, w.queued) == (0, 0), w
    assert router.admission.queue_length() == 0


@asynccontextmanager
async def routed(
    *workers: FakeWorker, **overrides: Any
) -> AsyncIterator[tuple[httpx.AsyncClient, Router]]:
    """The router app in front of `workers` (started), and an ASGI client for it.

    ASGITransport runs no lifespan, so the Router is started and closed here by hand.
    """
    settings: dict[str, Any] = {"health_interval_s": 0.2, **overrides}
    config = RouterConfig(worker_urls=tuple(w.url for w in workers), **settings)
    guard = create_app(config)
    router: Router = guard.app.state.router
    await router.start()
    # A crash must come back as the 500 a real client would see, not as a raised exception.
    transport = httpx.ASGITransport(app=guard, raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://router") as client:
            yield client, router
    finally:
        await router.close()


async def until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait until `cond()` holds (observing state, polled; not a sleep that orders events)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        assert loop.time() < end, "condition not reached"
        await asyncio.sleep(0.005)


def restless_limiter(initial: int, max_limit: int) -> LimiterConfig:
    """An adaptive limiter whose every completion is a window (after the first, which starts
    its clock): the limit moves at each one, from `initial` within 1..`max_limit`."""
    return LimiterConfig(
        initial=initial,
        min_limit=1,
        max_limit=max_limit,
        window_s=1e-9,
        min_samples=1,
        step_fraction=0.5,
        hold_windows=0,
        busy_share=0.0,
    )
