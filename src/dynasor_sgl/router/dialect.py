"""The two request dialects a worker speaks: SGLang's native `/generate` and OpenAI's `/v1` routes.

Owns what the one forwarding path must read from a body or a reply, whatever the route: the
token budget the admission queue sizes a request by, whether the router may tag it with a rid
of its own (so it can abort it), and the token counts of a reply or of a stream's tail, in
SGLang's `meta_info` shape. Pure functions; knows nothing about workers or programs.
"""

from __future__ import annotations

import contextlib
from typing import Any

import orjson

NATIVE = "/generate"
COMPLETIONS = "/v1/completions"
CHAT = "/v1/chat/completions"
OPENAI_ROUTES = (COMPLETIONS, CHAT)
WORKER_POSTS = (NATIVE, *OPENAI_ROUTES)
DEFAULT_MAX_NEW = 128  # SGLang's default max_new_tokens when a request sets none
_TAIL_BYTES = 262144  # enough of a stream's end to hold its last event


def max_new_tokens(path: str, body: dict[str, Any]) -> int:
    """The most tokens the request may generate (SGLang's default when unset or a list)."""
    if path == NATIVE:
        params = body.get("sampling_params")
        value = params.get("max_new_tokens") if isinstance(params, dict) else None
    else:
        value = body.get("max_completion_tokens")
        if value is None:
            value = body.get("max_tokens")
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return DEFAULT_MAX_NEW


def taggable(path: str, body: dict[str, Any]) -> bool:
    """Whether the request is one generation the router can name by a rid of its own: not a
    batch, not n > 1 (SGLang renames those children), and without a client's rid."""
    if body.get("rid") is not None:
        return False
    if path == NATIVE:
        text, ids = body.get("text"), body.get("input_ids")
        batch = isinstance(text, list) or (
            isinstance(ids, list) and bool(ids) and isinstance(ids[0], list)
        )
        params = body.get("sampling_params")
        n = params.get("n", 1) if isinstance(params, dict) else 1
        return not batch and n in (1, None)
    prompt = body.get("prompt")
    batch = isinstance(prompt, list) and bool(prompt) and not isinstance(prompt[0], int)
    return not batch and body.get("n", 1) in (1, None)


def tokens_of(path: str, reply: Any) -> dict[str, Any] | None:
    """The token counts of a decoded reply in `meta_info` shape (prompt_tokens,
    completion_tokens, cached_tokens, and finish_reason for the native route); None if it has
    none (an error, a batch)."""
    if not isinstance(reply, dict):
        return None
    if path == NATIVE:
        meta = reply.get("meta_info")
        return meta if isinstance(meta, dict) else None
    usage = reply.get("usage")
    if not isinstance(usage, dict):
        return None
    details = usage.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else 0
    return {
        "prompt_tokens": usage.get("prompt_tokens") or 0,
        "completion_tokens": usage.get("completion_tokens") or 0,
        "cached_tokens": cached or 0,
    }


def keep_tail(tail: bytes, chunk: bytes) -> bytes:
    """The last bytes of a stream, enough to read its final event from."""
    return (tail + chunk)[-_TAIL_BYTES:]


def last_tokens(path: str, tail: bytes) -> dict[str, Any] | None:
    """Token counts of the last `data: {...}` event in a stream's tail that has any (OpenAI
    streams carry usage only with `stream_options.include_usage`)."""
    for line in reversed(tail.split(b"\n")):
        if line.startswith(b"data: {"):
            with contextlib.suppress(orjson.JSONDecodeError):
                found = tokens_of(path, orjson.loads(line[6:]))
                if found is not None or path == NATIVE:
                    return found
    return None
