"""`run_program(..., worker=URL)`: a direct run against the fake SGLang worker, no router; and
`deadline_s` reaching the router at registration.

The fake worker "generates" `max_new_tokens` tokens of " tok" and counts a prompt's tokens as
its words; the programs script their answers, so every decision is known.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import sglang as sgl
from fake_worker import FakeWorker
from lang_harness import Served, fake_worker_thread, serve_router

from dynasor_sgl import lang as dl
from dynasor_sgl.lang.context import LocalReporter, ProgramContext
from dynasor_sgl.policy.config import PolicyConfig

pytestmark = pytest.mark.io  # sockets, subprocesses or a served router

QUESTION = "alpha beta gamma"


@pytest.fixture(scope="module")
def worker() -> Iterator[FakeWorker]:
    with fake_worker_thread(0.001) as fake:
        yield fake


@sgl.function
def batches(s, question, answers):
    """Self-consistency's shape: batches of the granted size, scripted answers, to a stop."""
    s += question + " "
    ctx = dl.context(s)
    drawn: dict[str, str | None] = {}
    want = ctx.config.initial
    while want > 0:
        for i in range(len(drawn), len(drawn) + want):
            fork = s.fork(1)[0]
            dl.tag(fork, f"s{i}")
            fork += sgl.gen("x", max_tokens=2)
            dl.read(fork, "x")
            dl.discard(fork)
            drawn[f"s{i}"] = answers[i % len(answers)]
        verdict = ctx.report(len(drawn), answers=drawn)
        want = 0 if verdict.stop else min(verdict.grant, ctx.config.cap - len(drawn))
    ctx.finish(answers[0], exit_reason="cap", steps=len(drawn))


SPEC = dl.ProgramSpec(
    name="batches", algorithm="sc", function=batches, knob="samples", signal="entropy"
)
POLICY = {"cap": 8, "initial": 4, "pace": 4, "detect_at": 4}


def run_direct(worker: FakeWorker, answers: list[str], **policy: Any) -> dl.ProgramResult:
    return dl.run_program(
        SPEC, QUESTION, worker=worker.url, policy={**POLICY, **policy}, params={"answers": answers}
    )


def test_agreeing_answers_stop_locally_at_the_detection_step(worker: FakeWorker) -> None:
    before = len(worker.generate_bodies)
    res = run_direct(worker, ["7"])
    assert res.status == "ok", res.error
    assert (res.exit_reason, res.steps, res.answer) == ("threshold", 4, "7")
    assert res.router_tokens is None  # no router in the path
    assert res.program_id.startswith("direct-")
    assert len(worker.generate_bodies) - before == 4  # straight to the worker's /generate
    assert res.tokens["reasoning"] == 4 * (2 + len(QUESTION.split()))


def test_empty_thresholds_run_to_the_cap(worker: FakeWorker) -> None:
    res = run_direct(worker, ["7"], thresholds={})
    assert (res.status, res.exit_reason, res.steps) == ("ok", "cap", 8)


def test_disagreeing_answers_continue_to_the_cap(worker: FakeWorker) -> None:
    res = run_direct(worker, ["1", "2", "3", "4"])
    assert (res.exit_reason, res.steps) == ("cap", 8)


def test_a_timeout_needs_a_router(worker: FakeWorker) -> None:
    with pytest.raises(ValueError, match="router"):
        dl.run_program(SPEC, QUESTION, worker=worker.url, timeout_s=5.0, params={"answers": ["1"]})


def test_local_reporter_decides_like_the_policy() -> None:
    config = PolicyConfig.for_algorithm("sc", **POLICY)
    reporter = LocalReporter(config)
    assert reporter.report({"used": 4, "answers": dict.fromkeys("abcd", "7")}).stop
    ongoing = LocalReporter(config).report(
        {"used": 4, "answers": dict(zip("abcd", "1234", strict=True))}
    )
    assert (ongoing.action, ongoing.grant) == ("continue", 4)


def test_wait_is_wall_time_minus_the_workers_own_latency() -> None:
    ctx = ProgramContext("p", PolicyConfig(), LocalReporter(PolicyConfig()))
    ctx.note_wait(1.5, {"e2e_latency": 1.0})
    ctx.note_wait(0.2, {"e2e_latency": 0.3})  # clocks disagree: never negative
    ctx.note_wait(2.0, {})  # the worker did not say: nothing recorded
    assert ctx.waits == [0.5, 0.0]


def test_deadline_reaches_the_router() -> None:
    served: Served
    with serve_router() as served:
        res = dl.run_program(
            SPEC,
            QUESTION,
            router=served.url,
            policy=POLICY,
            params={"answers": ["7"]},
            deadline_s=12.5,
        )
        shown = httpx.get(f"{served.url}/programs/{res.program_id}").json()
    assert res.status == "ok", res.error
    assert shown["deadline_s"] == 12.5
