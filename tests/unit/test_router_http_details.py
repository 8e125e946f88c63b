"""HTTP details a client relies on: OpenAI's error object, 503 when a worker breaks on any
route, the usage chunk only when asked, and a model lookup that a failure does not pin."""

from __future__ import annotations

from typing import Any

import pytest
from router_harness import error_of, run, setup
from test_router_chat_exit import DYNASOR, _events, chat, scripted

from dynasor_sgl.router.served_model import ServedModel, chatml


def test_error_objects_have_openais_fields() -> None:
    async def scenario() -> None:
        async with setup() as (client, _, _fakes):
            error = error_of(await client.post("/abort_request", json={}), 400)
            assert set(error) == {"message", "type", "param", "code"}
            assert error["param"] is None
            bad = await client.post("/programs", json={"program_id": "p", "deadline_s": "soon"})
            error = error_of(bad, 400)
            assert set(error) == {"message", "type", "param", "code"}
            assert error["param"] == "deadline_s"

    run(scenario)


def test_a_worker_that_breaks_on_a_read_only_route_is_503_not_500() -> None:
    async def scenario() -> None:
        # Health checks too rare to notice: the router still takes the worker for healthy.
        async with setup(health_interval_s=3600) as (client, router, (fake,)):
            await fake.stop()
            assert router.pool.healthy()
            for path in ("/get_model_info", "/programs/p/get_server_info", "/health_generate"):
                error = error_of(await client.get(path), 503)
                assert error["type"] == "worker_unavailable" and "failed" in error["message"]

    run(scenario)


@pytest.mark.parametrize("options", [None, {}, {"include_usage": False}])
def test_an_early_exit_stream_sends_usage_only_when_asked(options: dict[str, Any] | None) -> None:
    async def scenario() -> None:
        async with setup() as (client, _, (fake,)):
            fake.script = scripted(["42}"])
            extra = {} if options is None else {"stream_options": options}
            body = chat(max_tokens=100, stream=True, **DYNASOR, **extra)
            events = _events((await client.post("/v1/chat/completions", json=body)).text)
            assert not [e for e in events if "usage" in e]
            assert events[-1]["choices"][0]["finish_reason"] == "stop"
            asked = {**body, "stream_options": {"include_usage": True}}
            events = _events((await client.post("/v1/chat/completions", json=asked)).text)
            assert events[-1]["choices"] == [] and events[-1]["usage"]["completion_tokens"] > 0

    run(scenario)


def test_a_failed_model_lookup_is_tried_again_by_the_next_chat() -> None:
    async def scenario() -> None:
        model = ServedModel()
        calls: list[str] = []

        async def failing(path: str) -> Any:
            calls.append(path)
            return None  # what the router's fetch gives for a non-200 reply

        async def answering(path: str) -> Any:
            calls.append(path)
            return {"tokenizer_path": "remote/model", "reasoning_parser": "deepseek-r1"}

        await model.load(failing)
        assert model.render([{"role": "user", "content": "hi"}]).startswith("<|im_start|>user")
        assert model.reasoning_parser is None
        await model.load(answering)
        assert model.reasoning_parser == "deepseek-r1"
        assert model._render is chatml  # the worker's tokenizer is not local: ChatML, kept
        await model.load(failing)
        assert len(calls) == 4  # loaded once it answered: no more lookups

    run(scenario)
