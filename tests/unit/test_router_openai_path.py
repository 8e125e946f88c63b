"""The OpenAI routes take the one forwarding path: admission, rid, accounting, metrics, errors;
and a client that goes away has its request aborted in the worker, on every route."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from router_harness import LONG, assert_idle, error_of, gen, run, setup

pytestmark = pytest.mark.io

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


def test_chat_is_forwarded_with_a_rid_counted_and_released() -> None:
    async def scenario() -> None:
        async with setup() as (client, router, (fake,)):
            resp = await client.post("/v1/chat/completions", json=CHAT)
            assert resp.status_code == 200, resp.text
            body = resp.json()
            assert body["usage"]["completion_tokens"] == 4
            sent = fake.openai_bodies[-1]
            assert isinstance(sent["rid"], str) and body["id"] == sent["rid"]
            assert {k: v for k, v in sent.items() if k != "rid"} == CHAT  # nothing else added
            text = (await client.get("/metrics")).text
            assert 'dynasor_requests_total{endpoint="chat_completions",status="200"} 1.0' in text
            assert 'dynasor_tokens_total{kind="completion"} 4.0' in text
            stream = await client.post("/v1/completions", json={"prompt": "a", "stream": True})
            assert stream.status_code == 200 and stream.text.endswith("data: [DONE]\n\n")
            assert_idle(router)

    run(scenario)


def test_openai_requests_wait_in_the_admission_queue_like_native_ones() -> None:
    async def scenario() -> None:
        async with setup(max_inflight_per_worker=1) as (client, router, (fake,)):
            first = asyncio.create_task(client.post("/generate", json=gen()))
            await fake.wait_running(1)
            second = asyncio.create_task(
                client.post("/v1/chat/completions", json={**CHAT, "max_tokens": 2})
            )
            for _ in range(200):
                if router.admission.queue_length() == 1:
                    break
                await asyncio.sleep(0.005)
            assert router.admission.queue_length() == 1 and len(fake.running) == 1
            await client.post("/abort_request", json={"abort_all": True})
            assert (await first).status_code == 200
            assert (await second).status_code == 200
            assert_idle(router)

    run(scenario)


@pytest.mark.parametrize("stream", [False, True])
def test_a_worker_error_status_comes_back_as_that_error(stream: bool) -> None:
    async def scenario() -> None:
        async with setup() as (client, router, (fake,)):
            fake.openai_status = 400
            resp = await client.post("/v1/chat/completions", json={**CHAT, "stream": stream})
            assert resp.status_code == 400
            assert "refuses" in resp.json()["error"]["message"]
            text = (await client.get("/metrics")).text
            assert 'endpoint="chat_completions",status="400"' in text
            assert_idle(router)

    run(scenario)


async def _call(app: Any, path: str, body: dict[str, Any], gone: asyncio.Event) -> list[Any]:
    """Drive the ASGI app as a server would, with a client that disconnects when `gone` is set."""
    sent: list[Any] = []
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": json.dumps(body).encode(), "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": path, "headers": [], "query_string": b""}
    await app(scope, receive, send)
    return sent


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/generate", gen(stream=True)),
        ("/generate", gen()),
        ("/v1/chat/completions", {**CHAT, "max_tokens": LONG, "stream": True}),
        ("/v1/completions", {"prompt": "a", "max_tokens": LONG}),
    ],
    ids=["generate-stream", "generate", "chat-stream", "completions"],
)
def test_a_client_that_disconnects_has_its_request_aborted(path: str, body: Any) -> None:
    async def scenario() -> None:
        async with setup() as (client, router, (fake,)):
            app = client._transport.app  # type: ignore[attr-defined]
            gone = asyncio.Event()
            call = asyncio.create_task(_call(app, path, body, gone))
            await fake.wait_running(1)
            rid = next(iter(fake.running))
            gone.set()
            await asyncio.wait_for(call, 2)
            for _ in range(200):
                if not fake.running:
                    break
                await asyncio.sleep(0.005)
            assert not fake.running  # well before the LONG generation would have ended
            assert {"rid": rid} in fake.aborts
            assert_idle(router)
            assert router._plain_rids == {}
            text = (await client.get("/metrics")).text
            assert 'dynasor_aborts_total{cause="client_gone"} 1.0' in text

    run(scenario)


def test_method_other_than_post_on_a_worker_route_is_405_json() -> None:
    async def scenario() -> None:
        async with setup() as (client, _, _fakes):
            error_of(await client.get("/v1/chat/completions"), 405)

    run(scenario)


def test_an_unexpected_error_is_the_same_json_500_on_the_fast_path_and_the_app() -> None:
    async def scenario() -> None:
        async with setup() as (client, router, _fakes):

            async def broken(*_: Any, **__: Any) -> Any:
                raise RuntimeError("boom")

            router.forward = broken  # type: ignore[method-assign]
            router.abort_request = broken  # type: ignore[method-assign]
            fast = await client.post("/v1/chat/completions", json=CHAT)
            app = await client.post("/abort_request", json={"rid": "x"})
            assert error_of(fast, 500) == error_of(app, 500)
            assert error_of(fast, 500)["message"] == "internal error: RuntimeError"

    run(scenario)
