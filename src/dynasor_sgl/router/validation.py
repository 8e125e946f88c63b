"""Checks on /generate bodies before they reach a worker: clear 400s instead of worker errors."""

from __future__ import annotations

import math
from typing import Any

from dynasor_sgl.router.errors import bad_request

MAX_NEW_TOKENS = 1 << 20
# name -> (low, high, integer?) ; inclusive bounds
_BOUNDS: dict[str, tuple[float, float, bool]] = {
    "max_new_tokens": (0, MAX_NEW_TOKENS, True),
    "min_new_tokens": (0, MAX_NEW_TOKENS, True),
    "temperature": (0.0, 100.0, False),
    "top_p": (1e-9, 1.0, False),
    "min_p": (0.0, 1.0, False),
    "top_k": (-1, 1 << 20, True),
    "n": (1, 64, True),
    "frequency_penalty": (-2.0, 2.0, False),
    "presence_penalty": (-2.0, 2.0, False),
    "repetition_penalty": (1e-9, 10.0, False),
}


def _check_number(name: str, value: Any) -> None:
    low, high, integer = _BOUNDS[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise bad_request(f"sampling_params.{name} must be a number, got {value!r}")
    if integer and not (isinstance(value, int) or float(value).is_integer()):
        raise bad_request(f"sampling_params.{name} must be an integer, got {value!r}")
    if not math.isfinite(value) or not low <= value <= high:
        raise bad_request(f"sampling_params.{name} must be in [{low}, {high}], got {value!r}")
    if name == "top_k" and value == 0:
        raise bad_request("sampling_params.top_k must be -1 (off) or >= 1, got 0")


def validate_generate(body: dict[str, Any]) -> None:
    """Raise a 400 ApiError for a /generate body SGLang would reject or choke on."""
    has_text = "text" in body and body["text"] is not None
    has_ids = "input_ids" in body and body["input_ids"] is not None
    if has_text == has_ids:
        raise bad_request("exactly one of text or input_ids is required")
    text = body.get("text")
    if has_text and not (
        isinstance(text, str)
        or (isinstance(text, list) and text and all(isinstance(t, str) for t in text))
    ):
        raise bad_request("text must be a string or a non-empty list of strings")
    ids = body.get("input_ids")
    if has_ids and not _token_ids(ids):
        raise bad_request("input_ids must be a non-empty list of token ids (or of such lists)")
    params = body.get("sampling_params", {})
    if params is None:
        params = body["sampling_params"] = {}
    if not isinstance(params, dict):
        raise bad_request("sampling_params must be a JSON object")
    for name, value in params.items():
        if name in _BOUNDS and value is not None:
            _check_number(name, value)
    for flag in ("stream", "return_logprob"):
        if flag in body and not isinstance(body[flag], bool):
            raise bad_request(f"{flag} must be true or false")
    rid = body.get("rid")
    if rid is not None and not isinstance(rid, str | list):
        raise bad_request("rid must be a string or a list of strings")


def _token_ids(ids: Any) -> bool:
    def flat(xs: Any) -> bool:
        return (
            isinstance(xs, list)
            and bool(xs)
            and all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in xs)
        )

    return flat(ids) or (isinstance(ids, list) and bool(ids) and all(flat(x) for x in ids))


def is_batch(body: dict[str, Any]) -> bool:
    text, ids = body.get("text"), body.get("input_ids")
    return isinstance(text, list) or (
        isinstance(ids, list) and bool(ids) and isinstance(ids[0], list)
    )


def is_parallel(body: dict[str, Any]) -> bool:
    """Whether a (validated) /generate asks for n > 1 samples of its prompt."""
    params = body.get("sampling_params")
    return isinstance(params, dict) and isinstance(params.get("n"), int | float) and params["n"] > 1


def validate_openai(body: dict[str, Any]) -> None:
    """Raise a 400 ApiError for the fields of an OpenAI body the router itself reads."""
    if "stream" in body and not isinstance(body["stream"], bool):
        raise bad_request("stream must be true or false")
    for name in ("max_tokens", "max_completion_tokens", "n"):
        value = body.get(name)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1
        ):
            raise bad_request(f"{name} must be a positive integer, got {value!r}")
    rid = body.get("rid")
    if rid is not None and not isinstance(rid, str | list):
        raise bad_request("rid must be a string or a list of strings")
