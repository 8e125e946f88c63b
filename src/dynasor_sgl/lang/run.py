"""Run one reasoning program against the router and get a typed result, never a silent failure.

`run_program` registers the program (its policy comes back from the router), runs the
`@sgl.function` on a `DynasorEndpoint` bound to it, waits for every request so the token ledger
is complete, turns any failure into `status="error"` with the message (SGLang's interpreter
would otherwise swallow it), tells the router the program finished, and returns a
`ProgramResult`. A timeout aborts the program at the router, which ends its requests.
"""

from __future__ import annotations

import logging
import threading
import time
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any

from sglang.lang.ir import SglFunction

from dynasor_sgl.lang.client import DEFAULT_ROUTER, RouterClient
from dynasor_sgl.lang.context import ProgramContext, RouterReporter
from dynasor_sgl.lang.endpoint import DynasorEndpoint
from dynasor_sgl.lang.errors import BackendError, BranchFailed, BranchTrimmed, ProgramStopped
from dynasor_sgl.lang.reward import RewardSource, SelfJudge
from dynasor_sgl.policy_config import PolicyConfig

logger = logging.getLogger(__name__)

# SGLang's executor prints a traceback warning for every failed request, including the 409s a
# router stop is expected to cause. run_program reports every failure in its result instead.
warnings.filterwarnings("ignore", message="Error in stream_executor", category=UserWarning)

EXIT_REASONS = ("threshold", "posterior", "cap", "completed", "trimmed", "aborted", "timeout",
                "error")  # fmt: skip
_DRAIN_S = 60.0


@dataclass(frozen=True)
class ProgramSpec:
    """A shipped (or user) program: its CLI name, the policy algorithm whose defaults it uses,
    the `@sgl.function` (called with question=... and `params`), what its knob counts, the
    signal `--threshold` sets, and default extra arguments."""

    name: str
    algorithm: str
    function: SglFunction
    knob: str
    signal: str
    description: str = ""
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class ProgramResult:
    """The outcome of one run. status "ok" or "error" (then `error` has the message and the
    answer is None). exit_reason: one of EXIT_REASONS. steps: knob units used. certaindex: the
    trajectory [{"step", signal: value}]. tokens: reasoning, probe, reward, total (+ detail).
    router_tokens: the router's own count for the program (None if it could not be read)."""

    program: str
    program_id: str
    question: str
    status: str
    answer: str | None
    exit_reason: str
    steps: int
    cap: int
    certaindex: list[dict[str, Any]]
    tokens: dict[str, int]
    router_tokens: dict[str, int] | None
    elapsed_s: float
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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
    policy: Mapping[str, Any] | None = None,
    params: Mapping[str, Any] | None = None,
    program_id: str | None = None,
    timeout_s: float | None = None,
    reward: RewardSource | None = None,
    api_key: str | None = None,
    chat_template: str | None = None,
) -> ProgramResult:
    """Run `program` (a ProgramSpec or a shipped program's name) on `question`.

    policy: PolicyConfig overrides (cap, thresholds, detect_at, ...) on the algorithm's defaults.
    params: extra arguments of the program's function (e.g. max_tokens). reward: the reward
    source for programs that use one (default `SelfJudge`). An unknown parameter raises
    ValueError; registration errors (bad policy, unreachable router) raise `BackendError`;
    everything after registration ends in the result.
    """
    spec = program if isinstance(program, ProgramSpec) else _lookup(program)
    function = _bind(spec, {**spec.params, **(params or {}), "question": question})
    client = router if isinstance(router, RouterClient) else _client(router, api_key)
    info = client.register(spec.algorithm, policy, program_id)
    pid = str(info["program_id"])
    ctx = ProgramContext(pid, PolicyConfig.from_dict(info["config"]), RouterReporter(client, pid))
    ctx.reward = reward or SelfJudge()
    backend = DynasorEndpoint(client, ctx, _model_info(client), chat_template)
    started = time.monotonic()
    timed_out = threading.Event()
    timer = _watchdog(client, pid, timeout_s, timed_out)
    failure: BaseException | None = None
    try:
        state = function.run(backend=backend)
        state.stream_executor.worker.join(_DRAIN_S)
        failure = state.stream_executor.error_
    except Exception as exc:  # the program's own failure, reported in the result
        failure = exc
    finally:
        if timer is not None:
            timer.cancel()
    if not ctx.wait_idle(_DRAIN_S):
        logger.warning("program %s: requests still in flight after %.0f s", pid, _DRAIN_S)
    return _result(spec, ctx, client, question, failure, timed_out.is_set(), started)


def _bind(spec: ProgramSpec, arguments: Mapping[str, Any]) -> SglFunction:
    """The function with its arguments bound. Passing them to `run()` instead would let
    SGLang's own run() parameters (temperature, top_p, ...) swallow same-named ones."""
    known = [name for name in spec.function.arg_names if name != "s"]
    unknown = sorted(set(arguments) - set(known))
    if unknown:
        raise ValueError(f"{spec.name} has no parameter {', '.join(unknown)}; "
                         f"it takes: {', '.join(known)}")  # fmt: skip
    return spec.function.bind(**arguments)


def _lookup(name: str) -> ProgramSpec:
    from dynasor_sgl.programs import get_program  # the shipped programs import this module

    return get_program(name)


def _watchdog(client: RouterClient, pid: str, timeout_s: float | None,
              fired: threading.Event) -> threading.Timer | None:  # fmt: skip
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


def _result(
    spec: ProgramSpec,
    ctx: ProgramContext,
    client: RouterClient,
    question: str,
    failure: BaseException | None,
    timed_out: bool,
    started: float,
) -> ProgramResult:
    exit_reason, message = _exit(ctx, failure, timed_out)
    answer = None if message else ctx.answer
    router_tokens: dict[str, int] | None = None
    try:
        if message:
            client.abort(ctx.program_id)  # end whatever the failed program left running
        summary = client.finish(ctx.program_id, answer)
        router_tokens = dict(summary.get("tokens") or {})
    except BackendError as exc:
        logger.warning("program %s: could not finish at the router: %s", ctx.program_id, exc)
    if message:
        logger.warning("program %s failed: %s", ctx.program_id, message)
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
        elapsed_s=round(time.monotonic() - started, 3),
        error=message,
        details=dict(ctx.details),
    )
