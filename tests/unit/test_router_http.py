"""The router's SGLang surface over HTTP (real ASGI client, fake workers): forwarding,
bad input, limits, API key, metrics, and workers that fail or go away."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from router_harness import (
    BRANCH,
    LONG,
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

# -- the SGLang surface --------------------------------------------------------------------


def test_generate_is_forwarded_byte_for_byte_plain_and_streaming() -> None:
    async def scenario() -> None:
        async with setup() as (client, router, (fake,)), httpx.AsyncClient() as direct:
            for body in (gen(max_new=5, rid="fixed"), gen(max_new=5, rid="fixed2", stream=True)):
                via_router = await client.post("/generate", json=body)
                # Nothing added on the way but the rid: the worker runs one of the router's
                # (SGLang aborts by rid prefix); the reply shows the client's again.
                sent = fake.generate_bodies[-1]
                assert {**sent, "rid": body["rid"]} == body
                assert re.fullmatch(r"[0-9a-f]{32}", sent["rid"])
                straight = await direct.post(fake.url + "/generate", json=body)
                assert via_router.status_code == straight.status_code == 200
                assert via_router.content == straight.content
                kind = via_router.headers["content-type"].split(";")[0]
                assert kind == straight.headers["content-type"].split(";")[0]
            events = sse_events(via_router.text)
            assert len(events) == 6 and events[-1]["meta_info"]["finish_reason"]["type"] == "length"
            batch = await client.post("/generate", json=gen(["a", "b c"], 2, rid=["x", "y"]))
            assert [o["meta_info"]["id"] for o in batch.json()] == ["x", "y"]
            assert_idle(router)
            assert router._plain_rids == {}  # streamed ones too: no rid is remembered after

    run(scenario)


def test_read_only_routes_health_and_flush_fan_out() -> None:
    async def scenario() -> None:
        async with setup(workers=2) as (client, _, fakes), httpx.AsyncClient() as direct:
            expected = (await direct.get(fakes[0].url + "/get_model_info")).content
            for path in ("/get_model_info", "/programs/anything/get_model_info"):
                resp = await client.get(path)
                assert resp.status_code == 200 and resp.content == expected
            assert (await client.get("/get_server_info")).json()["version"] == "fake"
            assert (await client.get("/v1/models")).json()["data"][0]["id"] == "fake/model"
            health = await client.get("/health")
            assert health.status_code == 200 and health.json()["healthy_workers"] == 2
            flush = await client.post("/flush_cache")
            assert flush.status_code == 200 and flush.json() == {"flushed": 2}
            assert [f.flushes for f in fakes] == [1, 1]

    run(scenario)


def test_worker_priority_is_passed_when_enabled() -> None:
    async def scenario() -> None:
        async with setup(worker_priority=True, scheduling="sjf") as (client, _, (fake,)):
            await register(client, "p")
            await client.post("/generate", json=gen(max_new=2))
            await client.post("/programs/p/generate", json=gen(max_new=2))
            plain, tagged = fake.generate_bodies
            # A plain request is a job of its own max_new_tokens, scored like any program: a
            # 2-token request outranks an 8-sample program (256 tokens a sample before it
            # reports), and both levels come from the same formula.
            assert isinstance(tagged["priority"], int) and 0 <= tagged["priority"] <= 1000
            assert plain["priority"] == 1000 > tagged["priority"] == 1000 - 8 * 256 // 64

    run(scenario)


def test_abort_request_by_rid_reaches_the_worker() -> None:
    async def scenario() -> None:
        async with setup() as (client, router, (fake,)):
            task = asyncio.create_task(client.post("/generate", json=gen(rid="plain-1")))
            await fake.wait_running(1)
            resp = await client.post("/abort_request", json={"rid": "plain-1"})
            assert resp.status_code == 200 and resp.json() == {"workers": 1, "ok": 1}
            done = await task
            assert finish_reason(done) == "abort"
            assert done.json()["meta_info"]["completion_tokens"] < LONG
            error_of(await client.post("/abort_request", json={}), 400)
            resp = await client.post("/abort_request", json={"abort_all": True})
            assert resp.json()["ok"] == 1 and fake.aborts[-1] == {"abort_all": True}
            assert_idle(router)

    run(scenario)


def test_bad_input_is_a_json_400() -> None:
    async def scenario() -> None:
        async with setup() as (client, _, _):
            await register(client, "p")
            raw, kind = b"{not json", {"content-type": "application/json"}
            for path in ("/generate", "/programs/p/generate", "/programs", "/programs/p/report"):
                error_of(await client.post(path, content=raw, headers=kind), 400)
            resp = await client.post("/generate", content=raw, headers=kind)
            assert "JSON" in error_of(resp, 400)["message"]
            cases: list[tuple[str, Any, str]] = [
                ("/generate", [1, 2], "JSON object"),
                ("/generate", {"text": 5}, "text"),
                ("/generate", {}, "text or input_ids"),
                ("/generate", gen(sampling_params={"temperature": -1}), "temperature"),
                ("/generate", gen(sampling_params={"max_new_tokens": 1e12}), "max_new_tokens"),
                ("/programs/p/generate", {"text": ["a", "b"]}, "one prompt"),
                ("/programs", {"algorithm": "nope"}, "algorithm"),
                ("/programs", {"bogus": 1}, "bogus"),
                ("/programs", {"policy": {"cap": 0}}, "cap"),
                ("/programs", {"policy": {"no_such_knob": 1}}, "no_such_knob"),
                ("/programs", {"program_id": "a b"}, "program_id"),
                ("/programs", {"deadline_s": -1}, "deadline_s"),
                ("/programs/p/report", {"used": -1}, "used"),
                ("/programs/p/report", {}, "used"),
                ("/programs/p/report", {"used": 1, "answers": ["x"]}, "answers"),
                ("/programs/p/finish", {"answer": 5}, "answer"),
                ("/abort_request", "x", "JSON object"),
            ]
            for path, body, word in cases:
                error = error_of(await client.post(path, json=body), 400)
                assert word in error["message"], (path, body, error)
            headers = {BRANCH: "no spaces"}
            error_of(await client.post("/programs/p/generate", json=gen(), headers=headers), 400)
            error_of(await client.post("/programs", json={"program_id": "p"}), 409)

    run(scenario)


def test_oversize_bodies_are_413() -> None:
    async def scenario() -> None:
        async with setup(max_body_bytes=1000) as (client, _, _):
            fits = gen(text="x" * 900, max_new=1)
            assert (await client.post("/generate", json=fits)).status_code == 200
            big = gen(text="x" * 2000, max_new=1)
            assert error_of(await client.post("/generate", json=big), 413)["type"] == "too_large"
            error_of(await client.post("/programs", json={"program_id": "p" * 2000}), 413)

    run(scenario)


# Regression (fixed): a body without Content-Length (chunked) that grows past the limit
# raises `_TooLarge` inside the app; FastAPI's catch-all Exception handler answers it with a
# 500 first, so Guard's own 413 is never sent.
def test_an_oversize_chunked_body_is_413_too() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"text": "'
        for _ in range(10):
            yield b"x" * 200
        yield b'"}'

    async def scenario() -> None:
        async with setup(max_body_bytes=1000) as (client, _, _):
            resp = await client.post("/generate", content=chunks())
            assert "content-length" not in resp.request.headers
            assert error_of(resp, 413)["type"] == "too_large"

    run(scenario)


def test_api_key_is_required_on_every_route() -> None:
    async def scenario() -> None:
        async with setup(api_key="s3cret") as (client, _, _):
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
                for path in ("/health", "/metrics", "/programs"):
                    error = error_of(await client.get(path, headers=headers), 401)
                    assert error["type"] == "unauthorized"
                error_of(await client.post("/generate", json=gen(), headers=headers), 401)
            good = {"Authorization": "Bearer s3cret"}
            assert (await client.get("/health", headers=good)).status_code == 200
            resp = await client.post("/generate", json=gen(max_new=2), headers=good)
            assert finish_reason(resp) == "length"

    run(scenario)


def test_metrics_after_activity() -> None:
    async def scenario() -> None:
        async with setup() as (client, _, _):
            await client.post("/generate", json=gen(max_new=2))
            await client.post("/generate", json=gen(max_new=2, stream=True))
            resp = await client.get("/metrics")
            assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/plain")
            text = resp.text
            assert 'dynasor_requests_total{endpoint="generate",status="200"} 1.0' in text
            assert 'dynasor_requests_total{endpoint="generate",status="stream"} 1.0' in text
            assert 'dynasor_worker_healthy{worker="0"} 1.0' in text
            assert 'dynasor_worker_inflight{worker="0"} 0.0' in text
            assert 'dynasor_inflight_limit{worker="0"} 12.0' in text
            assert "dynasor_queue_length 0.0" in text

    run(scenario)


def test_completions_reach_the_limiter_and_the_programs_attained_service() -> None:
    """Each request that ends with a reply (plain or streamed) is a completion for its
    worker's limiter; a program's is credited, in tokens, to its attained service (plas)."""

    async def scenario() -> None:
        async with setup(scheduling="plas", inflight_limit="adaptive") as (client, router, _):
            queue = router.admission.queue
            await client.post("/generate", json=gen(max_new=2))
            await client.post("/generate", json=gen(max_new=3, stream=True))
            window = queue.limiter_of(0)._window  # the first completion started its clock
            assert (window.start is not None, window.samples, window.tokens) == (True, 1, 3)
            await register(client, "p")
            await client.post("/programs/p/generate", json=gen(max_new=4))
            assert queue.scheduler(0)._programs["p"].served == 4
            assert (window.samples, window.tokens) == (2, 7)

    run(scenario)


# -- workers going away --------------------------------------------------------------------


def test_worker_down_gives_503_json_and_comes_back() -> None:
    async def scenario() -> None:
        async with setup(health_interval_s=0.05) as (client, router, (fake,)):
            await register(client, "p")
            port = fake.port
            await fake.stop()
            for path in ("/generate", "/programs/p/generate"):
                error = error_of(await client.post(path, json=gen()), 503)
                assert "worker" in error["message"] and error["type"] == "worker_unavailable"
            error = error_of(await client.get("/health"), 503)
            assert "no healthy" in error["message"]
            error_of(await client.get("/get_model_info"), 503)
            error_of(await client.post("/abort_request", json={"rid": "x"}), 503)
            await fake.start(port)
            for _ in range(200):
                if (await client.get("/health")).status_code == 200:
                    break
                await asyncio.sleep(0.01)
            assert finish_reason(await client.post("/generate", json=gen(max_new=2))) == "length"
            assert_idle(router)

    run(scenario)


def test_programs_stay_on_their_worker_and_fail_over_when_it_dies() -> None:
    async def scenario() -> None:
        async with setup(workers=2) as (client, router, fakes):
            await register(client, "p")
            await register(client, "q")
            hold = asyncio.create_task(client.post("/programs/p/generate", json=gen()))
            await fakes[0].wait_running(1)  # p is on worker 0 and busy: q goes to worker 1
            await client.post("/programs/q/generate", json=gen(max_new=2))
            (held,) = fakes[0].running
            await client.post("/abort_request", json={"rid": held})
            assert finish_reason(await hold) == "abort"
            for pid in ("p", "q", "p", "q"):
                await client.post(f"/programs/{pid}/generate", json=gen(max_new=2))
            seen = [[b["rid"].split("::")[0] for b in f.generate_bodies] for f in fakes]
            assert seen == [["p", "p", "p"], ["q", "q", "q"]]

            # Worker 0 dies while p's request runs there, before anything was streamed:
            # it is retried on worker 1.
            task = asyncio.create_task(client.post("/programs/p/generate", json=gen(max_new=200)))
            await fakes[0].wait_running(1)
            await fakes[0].stop(crash=True)
            assert finish_reason(await task) == "length"
            assert fakes[1].generate_bodies[-1]["rid"].startswith("p::main::")
            assert not router.pool.workers[0].healthy
            health = await client.get("/health")
            assert health.status_code == 200 and health.json()["healthy_workers"] == 1
            assert_idle(router)

    run(scenario)


def test_a_worker_dying_mid_stream_ends_the_stream_with_a_json_error() -> None:
    async def scenario() -> None:
        async with setup() as (client, router, (fake,)):
            task = asyncio.create_task(client.post("/generate", json=gen(stream=True)))
            await fake.wait_running(1)
            await asyncio.sleep(0.05)  # a few tokens out
            await fake.stop(crash=True)
            resp = await task
            assert resp.status_code == 200
            chunks = [c for c in resp.text.split("\n\n") if c]
            assert len(chunks) > 1 and json.loads(chunks[0][6:])["text"]
            error = json.loads(chunks[-1].removeprefix("data: "))["error"]
            assert (
                "failed while streaming" in error["message"]
                and error["code"] == "worker_unavailable"
            )
            assert not router.pool.workers[0].healthy
            assert_idle(router)

    run(scenario)


def test_a_worker_slower_than_the_request_timeout_is_504_json() -> None:
    async def scenario() -> None:
        async with setup(first_delay=1.0, request_timeout_s=0.2) as (client, router, _):
            error = error_of(await client.post("/generate", json=gen(max_new=1)), 504)
            assert error["type"] == "worker_timeout" and "in time" in error["message"]
            assert_idle(router)

    run(scenario)


# Regression (fixed): a TimeoutError (request_timeout_s) is
# caught for plain requests (504) but not for streams: before the first byte it becomes a 500
# "internal error: TimeoutError", and mid-stream the response is cut off with neither an error
# event nor [DONE] (the app's crash handler then fails to answer on a started response).
@pytest.mark.parametrize("first_delay", [1.0, 0.0])
def test_a_stream_that_times_out_ends_with_a_json_error(first_delay: float) -> None:
    async def scenario() -> None:
        async with setup(first_delay=first_delay, request_timeout_s=0.3) as (client, router, _):
            resp = await client.post("/generate", json=gen(stream=True))
            if resp.status_code != 200:
                assert error_of(resp, 504)["type"] == "worker_timeout"
            else:
                last = [c for c in resp.text.split("\n\n") if c][-1]
                error = json.loads(last.removeprefix("data: "))["error"]
                assert error["code"] == "worker_timeout" and error["message"]
            assert_idle(router)

    run(scenario)
