"""Fuzz the router's HTTP surface: every error is JSON with a message, never a 5xx, no crash.

The fake worker stays up throughout, so no 502/503/504 is excusable either. Most requests are
aimed at a real route with a body of roughly the right shape (often subtly wrong: NaN, out of
range, wrong types), so that they get past parsing into validation, the program table, the
policy and the worker; the rest are anything at all.
"""

from __future__ import annotations

import itertools
import json
import string
from collections.abc import Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from fake_worker import FakeWorker, LoopThread
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from router_harness import routed

from dynasor_sgl.policy.config import ALGORITHMS, SIGNALS, PolicyConfig
from dynasor_sgl.router.core import Router

pytestmark = pytest.mark.io  # sockets, subprocesses or a served router

EXAMPLES = 1000
MAX_PROGRAMS = 100
JSON = {"Content-Type": "application/json"}


@dataclass
class Harness:
    loop: LoopThread
    client: httpx.AsyncClient
    fake: FakeWorker
    router: Router

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self.loop.run(self.client.request(method, path, **kwargs), timeout=20)


@pytest.fixture(scope="module")
def harness() -> Iterator[Harness]:
    loop = LoopThread()
    stack = AsyncExitStack()
    fake = FakeWorker(token_delay=0, token_cap=4)  # instant generations, whatever is asked

    async def up() -> tuple[httpx.AsyncClient, Router]:
        await fake.start()
        stack.push_async_callback(fake.stop)
        return await stack.enter_async_context(routed(fake, max_programs=MAX_PROGRAMS))

    client, router = loop.run(up())
    try:
        h = Harness(loop, client, fake, router)
        assert h.request("POST", "/programs", json={"program_id": "fz"}).status_code == 201
        yield h
    finally:
        loop.run(stack.aclose())
        loop.close()


# -- strategies ----------------------------------------------------------------------------

_POLICIES = [
    {},
    {"cap": 8, "initial": 4, "pace": 4, "detect_at": 4},
    {"thresholds": {"reward": 0.5}, "detect_at": 1, "initial": 1},
    {"thresholds": {"confidence": 0.5}, "detect_at": 1, "initial": 1},
    {"rule": "posterior", "detect_at": 1, "initial": 1},
    {"trim": "minority", "thresholds": {"entropy": 0.99}, "detect_at": 1, "initial": 1},
    {"trim": "lowest_reward", "thresholds": {"reward": 0.99}, "detect_at": 1, "initial": 1},
]

_small_text = st.text(max_size=8)
_json: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)  # what orjson parses
    | st.floats(allow_nan=True, allow_infinity=True)
    | _small_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_small_text, inner, max_size=4),
    max_leaves=10,
)
_floats = st.floats(allow_nan=True, allow_infinity=True)
_number = st.integers(-(2**63), 2**64 - 1) | _floats | st.sampled_from([0, 1, -1, 0.5, 2**20, 1e30])
_branch = st.sampled_from(["b0", "b1", "main", "", "b 1", "b::x"]) | _small_text
_rid = st.one_of(
    _json,
    st.builds(lambda pid, b: f"{pid}::{b}", st.sampled_from(["fz", "fresh", "nope"]), _branch),
)
_PARAMS = [
    *("max_new_tokens", "min_new_tokens", "temperature", "top_p", "top_k", "n", "min_p"),
    *("frequency_penalty", "repetition_penalty", "stop", "regex"),
]
_fuzzy_generate = st.fixed_dictionaries(
    {},
    optional={
        "text": st.sampled_from(["hi", "", "a b c"]) | st.lists(_small_text, max_size=3) | _json,
        "input_ids": st.lists(st.integers(0, 1000), max_size=4) | _json,
        "sampling_params": st.dictionaries(st.sampled_from(_PARAMS), _number | _json, max_size=4)
        | _json,
        "stream": st.booleans() | _json,
        "rid": _rid,
        "return_logprob": st.booleans() | _json,
    },
)
_good_generate = st.fixed_dictionaries(
    {
        "text": st.sampled_from(["hi", "a b c"]) | _small_text,
        "sampling_params": st.fixed_dictionaries(
            {},
            optional={
                "max_new_tokens": st.integers(0, 64),
                "temperature": st.floats(0, 2),
                "top_p": st.floats(0.1, 1),
            },
        ),
    },
    optional={"stream": st.booleans(), "rid": _rid},
)
_register = st.fixed_dictionaries(
    {},
    optional={
        "algorithm": st.sampled_from(ALGORITHMS) | _json,
        "program_id": st.sampled_from(["fz", "new1", "a b", "x" * 70]) | _json,
        "policy": st.dictionaries(
            st.sampled_from(list(PolicyConfig.__dataclass_fields__)), _number | _json, max_size=3
        )
        | _json,
        "deadline_s": _number | _json,
        "extra": _json,
    },
)
_answers = st.dictionaries(_branch, st.none() | st.sampled_from(["1", "2", "42"]), max_size=4)
_report = st.fixed_dictionaries(
    {"used": st.integers(-2, 70) | st.integers(0, 10) | _number | _json},
    optional={
        "answers": _answers | _answers | _json,
        "rewards": st.dictionaries(_branch, st.floats(0, 1) | _floats, max_size=4) | _json,
        "probe_answers": st.lists(st.none() | st.sampled_from(["1", "2"]), max_size=4) | _json,
        "probe_texts": st.lists(st.none() | _small_text, max_size=3),
        "top_logprobs": st.lists(st.lists(_floats, max_size=3), max_size=3) | _json,
        "values": st.dictionaries(st.sampled_from(SIGNALS) | _small_text, _number, max_size=2),
        "slack": st.integers(0, 8) | _number | _json,
    },
)
_good_report = st.fixed_dictionaries(
    {"used": st.integers(0, 10)},
    optional={
        "answers": _answers,
        "rewards": st.dictionaries(_branch, st.floats(0, 1) | st.floats(-1, 2), max_size=4)
        | st.dictionaries(_branch, st.floats(-1, 2), min_size=1, max_size=4),
        "top_logprobs": st.lists(st.lists(st.floats(-20, 1), max_size=3), max_size=3),
        "probe_answers": st.lists(st.none() | st.sampled_from(["1", "2"]), max_size=4),
        "probe_texts": st.lists(st.none() | st.sampled_from(["wait", "so 1"]), max_size=4),
        "values": st.dictionaries(st.sampled_from(SIGNALS), _floats, max_size=2),
        "slack": st.integers(0, 8),
    },
)
# A known policy with one override near the valid range (mc_samples stays small: it sizes an
# allocation).
_NEAR: dict[str, st.SearchStrategy[Any]] = {
    "thresholds": st.dictionaries(st.sampled_from(SIGNALS), st.floats(0, 1), max_size=2) | _json,
    "rule": st.sampled_from(["threshold", "posterior", "x"]),
    "trim": st.sampled_from(["none", "minority", "lowest_reward", "x"]),
    "reward_mode": st.sampled_from(["mean", "max", "x"]),
    "cap": st.integers(-1, 12),
    "initial": st.integers(0, 4),
    "used": st.integers(0, 4),
    "detect_at": st.integers(0, 4),
    "detect_every": st.integers(-1, 3),
    "seed": st.integers(-3, 2**70),
    "mc_samples": st.integers(-1, 2000),
    "confidence": st.floats(-0.5, 1.5),
    "trim_fraction": st.floats(-0.5, 1.5),
    "probe_window": st.integers(-1, 4),
}
_near_policy = st.builds(
    lambda base, extra: {**base, **extra},
    st.sampled_from(_POLICIES),
    st.one_of(*(st.fixed_dictionaries({k: v}) for k, v in _NEAR.items())),
)
_good_register = st.fixed_dictionaries(
    {"algorithm": st.sampled_from(ALGORITHMS)},
    optional={"policy": st.sampled_from(_POLICIES) | _near_policy, "deadline_s": st.floats(1, 100)},
)
_abort = st.fixed_dictionaries(
    {}, optional={"rid": _rid, "abort_all": st.booleans() | _json, "other": _json}
)
# Where a request is aimed, and the body shape that belongs there.
_TARGETS: dict[str, st.SearchStrategy[Any]] = {
    "/generate": st.one_of(_good_generate, _good_generate, _fuzzy_generate),
    "/programs/{pid}/generate": st.one_of(_good_generate, _fuzzy_generate),
    "/programs": st.one_of(_good_register, _register),
    "/programs/{pid}/report": st.one_of(_good_report, _good_report, _report),
    "/programs/{pid}/finish": st.fixed_dictionaries(
        {}, optional={"answer": st.none() | _small_text | _json}
    )
    | _json,
    "/programs/{pid}/abort": _json,
    "/abort_request": _abort,
}
_junk = st.one_of(
    st.binary(max_size=40),
    st.sampled_from([b"", b"{", b"null", b"[]", b'{"text": "hi"', b"\xff\xfe", b"NaN"]),
)
_pid = st.one_of(
    st.just("fresh"),  # replaced by a newly registered program's id
    st.just("fresh"),
    st.sampled_from(["fz", "nope", "a::b", "..", "x" * 70, "-", "é"]),
    st.text(max_size=6),
)
_random_path = st.one_of(
    st.sampled_from(
        [
            *("/generate", "/programs", "/abort_request", "/health", "/metrics", "/flush_cache"),
            *("/get_model_info", "/get_server_info", "/v1/models", "/health_generate", "/"),
            *("/programs?status=running", "/programs?status=", "/docs", "/nope", "//generate"),
            *("/programs/fz/get_model_info", "/programs/fz", "/programs/fresh"),
        ]
    ),
    st.text(string.ascii_letters + string.digits + "/_-.%", max_size=16).map(lambda s: "/" + s),
)
_method = st.sampled_from(["POST", "GET", "GET", "PUT", "DELETE", "PATCH"])
_headers = st.fixed_dictionaries(
    {},
    optional={
        "X-Dynasor-Branch": st.text(string.ascii_letters + string.digits + " _.-:", max_size=10),
        "Content-Type": st.sampled_from(["application/json"] * 3 + ["text/plain", "", "x/y"]),
        "content-type": st.just("application/json"),  # sometimes sent twice
    },
)


def _encode(body: Any) -> bytes:
    return json.dumps(body, allow_nan=True).encode()  # NaN/Infinity: not JSON for orjson


@st.composite
def _requests(draw: st.DrawFn) -> tuple[str, str, bytes]:
    """Mostly well-aimed POSTs with a body of the fitting shape; the rest anything at all."""
    if draw(st.integers(0, 9)) < 8:
        template = draw(st.sampled_from([*_TARGETS, *["/programs/{pid}/report"] * 3]))
        path = template.format(pid=quote(draw(_pid), safe=""))
        method = "POST" if draw(st.integers(0, 9)) else draw(_method)
        good = draw(st.integers(0, 9)) > 0
        content = _encode(draw(_TARGETS[template])) if good else draw(_junk)
        return method, path, content
    content = draw(st.one_of(st.one_of(*_TARGETS.values()).map(_encode), _junk))
    return draw(_method), draw(_random_path), content


def check(resp: httpx.Response, what: str) -> None:
    assert resp.status_code < 500, f"{what} -> {resp.status_code} {resp.text[:300]}"
    if resp.status_code >= 400:
        try:
            message = resp.json()["error"]["message"]
        except (ValueError, KeyError, TypeError) as exc:
            raise AssertionError(
                f"{what} -> {resp.status_code}, not a JSON error: {resp.text[:300]}"
            ) from exc
        assert isinstance(message, str) and message, what


def test_fuzz_http_surface(harness: Harness) -> None:
    fresh = itertools.count()
    statuses: dict[int, int] = {}

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(
        req=_requests(),
        headers=_headers,
        policy=st.sampled_from(_POLICIES) | _near_policy,
        ended=st.sampled_from([False, False, False, True]),
    )
    def one(
        req: tuple[str, str, bytes], headers: dict[str, str], policy: dict, ended: bool
    ) -> None:
        method, path, content = req
        pid = None
        if "fresh" in path or b"fresh" in content:
            pid = f"fresh{next(fresh)}"  # a new program, so that requests reach it
            spec = _encode({"program_id": pid, "policy": policy})
            reg = harness.request("POST", "/programs", content=spec, headers=JSON)
            check(reg, f"register {pid} {policy}")
            if ended:  # ... or one that has already finished
                check(harness.request("POST", f"/programs/{pid}/finish"), f"finish {pid}")
            path = path.replace("fresh", pid)
            content = content.replace(b"fresh", pid.encode())
        what = f"{method} {path} {content[:300]!r} {headers}"
        headers = {**JSON, **headers}
        resp = harness.request(method, path, content=content, headers=headers)
        check(resp, what)
        statuses[resp.status_code] = statuses.get(resp.status_code, 0) + 1
        if pid is not None and not ended:  # finished ones are evicted: the table never fills
            check(harness.request("POST", f"/programs/{pid}/finish"), f"finish after {what}")

    one()
    assert sum(statuses.values()) >= EXAMPLES
    # The fuzzing reached past the error paths, too.
    assert statuses.get(200, 0) >= EXAMPLES // 40 and statuses.get(400, 0) >= EXAMPLES // 10
    assert statuses.get(404, 0) > 0
    health = harness.request("GET", "/health")
    assert health.status_code == 200 and health.json()["healthy_workers"] == 1
    listed = harness.request("GET", "/programs").json()["programs"]
    assert 0 < len(listed) <= MAX_PROGRAMS
    assert harness.fake.running == {}
    # Nothing left behind: no request waiting or in flight, no reserved slot, and the programs
    # the fuzzing registered and never finished are idle, so the reaper ends them all.
    router = harness.router
    assert router.admission.queue_length() == 0
    assert all(w.slots == type(w.slots)(w.index) for w in router.pool.workers)
    real = router.programs.clock
    router.programs.clock = lambda: real() + 2 * router.config.program_ttl_s
    try:
        harness.loop.run(router.reap(), timeout=60)
    finally:
        router.programs.clock = real
    listed = harness.request("GET", "/programs").json()["programs"]
    assert [p["program_id"] for p in listed if p["status"] == "running"] == []
    assert router.admission.queue.programs() == 0
