"""Early exit on /v1/chat/completions: the effort table, the stop rule (agreement required),
budget forcing, the OpenAI response and stream, and a client that goes away mid-run."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from router_harness import assert_idle, error_of, run, setup
from test_router_openai_path import _call

from dynasor_sgl.policy.machine import Action, PolicyConfig, ProgramPolicy, Report
from dynasor_sgl.router import cot
from dynasor_sgl.router.effort import EFFORTS, EarlyExit, plan_of
from dynasor_sgl.router.errors import ApiError
from dynasor_sgl.router.reasoning import ThinkSplitter, split

REASONING = " ".join(f"r{i}" for i in range(500))  # 500 tokens of reasoning, never finished


def chat(**extra: Any) -> dict[str, Any]:
    question = {"role": "user", "content": "What is 6 * 7?"}
    return {"model": "m", "messages": [question], "max_tokens": 40, **extra}


def scripted(probes: list[str], reasoning: str = REASONING) -> Callable[[str], str]:
    """A worker script: a reasoning chunk continues `reasoning` where the prompt left it, the
    k-th probe gets `probes[k]` (the last one repeats)."""
    answers: Iterator[str] = iter(probes)
    last = [probes[-1]]
    words = reasoning.split()

    def script(prompt: str) -> str:
        if prompt.endswith(cot.PROBE_SUFFIX):
            last[0] = next(answers, last[0])
            return last[0]
        done = sum(1 for w in prompt.split() if w in words)
        return " ".join(words[done:])

    return script


DYNASOR = {"dynasor": {"probe_interval": 8, "certainty_window": 2}}

# -- the effort table ---------------------------------------------------------------------


def test_effort_table_maps_openai_words_to_window_and_interval() -> None:
    assert plan_of({"reasoning_effort": "low"}) == EarlyExit(32, 2)
    assert plan_of({"reasoning_effort": "medium"}) == EarlyExit(64, 3)
    assert plan_of({"reasoning_effort": "high"}) == EarlyExit(64, 5)
    assert plan_of({"reasoning_effort": "mild"}) == EarlyExit(64, 8)
    assert plan_of({"reasoning_effort": "none"}) is None
    assert plan_of({}) is None  # off unless asked for
    assert plan_of({}, default_effort="high") == EFFORTS["high"]
    # An explicit setting wins over the effort, field by field.
    body = {"reasoning_effort": "low", "dynasor": {"certainty_window": 4}}
    assert plan_of(body) == EarlyExit(32, 4)
    assert plan_of({"dynasor": {"probe_interval": 16}}) == EarlyExit(16, 3)
    assert plan_of({"dynasor": {"probe_interval": 0}}, default_effort="low") is None


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"reasoning_effort": "extreme"}, "reasoning_effort"),
        ({"dynasor": {"probe_interval": 8, "window": 2}}, "unknown dynasor field"),
        ({"dynasor": {"certainty_window": 0}}, "certainty_window"),
        ({"dynasor": {"probe_interval": "64"}}, "probe_interval"),
        ({"dynasor": [64, 3]}, "object"),
    ],
)
def test_bad_early_exit_settings_are_400(body: dict[str, Any], words: str) -> None:
    with pytest.raises(ApiError) as err:
        plan_of(body)
    assert err.value.status == 400 and words in err.value.message


def test_the_probe_is_the_same_as_the_programs_probe() -> None:
    from dynasor_sgl.lang import probe

    assert (cot.PROBE_SUFFIX, cot.PROBE_REGEX) == (probe.PROBE_SUFFIX, probe.PROBE_REGEX)
    assert cot.PROBE_MAX_TOKENS == probe.PROBE_MAX_TOKENS


# -- the stop rule --------------------------------------------------------------------------


def test_a_last_probe_without_hesitation_but_disagreeing_does_not_exit() -> None:
    """The public Dynasor code exits here (its check ends in `return True`); agreement is
    required."""
    config = PolicyConfig.for_algorithm(
        "cot", cap=64, initial=8, pace=8, detect_at=8, detect_every=8, probe_window=2
    )
    policy = ProgramPolicy(config)
    report = Report(used=16, probe_answers=["7", "42"], probe_texts=["7}", "42}"])
    decision = policy.decide(report)
    assert decision.action is Action.CONTINUE and decision.values["consistency"] == 0.5
    agreeing = Report(used=24, probe_answers=["7", "42", "42"], probe_texts=["7}", "42}", "42}"])
    assert policy.decide(agreeing).action is Action.STOP


# -- through the router ---------------------------------------------------------------------


def test_probes_that_agree_exit_early_abort_the_chunk_and_append_the_answer() -> None:
    async def scenario() -> None:
        async with setup() as (client, router, (fake,)):
            fake.script = scripted(["7}", "42}", "42}"])
            resp = await client.post("/v1/chat/completions", json=chat(max_tokens=200, **DYNASOR))
            assert resp.status_code == 200, resp.text
            body = resp.json()
            choice = body["choices"][0]
            content = choice["message"]["content"]
            assert choice["finish_reason"] == "stop" and body["object"] == "chat.completion"
            assert content.endswith("\\boxed{42} \\]") and "suddenly" not in content
            usage = body["usage"]
            dyn = usage["dynasor"]
            assert dyn["exit_reason"] == "certain" and dyn["answer"] == "42"
            # Probe 2 (42) disagreed with probe 1 (7): only probe 3 agreeing with it exits.
            assert [p["answer"] for p in dyn["certaindex"]] == ["7", "42", "42"]
            assert [p["consistency"] for p in dyn["certaindex"]] == [0.0, 0.5, 1.0]
            assert usage["completion_tokens_details"]["reasoning_tokens"] >= 24
            assert usage["completion_tokens"] == (
                usage["completion_tokens_details"]["reasoning_tokens"] + dyn["probe_tokens"]
            )
            assert dyn["probe_tokens"] == 3 and dyn["tokens_saved"] > 0
            assert dyn["tokens_saved"] == 200 - usage["completion_tokens"]
            # The chunk running when the probes agreed was aborted in the worker.
            reason_rids = [b["rid"] for b in fake.generate_bodies if "::reason::" in b["rid"]]
            assert {"rid": reason_rids[-1]} in fake.aborts
            assert not fake.running
            assert_idle(router)
            text = (await client.get("/metrics")).text
            assert 'dynasor_aborts_total{cause="stop"} 1.0' in text
            assert 'dynasor_programs_ended_total{exit_reason="threshold"} 1.0' in text

    run(scenario)


def test_budget_forcing_answers_when_the_tokens_run_out_during_reasoning() -> None:
    async def scenario() -> None:
        async with setup() as (client, router, (fake,)):
            fake.script = scripted(["1}", "2}", "3}", "4}", "5}", "6}"])
            body = chat(max_completion_tokens=20, **DYNASOR)
            resp = (await client.post("/v1/chat/completions", json=body)).json()
            choice, dyn = resp["choices"][0], resp["usage"]["dynasor"]
            assert dyn["exit_reason"] == "budget" and choice["finish_reason"] == "length"
            assert resp["usage"]["completion_tokens_details"]["reasoning_tokens"] == 20
            # 8 + 8 + 4 tokens: two probes between chunks, then the final one gives the answer.
            assert dyn["answer"] == "3" and choice["message"]["content"].endswith("\\boxed{3} \\]")
            assert dyn["tokens_saved"] == -dyn["probe_tokens"]  # the probes were the cost
            assert_idle(router)

    run(scenario)


def test_a_model_that_thinks_in_tags_gets_its_thinking_closed_before_the_answer() -> None:
    async def scenario() -> None:
        async with setup() as (client, _, (fake,)):
            fake.script = scripted(["42}"], reasoning="<think> " + REASONING)
            resp = await client.post("/v1/chat/completions", json=chat(max_tokens=100, **DYNASOR))
            content = resp.json()["choices"][0]["message"]["content"]
            assert content.startswith(" <think>")
            assert content.endswith("\n</think>\n\n**Final Answer**\n\n\\[ \\boxed{42} \\]")

    run(scenario)


def _events(text: str) -> list[dict[str, Any]]:
    chunks = [c for c in text.split("\n\n") if c]
    assert chunks[-1] == "data: [DONE]" and all(c.startswith("data: ") for c in chunks)
    return [json.loads(c[6:]) for c in chunks[:-1]]


def test_streaming_is_openai_chunks_with_the_text_and_a_usage_chunk() -> None:
    async def scenario() -> None:
        async with setup() as (client, router, (fake,)):
            fake.script = scripted(["42}"])
            usage_asked = {"stream_options": {"include_usage": True}}
            body = chat(max_tokens=100, stream=True, **DYNASOR, **usage_asked)
            resp = await client.post("/v1/chat/completions", json=body)
            assert resp.headers["content-type"].startswith("text/event-stream")
            events = _events(resp.text)
            assert all(e["object"] == "chat.completion.chunk" for e in events)
            assert len({e["id"] for e in events}) == 1
            deltas = [e["choices"][0]["delta"] for e in events if e["choices"]]
            assert deltas[0]["role"] == "assistant"
            assert len(deltas) > 4  # the reasoning streams, not one lump at the end
            usage = events[-1]["usage"]
            assert events[-1]["choices"] == [] and usage["dynasor"]["exit_reason"] == "certain"
            # Every reasoning token streamed, in order (the aborted chunk's too), then the answer.
            made = usage["completion_tokens_details"]["reasoning_tokens"]
            reasoning = "".join(f" r{i}" for i in range(made))
            answer = "\n\n**Final Answer**\n\n\\[ \\boxed{42} \\]"
            assert "".join(d.get("content", "") for d in deltas) == reasoning + answer
            finishes = [e["choices"][0]["finish_reason"] for e in events if e["choices"]]
            assert finishes[-1] == "stop" and set(finishes[:-1]) == {None}
            assert_idle(router)

    run(scenario)


def test_a_client_gone_mid_stream_ends_the_run_and_its_requests() -> None:
    async def scenario() -> None:
        async with setup(token_delay=0.02) as (client, router, (fake,)):
            fake.script = scripted(["1}", "2}", "3}", "4}", "5}"])
            body = chat(max_tokens=400, stream=True, **DYNASOR)
            gone = asyncio.Event()
            app = client._transport.app  # type: ignore[attr-defined]
            call = asyncio.create_task(_call(app, "/v1/chat/completions", body, gone))
            await fake.wait_running(1)
            await asyncio.sleep(0.3)  # a chunk or two, and a probe
            gone.set()
            await asyncio.wait_for(call, 3)
            for _ in range(200):
                if not fake.running and not router.programs.active():
                    break
                await asyncio.sleep(0.01)
            assert not fake.running and router.programs.active() == 0
            assert fake.aborts  # the chunk in flight was aborted, not run to its end
            assert_idle(router)

    run(scenario)


def test_n_above_one_is_refused_and_without_dynasor_the_request_is_forwarded() -> None:
    async def scenario() -> None:
        async with setup() as (client, _, (fake,)):
            resp = await client.post("/v1/chat/completions", json=chat(n=2, **DYNASOR))
            assert "n > 1" in error_of(resp, 400)["message"]
            resp = await client.post("/v1/chat/completions", json=chat(dynasor={"x": 1}))
            error_of(resp, 400)
            plain = await client.post("/v1/chat/completions", json=chat())
            assert plain.status_code == 200 and plain.json()["object"] == "chat.completion"
            assert "dynasor" not in plain.json()["usage"]
            assert fake.openai_bodies[-1]["max_tokens"] == 40 and not fake.generate_bodies
            off = chat(reasoning_effort="none")
            assert (await client.post("/v1/chat/completions", json=off)).status_code == 200
            assert fake.openai_bodies[-1]["reasoning_effort"] == "none"

    run(scenario)


def test_a_server_default_effort_applies_to_chats_that_name_none() -> None:
    async def scenario() -> None:
        async with setup(default_effort="low") as (client, _, (fake,)):
            fake.script = scripted(["42}"])
            resp = await client.post("/v1/chat/completions", json=chat(max_tokens=100))
            dyn = resp.json()["usage"]["dynasor"]
            assert (dyn["probe_interval"], dyn["certainty_window"]) == (32, 2)
            assert not fake.openai_bodies

    run(scenario)


# -- reasoning_content ----------------------------------------------------------------------


def test_the_think_splitter_holds_a_tag_cut_across_pieces() -> None:
    splitter = ThinkSplitter(thinking=False)
    pieces = ["<thi", "nk> a b </", "think", "> answer"]
    out = [p for piece in pieces for p in splitter.feed(piece)] + splitter.flush()
    assert out == [("reasoning_content", " a b "), ("content", " answer")]
    assert split("x </think> y", thinking=True) == ("x ", " y")
    assert split("no tags", thinking=False) == ("", "no tags")
    assert split("unclosed </thi", thinking=True) == ("unclosed </thi", "")


@pytest.mark.parametrize("stream", [False, True])
def test_with_a_reasoning_parser_the_reasoning_is_split_from_the_answer(stream: bool) -> None:
    async def scenario() -> None:
        async with setup() as (client, _, (fake,)):
            fake.server_args = {"reasoning_parser": "deepseek-r1"}
            fake.script = scripted(["42}"], reasoning="<think> " + REASONING)
            body = chat(max_tokens=100, stream=stream, **DYNASOR)
            resp = await client.post("/v1/chat/completions", json=body)
            if stream:
                deltas = [e["choices"][0]["delta"] for e in _events(resp.text) if e["choices"]]
                reasoning = "".join(d.get("reasoning_content", "") for d in deltas)
                content = "".join(d.get("content", "") for d in deltas)
            else:
                message = resp.json()["choices"][0]["message"]
                reasoning, content = message["reasoning_content"], message["content"]
            assert reasoning.startswith(" r0 r1") and "<think>" not in reasoning
            assert content.strip() == "**Final Answer**\n\n\\[ \\boxed{42} \\]"
            off = await client.post(
                "/v1/chat/completions", json={**body, "stream": False, "separate_reasoning": False}
            )
            assert off.json()["choices"][0]["message"]["reasoning_content"] is None

    run(scenario)
