"""Checks on /generate bodies: clear 400s for what SGLang would reject or choke on."""

from __future__ import annotations

import copy
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dynasor_sgl.router.errors import ApiError
from dynasor_sgl.router.validation import MAX_NEW_TOKENS, is_batch, validate_generate


def bad(body: dict[str, Any]) -> str:
    with pytest.raises(ApiError) as exc:
        validate_generate(body)
    assert exc.value.status == 400 and exc.value.kind == "invalid_request"
    return exc.value.message


@pytest.mark.parametrize(
    "body",
    [
        {"text": "hi"},
        {"text": ""},
        {"input_ids": [1, 2, 3]},
        {"text": ["a", "b"]},
        {"input_ids": [[1], [2, 3]]},
        {"text": "hi", "input_ids": None},
        {"text": "hi", "sampling_params": None},
        {"text": "hi", "stream": True, "return_logprob": False, "rid": "r-1"},
        {"text": ["a", "b"], "rid": ["r1", "r2"]},
        {"text": "hi", "sampling_params": {"max_new_tokens": 0, "temperature": 0}},
        {"text": "hi", "sampling_params": {"max_new_tokens": MAX_NEW_TOKENS, "top_k": -1}},
        {"text": "hi", "sampling_params": {"max_new_tokens": 16.0, "top_p": 1, "n": 64}},
        {"text": "hi", "sampling_params": {"temperature": 100.0, "min_p": 0.0, "top_k": 1}},
        {"text": "hi", "sampling_params": {"frequency_penalty": -2, "presence_penalty": 2.0}},
        {"text": "hi", "sampling_params": {"repetition_penalty": 10, "max_new_tokens": None}},
        {"text": "hi", "sampling_params": {"stop": ["\n"], "regex": "[0-9]+"}},  # SGLang's own
    ],
)
def test_valid_bodies_pass(body: dict[str, Any]) -> None:
    before = copy.deepcopy(body)
    validate_generate(body)  # does not raise
    # ... and leaves the body as sent, but for a null sampling_params made an empty object.
    if before.get("sampling_params", {}) is None:
        before["sampling_params"] = {}
    assert body == before


def test_null_sampling_params_become_an_empty_object() -> None:
    body: dict[str, Any] = {"text": "hi", "sampling_params": None}
    validate_generate(body)
    assert body["sampling_params"] == {}


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"text": None, "input_ids": None},
        {"text": "a", "input_ids": [1]},
        {"sampling_params": {"max_new_tokens": 1}},
    ],
)
def test_exactly_one_of_text_or_input_ids(body: dict[str, Any]) -> None:
    assert "exactly one of text or input_ids" in bad(body)


@pytest.mark.parametrize("text", [5, 1.5, True, [], [1], ["a", None], {"a": "b"}])
def test_text_must_be_a_string_or_a_list_of_strings(text: Any) -> None:
    assert "text must be" in bad({"text": text})


@pytest.mark.parametrize("ids", [[], "123", 7, {"a": 1}, True])
def test_input_ids_must_be_a_non_empty_list(ids: Any) -> None:
    assert "input_ids must be" in bad({"input_ids": ids})


@pytest.mark.parametrize("params", [[], "temperature=0", 3, True])
def test_sampling_params_must_be_an_object(params: Any) -> None:
    assert "sampling_params must be a JSON object" in bad({"text": "x", "sampling_params": params})


@pytest.mark.parametrize(
    "name, value",
    [
        ("max_new_tokens", -1),
        ("max_new_tokens", MAX_NEW_TOKENS + 1),
        ("max_new_tokens", 1e30),
        ("max_new_tokens", 10.5),
        ("max_new_tokens", math.nan),
        ("max_new_tokens", math.inf),
        ("max_new_tokens", True),
        ("max_new_tokens", "16"),
        ("max_new_tokens", [16]),
        ("min_new_tokens", -5),
        ("temperature", -0.1),
        ("temperature", 1e9),
        ("temperature", math.nan),
        ("temperature", -math.inf),
        ("temperature", False),
        ("temperature", "hot"),
        ("top_p", 0),
        ("top_p", 1.5),
        ("top_p", math.nan),
        ("min_p", 2),
        ("top_k", 0),
        ("top_k", -2),
        ("top_k", 2.5),
        ("n", 0),
        ("n", 65),
        ("frequency_penalty", 2.5),
        ("presence_penalty", -3),
        ("repetition_penalty", 0),
        ("repetition_penalty", 11),
    ],
)
def test_bad_sampling_params_are_400_naming_the_parameter(name: str, value: Any) -> None:
    message = bad({"text": "x", "sampling_params": {name: value}})
    assert f"sampling_params.{name}" in message


@pytest.mark.parametrize(
    "extra, word",
    [
        ({"stream": "yes"}, "stream"),
        ({"stream": 1}, "stream"),
        ({"return_logprob": "true"}, "return_logprob"),
        ({"rid": 5}, "rid"),
        ({"rid": {"a": 1}}, "rid"),
    ],
)
def test_flags_and_rid_types(extra: dict[str, Any], word: str) -> None:
    assert word in bad({"text": "x", **extra})


def test_is_batch() -> None:
    assert is_batch({"text": ["a", "b"]}) and is_batch({"input_ids": [[1], [2]]})
    assert not is_batch({"text": "a"}) and not is_batch({"input_ids": [1, 2]})
    assert not is_batch({"input_ids": []})


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)  # what orjson can parse
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)
_params = st.dictionaries(
    st.sampled_from(["max_new_tokens", "temperature", "top_p", "top_k", "n", "min_p", "stop"]),
    _json,
    max_size=4,
)
_bodies = st.fixed_dictionaries(
    {},
    optional={
        "text": _json | st.text(max_size=5),
        "input_ids": _json | st.lists(st.integers(0, 100), max_size=3),
        "sampling_params": _params | _json,
        "stream": _json,
        "rid": _json,
    },
)


@settings(max_examples=300, deadline=None)
@given(_bodies)
def test_validation_either_passes_a_sane_body_or_answers_400(body: dict[str, Any]) -> None:
    try:
        validate_generate(body)
    except ApiError as exc:
        assert exc.status == 400 and exc.message
        return
    assert (body.get("text") is None) != (body.get("input_ids") is None)
    for name in ("max_new_tokens", "temperature", "top_p", "top_k", "n", "min_p"):
        value = body.get("sampling_params", {}).get(name)
        if value is not None:
            assert not isinstance(value, bool) and math.isfinite(value)
