"""Run one reasoning program against the router and get a typed result, never a silent failure.

`run_program` registers the program (its policy comes back from the router), runs the
`@sgl.function` on a `DynasorEndpoint` bound to it, waits for every request so the token ledger
is complete, turns any failure into `status="error"` with the message (SGLang's interpreter
would otherwise swallow it), tells the router the program finished, and returns a
`ProgramResult`. A timeout aborts the program at the router, which ends its requests.

With `worker=URL` the run is direct: no router, requests go to the SGLang worker's own
`/generate`, and the policy decides in this process (`LocalReporter`) from the algorithm's
defaults plus `policy`; the program obeys its verdicts, but nothing aborts requests in flight.
That is SGLang serving the program unaided (the online benchmark's baseline).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from sglang.lang.ir import SglFunction

from dynasor_sgl.lang.client import DEFAULT_ROUTER, RouterClient
from dynasor_sgl.lang.context import LocalReporter, Observer, ProgramContext, RouterReporter
from dynasor_sgl.lang.endpoint import DynasorEndpoint
from dynasor_sgl.lang.errors import BackendError, BranchFailed, BranchTrimmed, ProgramStopped
from dynasor_sgl.lang.registry import find_program
from dynasor_sgl.lang.reward import RewardSource, SelfJudge
from dynasor_sgl.lang.spec import ProgramResult, ProgramSpec
from dynasor_sgl.policy.config import PolicyConfig

logger = logging.getLogger(__name__)

# SGLang's executor prints a traceback warning for every failed request, including the 409s a
# router stop is expected to cause. run_program reports every failure in its result instead.
warnings.filterwarnings("ignore", message="Error in stream_executor", category=UserWarning)

_DRAIN_S = 60.0


@lru_cache(maxsize=16)
def _model_info(client: RouterClient) -> dict[str, Any]:
    return client.model_info()


@lru_cache(maxsize=16)
def _client(url: str, api_key: str | None) -> RouterClient:
    return RouterClient(url, api_key)


def run_program(
    program: str | ProgramSpec,
    question: str,
    *,
    router: str | RouterClient = DEFAULT_ROUTER,
    worker: str | None = None,
    policy: Mapping[str, Any] | None = None,
    params: Mapping[str, Any] | None = None,
    program_id: str | None = None,
    timeout_s: float | None = None,
    deadline_s: float | None = None,
    reward: RewardSource | None = None,
    api_key: str | None = None,
    chat_template: str | None = None,
    observer: Observer | None = None,
) -> ProgramResult:
    """Run `program` (a ProgramSpec or a shipped program's name) on `question`.

    policy: PolicyConfig overrides (cap, thresholds, detect_at, ...) on the algorithm's defaults.
    params: extra arguments of the program's function (e.g. max_tokens). reward: the reward
    source for programs that use one (default `SelfJudge`). deadline_s: the program's deadline
    (seconds from registration), told to the router for deadline-aware scheduling. worker: run
    directly against this SGLang worker instead of `router` (see the module docstring; a
    timeout needs a router to abort, so it is refused). observer: called with the program's
    context after each report and each answered request (progress displays read `steps`,
    `trajectory` and `usage` there). An unknown parameter raises ValueError;
    registration errors (bad policy, unreachable router) raise `BackendError`; everything
    after registration ends in the result.
    """
    spec = program if isinstance(program, ProgramSpec) else find_program(program)
    function = _bind(spec, {**spec.params, **(params or {}), "question": question})
    if worker is not None and timeout_s is not None:
        raise ValueError("timeout_s needs a router to abort the program; a direct run has none")
    source = reward or SelfJudge()
    if worker is not None:
        client = _client(worker, api_key)
        ctx, url = _direct_context(spec, policy, program_id, source), f"{client.url}/generate"
    else:
        client = router if isinstance(router, RouterClient) else _client(router, api_key)
        ctx, url = _registered_context(client, spec, policy, program_id, deadline_s, source), None
    ctx.observer = observer
    backend = DynasorEndpoint(client, ctx, _model_info(client), chat_template, url)
    outcome = _execute(function, backend, client, ctx, timeout_s)
    return _result(spec, ctx, client, question, outcome)


def _registered_context(
    client: RouterClient,
    spec: ProgramSpec,
    policy: Mapping[str, Any] | None,
    program_id: str | None,
    deadline_s: float | None,
    reward: RewardSource,
) -> ProgramContext:
    """Register the program at the router; its context, with the policy the router built."""
    info = client.register(spec.algorithm, policy, program_id, deadline_s)
    pid = str(info["program_id"])
    config = PolicyConfig.from_dict(info["config"])
    return ProgramContext(pid, config, RouterReporter(client, pid), reward)


def _execute(
    function: SglFunction,
    backend: DynasorEndpoint,
    client: RouterClient,
    ctx: ProgramContext,
    timeout_s: float | None,
) -> _Outcome:
    """Run the bound function to its end and wait for every request (a complete ledger)."""
    started = time.monotonic()
    timed_out = threading.Event()
    timer = _watchdog(client, ctx.program_id, timeout_s, timed_out)
    failure: BaseException | None = None
    try:
        state = function.run(backend=backend)
        state.stream_executor.worker.join(_DRAIN_S)
        failure = state.stream_executor.error_
        if failure is None and state.stream_executor.worker.is_alive():
            # Its work is still running: an ok result now would be missing it.
            failure = TimeoutError(
                f"the program's generations were still running {_DRAIN_S:.0f}"
                " s after its function returned"
            )
    except Exception as exc:  # the program's own failure, reported in the result
        failure = exc
    finally:
        if timer is not None:
            timer.cancel()
    if not ctx.wait_idle(_DRAIN_S):
        logger.warning(
            "program %s: requests still in flight after %.0f s", ctx.program_id, _DRAIN_S
        )
        failure = failure or TimeoutError(
            f"requests still in flight {_DRAIN_S:.0f} s after the program ended"
        )
    routed = isinstance(ctx.reporter, RouterReporter)
    return _Outcome(failure, timed_out.is_set(), started, routed)


def _direct_context(
    spec: ProgramSpec,
    policy: Mapping[str, Any] | None,
    program_id: str | None,
    reward: RewardSource,
) -> ProgramContext:
    """The context of a direct run: the policy the router would have built, decided here."""
    config = PolicyConfig.for_algorithm(spec.algorithm, **dict(policy or {}))
    pid = program_id or f"direct-{uuid.uuid4().hex[:12]}"
    return ProgramContext(pid, config, LocalReporter(config), reward)


def _bind(spec: ProgramSpec, arguments: Mapping[str, Any]) -> SglFunction:
    """The function with its arguments bound. Passing them to `run()` instead would let
    SGLang's own run() parameters (temperature, top_p, ...) swallow same-named ones."""
    known = [name for name in spec.function.arg_names if name != "s"]
    unknown = sorted(set(arguments) - set(known))
    if unknown:
        raise ValueError(
            f"{spec.name} has no parameter {', '.join(unknown)}; it takes: {', '.join(known)}"
        )
    return spec.function.bind(**arguments)


def _watchdog(
    client: RouterClient, pid: str, timeout_s: float | None, fired: threading.Event
) -> threading.Timer | None:
    if timeout_s is None:
        return None

    def fire() -> None:
        fired.set()
        try:
            client.abort(pid)
        except BackendError as exc:
            logger.warning("program %s: abort after timeout failed: %s", pid, exc)

    timer = threading.Timer(timeout_s, fire)
    timer.daemon = True
    timer.start()
    return timer


def _cause(failure: BaseException | None) -> BaseException | None:
    return failure.cause if isinstance(failure, BranchFailed) else failure


def _exit(
    ctx: ProgramContext, failure: BaseException | None, timed_out: bool
) -> tuple[str, str | None]:
    """(exit_reason, error message or None)."""
    cause = _cause(failure)
    if ctx.errors and not timed_out:
        branch, exc = ctx.errors[0]
        return "error", f"branch {branch}: {exc}"
    if ctx.stopped and (cause is None or isinstance(cause, ProgramStopped)):
        return str(ctx.last.reason if ctx.last else "threshold"), None
    if timed_out:  # whether a later request got a 409 or the last one was cut short
        return "timeout", None
    if isinstance(cause, ProgramStopped):
        return "aborted", None
    if isinstance(cause, BranchTrimmed):
        return "trimmed", None
    if failure is not None:
        return "error", f"{type(cause).__name__}: {cause}"
    return ctx.exit_reason or "completed", None


@dataclass(frozen=True)
class _Outcome:
    """How the run ended: the failure if any, whether the watchdog fired, when it started,
    and whether a router was in the path (to be told the program finished)."""

    failure: BaseException | None
    timed_out: bool
    started: float
    routed: bool


def _finish_at_router(
    client: RouterClient, ctx: ProgramContext, answer: str | None, failed: bool
) -> dict[str, int] | None:
    """Tell the router the program ended; the router's token count, or None."""
    try:
        if failed:
            client.abort(ctx.program_id)  # end whatever the failed program left running
        summary = client.finish(ctx.program_id, answer)
        return dict(summary.get("tokens") or {})
    except BackendError as exc:
        logger.warning("program %s: could not finish at the router: %s", ctx.program_id, exc)
        return None


def _result(
    spec: ProgramSpec,
    ctx: ProgramContext,
    client: RouterClient,
    question: str,
    outcome: _Outcome,
) -> ProgramResult:
    exit_reason, message = _exit(ctx, outcome.failure, outcome.timed_out)
    answer = None if message else ctx.answer
    router_tokens = None
    if outcome.routed:
        router_tokens = _finish_at_router(client, ctx, answer, message is not None)
    if message:
        logger.warning("program %s failed: %s", ctx.program_id, message)
    waits = list(ctx.waits)
    return ProgramResult(
        program=spec.name,
        program_id=ctx.program_id,
        question=question,
        status="error" if message else "ok",
        answer=answer,
        exit_reason=exit_reason,
        steps=ctx.steps,
        cap=ctx.config.cap,
        certaindex=list(ctx.trajectory),
        tokens=ctx.usage.to_dict(),
        router_tokens=router_tokens,
        elapsed_s=round(time.monotonic() - outcome.started, 3),
        error=message,
        details=dict(ctx.details),
        wait_s=round(sum(waits) / len(waits), 4) if waits else None,
    )
