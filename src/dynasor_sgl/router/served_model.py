"""The model the workers serve, as an early-exit chat needs it: its chat template and whether
the workers split reasoning (`--reasoning-parser`).

The router runs an early-exit chat as native `/generate` chunks, so it applies the chat template
itself, the way SGLang's OpenAI route does for a model without a registered conversation
template: the tokenizer's own `apply_chat_template(..., add_generation_prompt=True)`. The
tokenizer is loaded once, lazily, from the `tokenizer_path` the worker reports, when that is a
folder on this machine; otherwise (a remote worker, a fake one in tests) ChatML is used and a
warning says so. A lookup that fails (the worker answered no JSON) is not kept: that chat
gets ChatML and no reasoning split, and the next chat tries again. Knows nothing about probes
or programs.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from dynasor_sgl.router.errors import bad_request

logger = logging.getLogger(__name__)
Render = Callable[[Sequence[dict[str, Any]]], str]
ROLES = ("system", "user", "assistant", "developer", "tool")


def chatml(messages: Sequence[dict[str, Any]]) -> str:
    """ChatML with the assistant's turn opened: the fallback template."""
    turns = [f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages]
    return "".join(turns) + "<|im_start|>assistant\n"


def check_messages(messages: Any) -> list[dict[str, Any]]:
    """The messages as role/content pairs with text content, or a 400 naming the problem."""
    if not isinstance(messages, list) or not messages:
        raise bad_request("messages must be a non-empty list")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            raise bad_request(f"messages[{i}] needs a role, one of {', '.join(ROLES)}")
        content = m.get("content")
        if isinstance(content, list):  # OpenAI's content parts: only text ones are supported
            if not all(isinstance(p, dict) and p.get("type") == "text" for p in content):
                raise bad_request(f"messages[{i}]: early exit supports text content only")
            content = "".join(str(p.get("text", "")) for p in content)
        if not isinstance(content, str):
            raise bad_request(f"messages[{i}].content must be a string")
        out.append({"role": m["role"], "content": content})
    return out


def _hf_render(tokenizer_path: str) -> Render:
    from transformers import AutoTokenizer  # heavy: only when a chat asks for early exit

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_path)

    def render(messages: Sequence[dict[str, Any]]) -> str:
        text = tokenizer.apply_chat_template(
            list(messages), tokenize=False, add_generation_prompt=True
        )
        return str(text)

    return render


class ServedModel:
    """The served model's chat template and reasoning parser, loaded on first use from a
    worker's info: `fetch(path)` is an async callable returning a worker's GET `path` JSON, or
    None when the worker did not answer it."""

    def __init__(self) -> None:
        self._render: Render | None = None
        self.reasoning_parser: str | None = None
        self._lock = asyncio.Lock()

    async def load(self, fetch: Callable[[str], Awaitable[Any]]) -> None:
        if self._render is not None:
            return
        async with self._lock:
            if self._render is not None:
                return
            server, model = await fetch("/get_server_info"), await fetch("/get_model_info")
            if not isinstance(server, dict) or not isinstance(model, dict):
                logger.warning("the worker's model info is unavailable; ChatML for this chat")
                return
            parser = server.get("reasoning_parser")
            self.reasoning_parser = parser if isinstance(parser, str) else None
            self._render = await self._load(model)

    def render(self, messages: Sequence[dict[str, Any]]) -> str:
        """The prompt for `messages` (after `load`; ChatML while the model info is unknown)."""
        return (self._render or chatml)(messages)

    @staticmethod
    async def _load(info: Any) -> Render:
        path = info.get("tokenizer_path") if isinstance(info, dict) else None
        if isinstance(path, str) and os.path.isdir(path):
            try:
                return await asyncio.to_thread(_hf_render, path)
            except Exception as exc:  # any loading failure falls back, loudly
                logger.warning("cannot load the tokenizer at %s (%s); using ChatML", path, exc)
        else:
            logger.warning("tokenizer %r is not a local folder; using ChatML for chats", path)
        return chatml
