"""`dynasor_sgl.lang` against the real router app over real HTTP, in front of the fake worker.

The fake worker "generates" `max_new_tokens` tokens of " tok" and counts a prompt's tokens as
its whitespace-separated words, so every token count below is known exactly. The programs are
small hand-written `@sgl.function`s; answers for reports are scripted by the test (the fake's
text has none), so each decision is known too.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import sglang as sgl
from click.testing import CliRunner
from lang_harness import Served, refused_url, serve_router
from router_harness import LONG, POLICY

from dynasor_sgl import lang as dl
from dynasor_sgl.cli.main import main

pytestmark = [pytest.mark.io, pytest.mark.filterwarnings("ignore:Error in stream_executor")]

QUESTION = "alpha beta gamma"  # 3 prompt tokens at the fake worker
PROMPT = len(QUESTION.split())
SAMPLE_TOKENS = 5


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    with serve_router() as s:
        yield s


def show(served: Served, program_id: str) -> dict[str, Any]:
    resp = httpx.get(f"{served.url}/programs/{program_id}")
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def spec(function: Any, name: str = "test") -> dl.ProgramSpec:
    return dl.ProgramSpec(
        name=name, algorithm="sc", function=function, knob="samples", signal="entropy"
    )


def run(served: Served, function: Any, **kwargs: Any) -> dl.ProgramResult:
    kwargs.setdefault("policy", POLICY)
    return dl.run_program(spec(function), QUESTION, router=served.url, **kwargs)


def sample(s: Any, n: int, max_tokens: int = SAMPLE_TOKENS) -> dict[str, str]:
    """Forks b0..b<n-1> of `s`, one gen each; their texts by branch (the forks are ended)."""
    # SGLang's fork(n > 1) sends its prefill-only commit request only if the text queued on `s`
    # is already in `s.text_`, which its executor thread fills asynchronously: sync first, so
    # the commit request (and its tokens) is always there.
    s.sync()
    forks = s.fork(n)
    names = [f"b{i}" for i in range(n)]
    for name, fork in zip(names, forks, strict=True):
        dl.tag(fork, name)
        fork += sgl.gen("answer", max_tokens=max_tokens)
    try:
        return {name: str(dl.read(fork, "answer")) for name, fork in zip(names, forks, strict=True)}
    finally:
        for fork in forks:
            dl.discard(fork)


# -- programs ------------------------------------------------------------------------------


@sgl.function
def ledger_program(s, question):
    s += question + " "
    texts = sample(s, 4)
    probe = s.fork(1)[0]
    dl.tag(probe, "probe", "probe")
    probe += "x" + sgl.gen("p", max_tokens=2)
    judge = s.fork(1)[0]
    dl.tag(judge, "judge", "reward")
    judge += "y z" + sgl.gen("j", max_tokens=1)
    try:
        dl.read(probe, "p")
        dl.read(judge, "j")
    finally:
        dl.discard(probe)
        dl.discard(judge)
    dl.context(s).finish(texts["b0"], exit_reason="completed")


@sgl.function
def tagging_program(s, question):
    s += question + " "
    dl.tag(s, "root")
    s.sync()  # see `sample`
    forks = s.fork(3)
    dl.tag(forks[0], "alpha")
    dl.tag(forks[1], "beta")
    for fork in forks:
        fork += sgl.gen("answer", max_tokens=2)
    try:
        for fork in forks:
            dl.read(fork, "answer")
    finally:
        for fork in forks:
            dl.discard(fork)
    dl.context(s).finish("done", untagged=dl.branch(forks[2]), names=[dl.branch(f) for f in forks])


@sgl.function
def vote_program(s, question, answers):
    s += question + " "
    ctx = dl.context(s)
    texts = sample(s, len(answers))
    verdict = ctx.report(len(texts), answers=dict(zip(texts, answers, strict=True)))
    ctx.finish(answers[0], verdict=verdict)


@sgl.function
def raising_program(s, question):
    s += question
    raise ValueError("boom in the program body")


@sgl.function
def bad_read_program(s, question, bad):
    s += question + " "
    fork = s.fork(1)[0]
    dl.tag(fork, "bad")
    fork += sgl.gen("x", **{"max_tokens": 4, **bad})
    dl.read(fork, "x")
    dl.context(s).finish("unreachable")


@sgl.function
def bad_unread_program(s, question, bad):
    s += question + " "
    fork = s.fork(1)[0]
    dl.tag(fork, "bad")
    fork += sgl.gen("x", **{"max_tokens": 4, **bad})
    fork.sync()  # waits for the fork's work without reading its variable
    s += sgl.gen("fine", max_tokens=2)
    dl.context(s).finish(str(dl.read(s, "fine")))


@sgl.function
def stop_then_gen_program(s, question, read_after):
    s += question + " "
    ctx = dl.context(s)
    texts = sample(s, 4)
    verdict = ctx.report(4, answers=dict.fromkeys(texts, "42"))
    ctx.finish("42", stopped=verdict.stop)
    s += sgl.gen("more", max_tokens=SAMPLE_TOKENS)  # the router refuses it: 409
    if read_after:
        try:
            dl.read(s, "more")
        except dl.BranchFailed as exc:
            ctx.finish("42", expected=exc.expected, cause=type(exc.cause).__name__)


@sgl.function
def long_program(s, question, then_gen):
    s += question + " "
    s += sgl.gen("long", max_tokens=LONG)
    dl.context(s).finish(str(dl.read(s, "long"))[:20])
    if then_gen:
        s += sgl.gen("after", max_tokens=SAMPLE_TOKENS)


@sgl.function
def context_program(s, question):
    s += question
    dl.context(s)


CLI_SPEC = dl.ProgramSpec(
    name="cli-vote",
    algorithm="sc",
    function=vote_program,
    knob="samples",
    signal="entropy",
    params={"answers": ["7", "7", "7", "7"]},
)


# -- token ledger and branches -------------------------------------------------------------


def test_ledger_matches_the_router_and_counts_every_request(served: Served) -> None:
    res = run(served, ledger_program)
    assert res.status == "ok", res.error
    commit = PROMPT  # fork(4) prefills the shared prompt first (max_new_tokens 0)
    reasoning = commit + 4 * (PROMPT + SAMPLE_TOKENS)
    probe = (PROMPT + 1) + 2  # prompt + "x", 2 generated
    reward = (PROMPT + 2) + 1  # prompt + "y z", 1 generated
    assert res.tokens["reasoning"] == reasoning
    assert res.tokens["probe"] == probe
    assert res.tokens["reward"] == reward
    assert res.tokens["total"] == reasoning + probe + reward
    assert res.tokens["requests"] == 1 + 4 + 1 + 1
    assert res.router_tokens is not None
    assert res.tokens["total"] == res.router_tokens["total"]
    summary = show(served, res.program_id)
    assert summary["requests"] == res.tokens["requests"]
    assert summary["inflight"] == 0 and summary["status"] == "finished"
    assert res.exit_reason == "completed" and res.answer == " tok" * SAMPLE_TOKENS


def test_router_sees_the_tagged_branch_names(served: Served) -> None:
    res = run(served, tagging_program)
    assert res.status == "ok", res.error
    untagged = res.details["untagged"]
    assert res.details["names"] == ["alpha", "beta", untagged]
    assert untagged not in ("alpha", "beta", "root", "main")
    assert show(served, res.program_id)["branches"] == sorted(["root", "alpha", "beta", untagged])


# -- decisions ---------------------------------------------------------------------------


def test_four_equal_answers_stop_at_the_threshold(served: Served) -> None:
    res = run(served, vote_program, params={"answers": ["42"] * 4})
    assert res.status == "ok", res.error
    verdict = res.details["verdict"]
    assert isinstance(verdict, dl.Verdict)
    assert verdict.stop and verdict.reason == "threshold" and verdict.grant == 0
    assert res.exit_reason == "threshold" and res.answer == "42" and res.steps == 4
    # the units are "used"; "step" beside them is the deprecated alias, for one release
    assert res.certaindex == [{"used": 4, "step": 4, "entropy": 1.0}]
    summary = show(served, res.program_id)
    assert summary["exit_reason"] == "threshold"
    assert summary["certaindex"] == res.certaindex  # the router's readings: the same shape


def test_three_against_one_continues_with_a_grant(served: Served) -> None:
    res = run(served, vote_program, params={"answers": ["42", "42", "42", "41"]})
    assert res.status == "ok", res.error
    verdict = res.details["verdict"]
    assert verdict.action == "continue" and not verdict.stop
    assert verdict.grant == 4 and verdict.reason is None
    assert 0.5 < verdict.values["entropy"] < 0.7
    assert res.certaindex == [{"used": 4, "step": 4, "entropy": verdict.values["entropy"]}]


# -- errors never pass as empty answers --------------------------------------------------


def test_exception_in_the_program_is_an_error_result(served: Served) -> None:
    res = run(served, raising_program)
    assert res.status == "error" and not res.ok
    assert res.answer is None and res.exit_reason == "error"
    assert res.error is not None and "boom in the program body" in res.error
    assert show(served, res.program_id)["status"] == "finished"


BAD_PARAMS = [
    pytest.param({"temperature": -1}, "sampling_params.temperature must be in", id="temperature"),
    pytest.param({"max_tokens": -5}, "sampling_params.max_new_tokens must be in", id="max_tokens"),
]


@pytest.mark.parametrize(("bad", "message"), BAD_PARAMS)
def test_rejected_gen_in_a_read_fork_is_an_error(served: Served, bad: dict, message: str) -> None:
    res = run(served, bad_read_program, params={"bad": bad})
    assert res.status == "error" and res.answer is None and res.exit_reason == "error"
    assert res.error is not None
    assert "branch bad" in res.error and "HTTP 400" in res.error and message in res.error


@pytest.mark.parametrize(("bad", "message"), BAD_PARAMS)
def test_rejected_gen_in_an_unread_fork_is_an_error(
    served: Served, bad: dict, message: str
) -> None:
    res = run(served, bad_unread_program, params={"bad": bad})
    assert res.status == "error" and res.answer is None and res.exit_reason == "error"
    assert res.error is not None and "branch bad" in res.error and message in res.error


def test_unreachable_router_at_registration_raises() -> None:
    with refused_url() as url, pytest.raises(dl.BackendError, match="unreachable"):
        dl.run_program(spec(ledger_program), QUESTION, router=url)


def test_unknown_parameter_is_refused_before_registration(served: Served) -> None:
    before = len(httpx.get(f"{served.url}/programs").json()["programs"])
    with pytest.raises(ValueError, match="no parameter bogus"):
        run(served, ledger_program, params={"bogus": 1})
    assert len(httpx.get(f"{served.url}/programs").json()["programs"]) == before


# -- stop enforcement and timeouts -------------------------------------------------------


def test_gen_after_a_stop_is_the_expected_409(served: Served) -> None:
    res = run(served, stop_then_gen_program, params={"read_after": False})
    assert res.status == "ok", res.error
    assert res.exit_reason == "threshold" and res.answer == "42"
    assert res.details == {"stopped": True}
    summary = show(served, res.program_id)
    assert summary["exit_reason"] == "threshold" and summary["requests"] == 1 + 4


def test_reading_a_state_refused_after_a_stop_is_expected(served: Served) -> None:
    res = run(served, stop_then_gen_program, params={"read_after": True})
    assert res.status == "ok", res.error
    assert res.exit_reason == "threshold" and res.answer == "42"
    assert res.details["expected"] is True
    assert res.details["cause"] == "ProgramStopped"


def test_timeout_aborts_the_program(served: Served) -> None:
    res = run(served, long_program, params={"then_gen": True}, timeout_s=0.5)
    assert res.status == "ok", res.error
    assert res.exit_reason == "timeout"
    summary = show(served, res.program_id)
    assert summary["exit_reason"] == "aborted" and summary["aborted_requests"] == 1
    assert 0 < res.tokens["total"] == res.router_tokens["total"]
    assert res.tokens["total"] < PROMPT + LONG // 2


def test_timeout_of_the_last_gen_is_a_timeout(served: Served) -> None:
    res = run(served, long_program, params={"then_gen": False}, timeout_s=0.5)
    assert res.status == "ok", res.error
    assert show(served, res.program_id)["exit_reason"] == "aborted"
    assert res.exit_reason == "timeout"


@sgl.function
def unread_program(s, question):
    s += question + " "
    s += sgl.gen("never_read", max_tokens=LONG)  # queued; the function returns at once


def test_a_run_whose_work_outlives_the_drain_is_an_error_not_ok(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    """run_program used to report ok while the executor was still generating."""
    from dynasor_sgl.lang import run as run_module

    monkeypatch.setattr(run_module, "_DRAIN_S", 0.3)
    res = run(served, unread_program)
    assert res.status == "error" and "still running" in (res.error or "")
    assert show(served, res.program_id)["status"] != "running"  # ended at the router


# -- plain backends and the CLI ----------------------------------------------------------


def test_context_needs_run_program(served: Served) -> None:
    backend = sgl.RuntimeEndpoint(served.url)
    with pytest.raises(RuntimeError, match="run_program"):
        context_program.run(question=QUESTION, backend=backend)


def cli(*args: str) -> Any:
    return CliRunner().invoke(main, ["run", *args])


def test_cli_run_prints_one_json_object(served: Served) -> None:
    spec_name = f"{__name__}:CLI_SPEC"
    res = cli(
        spec_name,
        QUESTION,
        *("--router", served.url, "--json", "--cap", "8", "--detect-at", "4"),
        *("--preset", "paper"),  # the entropy rule (the cpu preset's is the posterior)
    )
    assert res.exit_code == 0, res.output
    lines = res.stdout.strip().splitlines()
    assert len(lines) == 1
    out = json.loads(lines[0])
    assert out["answer"] == "7" and out["exit_reason"] == "threshold"
    assert out["steps"] == 4 and out["certaindex"] == [{"used": 4, "step": 4, "entropy": 1.0}]
    tokens = out["tokens"]
    assert {"reasoning", "probe", "reward", "total"} <= set(tokens)
    assert tokens["total"] == tokens["reasoning"] == PROMPT + 4 * (PROMPT + SAMPLE_TOKENS)


def error_lines(output: str) -> list[str]:
    assert "Traceback" not in output
    return [line for line in output.splitlines() if line.startswith("Error:")]


def test_cli_unknown_program_is_a_usage_error() -> None:
    res = cli("nope", QUESTION)
    assert res.exit_code == 2
    [line] = error_lines(res.output)
    assert "unknown program 'nope'" in line and "self-consistency" in line


def test_cli_unknown_parameter_is_a_usage_error(served: Served) -> None:
    res = cli(f"{__name__}:CLI_SPEC", QUESTION, "--router", served.url, "--set", "bogus=1")
    assert res.exit_code == 2
    [line] = error_lines(res.output)
    assert "bogus" in line and "--set" in line


def test_cli_refused_router_is_one_line() -> None:
    with refused_url() as url:
        res = cli(f"{__name__}:CLI_SPEC", QUESTION, "--router", url)
    assert res.exit_code == 1
    assert error_lines(res.output) == [line for line in res.output.splitlines() if line]
    [line] = error_lines(res.output)
    assert line.startswith(f"Error: cannot run cli-vote on {url}:")
