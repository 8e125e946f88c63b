"""OpenAI chat completions with Certaindex early exit: the request, the response, the stream.

Reads an OpenAI chat body that asks for early exit (`effort.plan_of`), renders its messages
with the model's chat template, runs `cot.CotRun`, and answers in OpenAI's shape: a
`chat.completion`, or `chat.completion.chunk` SSE events ending in a usage chunk (when
`stream_options.include_usage` asks for one) and `[DONE]`. When the workers run a
`--reasoning-parser`, the text before `</think>` comes as `reasoning_content` (unless the
request sets `separate_reasoning: false`). `usage` carries
`completion_tokens_details.reasoning_tokens` and a `dynasor` object (exit reason, probe
tokens, tokens saved, the certaindex trajectory). `n > 1` is refused with a 400: one
early-exit chain per request (send n requests for n chains).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

import orjson

from dynasor_sgl.router.core import Router
from dynasor_sgl.router.cot import CotRun, ExitReason, Outcome, thinking_open
from dynasor_sgl.router.effort import EarlyExit, plan_of
from dynasor_sgl.router.errors import ApiError, bad_request
from dynasor_sgl.router.forward import Reply
from dynasor_sgl.router.reasoning import ThinkSplitter
from dynasor_sgl.router.reasoning import split as reasoning_split
from dynasor_sgl.router.served_model import check_messages

DEFAULT_BUDGET = 2048  # reasoning tokens when the request sets no max_completion_tokens
# OpenAI sampling fields -> SGLang's native sampling_params.
_SAMPLING = {
    "temperature": "temperature",
    "top_p": "top_p",
    "top_k": "top_k",
    "min_p": "min_p",
    "frequency_penalty": "frequency_penalty",
    "presence_penalty": "presence_penalty",
    "repetition_penalty": "repetition_penalty",
    "stop": "stop",
    "seed": "sampling_seed",
}
_JSON = {"Content-Type": "application/json"}


@dataclass(frozen=True)
class ChatRequest:
    messages: list[dict[str, Any]]
    budget: int
    params: dict[str, Any]
    stream: bool
    model: str

    @classmethod
    def parse(cls, body: dict[str, Any]) -> ChatRequest:
        if body.get("n") not in (None, 1):
            raise bad_request(
                "n > 1 is not supported with early exit (dynasor / reasoning_effort): "
                "send n requests, one early-exit chain each"
            )
        if body.get("tools") or body.get("response_format"):
            raise bad_request("tools and response_format are not supported with early exit")
        budget = body.get("max_completion_tokens") or body.get("max_tokens") or DEFAULT_BUDGET
        params = {native: body[k] for k, native in _SAMPLING.items() if body.get(k) is not None}
        model = str(body["model"]) if isinstance(body.get("model"), str) else "default"
        messages = check_messages(body.get("messages"))
        return cls(messages, int(budget), params, bool(body.get("stream")), model)


async def complete(
    router: Router, body: dict[str, Any], plan: EarlyExit
) -> Reply | AsyncGenerator[bytes, None]:
    """Run an early-exit chat: the whole response, or its SSE stream."""
    req = ChatRequest.parse(body)
    served = router.served_model
    await served.load(router.worker_info)
    prompt = served.render(req.messages)
    run = CotRun(router, prompt, plan, req.budget, req.params)
    split = served.reasoning_parser is not None and body.get("separate_reasoning", True) is True
    thinking = thinking_open(prompt) if split else None
    meta = _Meta("chatcmpl-" + uuid.uuid4().hex, int(time.time()), req.model, thinking)
    if req.stream:
        options = body.get("stream_options")
        with_usage = isinstance(options, dict) and options.get("include_usage") is True
        return _stream(run, meta, plan, with_usage)
    out = await run.run()
    reasoning, content = (
        (None, out.content) if thinking is None else reasoning_split(out.content, thinking)
    )
    message = {"role": "assistant", "content": content, "reasoning_content": reasoning or None}
    message["tool_calls"] = None  # the fields SGLang's own chat response has
    choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": _finish(out)}
    response = {
        **meta.head("chat.completion"),
        "choices": [{**choice, "matched_stop": None}],
        "usage": usage(out, plan),
    }
    return Reply(200, orjson.dumps(response), dict(_JSON))


@dataclass(frozen=True)
class _Meta:
    """What every chunk of one response repeats. thinking: None when reasoning is not split,
    else whether the prompt opened the model's reasoning."""

    id: str
    created: int
    model: str
    thinking: bool | None = None

    def head(self, kind: str) -> dict[str, Any]:
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model}

    def chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        event = {**self.head("chat.completion.chunk"), "choices": [choice]}
        return b"data: " + orjson.dumps(event) + b"\n\n"


def _finish(out: Outcome) -> str:
    return "length" if out.exit_reason is ExitReason.BUDGET else "stop"


def usage(out: Outcome, plan: EarlyExit) -> dict[str, Any]:
    """OpenAI's usage plus the `dynasor` object."""
    return {
        "prompt_tokens": out.prompt_tokens,
        "completion_tokens": out.completion_tokens,
        "total_tokens": out.prompt_tokens + out.completion_tokens,
        "completion_tokens_details": {"reasoning_tokens": out.reasoning_tokens},
        "dynasor": {
            "exit_reason": str(out.exit_reason),
            "answer": out.answer,
            "probe_tokens": out.probe_tokens,
            "probe_prefill_tokens": out.probe_prefill_tokens,
            "tokens_saved": out.tokens_saved,
            "budget": out.budget,
            "probe_interval": plan.probe_interval,
            "certainty_window": plan.certainty_window,
            "certaindex": out.trajectory,
        },
    }


def _deltas(
    meta: _Meta, splitter: ThinkSplitter | None, text: str, last: bool = False
) -> list[bytes]:
    """The chunks of one piece of the model's text: all `content`, or split at `</think>`."""
    if splitter is None:
        return [meta.chunk({"content": text})] if text else []
    parts = splitter.feed(text) + (splitter.flush() if last else [])
    return [meta.chunk({field: piece}) for field, piece in parts]


async def _stream(
    run: CotRun, meta: _Meta, plan: EarlyExit, with_usage: bool
) -> AsyncGenerator[bytes, None]:
    """The run as OpenAI chunks: the model's text as it comes, the appended answer, the finish
    reason, a usage chunk if `stream_options.include_usage` asked for one (as OpenAI does),
    [DONE]. A failure mid-way ends it with an error event."""
    queue: asyncio.Queue[str | None] = asyncio.Queue()
    run.on_text = queue.put_nowait
    task = asyncio.ensure_future(run.run())
    task.add_done_callback(lambda _: queue.put_nowait(None))
    splitter = None if meta.thinking is None else ThinkSplitter(meta.thinking)
    try:
        yield meta.chunk({"role": "assistant", "content": ""})
        while (delta := await queue.get()) is not None:
            for chunk in _deltas(meta, splitter, delta):
                yield chunk
        try:
            out = task.result()
        except ApiError as exc:
            yield b"data: " + orjson.dumps(exc.body()) + b"\n\n"
            return
        for chunk in _deltas(meta, splitter, out.appended, last=True):
            yield chunk
        yield meta.chunk({}, _finish(out))
        if with_usage:
            tail = {**meta.head("chat.completion.chunk"), "choices": [], "usage": usage(out, plan)}
            yield b"data: " + orjson.dumps(tail) + b"\n\n"
        yield b"data: [DONE]\n\n"
    finally:
        if not task.done():  # the client went away: stop the run (it aborts its requests)
            task.cancel()
            await asyncio.wait([task])


__all__ = ["complete", "plan_of", "usage"]
