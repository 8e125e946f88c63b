"""Safe access to SGLang program states from inside a program: context, tags, reads.

SGLang runs each state's requests on its own thread and swallows a failed request into that
state's `error_`; reading the failed variable then raises a bare KeyError, and anything queued
after the failure waits forever. `read` and `meta` wait with a check on the thread instead and
raise `BranchFailed` carrying the real error.
"""

from __future__ import annotations

import threading
from typing import Any

from sglang.lang.interpreter import ProgramState, StreamExecutor

from dynasor_sgl.lang.context import ProgramContext
from dynasor_sgl.lang.endpoint import DynasorEndpoint
from dynasor_sgl.lang.errors import BranchFailed
from dynasor_sgl.lang.tags import branch_of, set_tag
from dynasor_sgl.lang.tokens import TokenKind

_POLL_S = 0.05


def _executor(state: ProgramState | StreamExecutor) -> StreamExecutor:
    return state.stream_executor if isinstance(state, ProgramState) else state


def context(s: ProgramState) -> ProgramContext:
    """The run context of the program `s` belongs to (see `dynasor_sgl.lang.run_program`)."""
    backend = _executor(s).backend
    if not isinstance(backend, DynasorEndpoint):
        raise RuntimeError(
            "this program uses the Certaindex primitive: run it with "
            "dynasor_sgl.lang.run_program (or `dynasor-sgl run`), not with a plain backend"
        )
    return backend.ctx


def tag(state: ProgramState, branch: str | None = None, kind: TokenKind | None = None) -> None:
    """Name the branch a state's requests belong to and what their tokens are for.

    branch: 1-64 characters of A-Z a-z 0-9 _ . - (the router's rule); forks do not inherit it.
    kind: "reasoning" (default), "probe" or "reward" for the token ledger.
    """
    set_tag(_executor(state), branch, kind)


def branch(state: ProgramState) -> str:
    return branch_of(_executor(state))


def _wait(ex: StreamExecutor, name: str) -> None:
    event: threading.Event | None = ex.variable_event.get(name)
    while event is not None and not event.wait(_POLL_S):
        if ex.error_ is not None or (ex.use_thread and not ex.worker.is_alive()):
            break
    if ex.error_ is not None:
        raise BranchFailed(branch_of(ex), ex.error_)


def read(state: ProgramState, name: str) -> Any:
    """The value of gen `name` in `state`, waiting for it; `BranchFailed` if the state failed."""
    ex = _executor(state)
    _wait(ex, name)
    if name not in ex.variables:
        raise BranchFailed(branch_of(ex), KeyError(f"no variable {name!r} in this state"))
    return ex.variables[name]


def meta(state: ProgramState, name: str) -> dict[str, Any]:
    """The worker's meta_info of gen `name` (tokens, finish_reason, logprobs)."""
    ex = _executor(state)
    _wait(ex, name)
    info = ex.meta_info.get(name)
    if info is None:
        raise BranchFailed(branch_of(ex), KeyError(f"no meta_info for {name!r}"))
    return dict(info)


def finish_reason(state: ProgramState, name: str) -> str:
    """ "stop", "length" or "abort" for gen `name` (SGLang's finish_reason type)."""
    reason = meta(state, name).get("finish_reason")
    return str(reason.get("type")) if isinstance(reason, dict) else str(reason)


def fork(state: ProgramState, n: int) -> list[ProgramState]:
    """`state.fork(n)` that always prefills the shared prefix once first.

    SGLang sends that prefill (so the n branches hit the prefix cache instead of each
    computing the prompt) only if the state's text is already built when fork() is called; it
    is built on the state's own thread, so without waiting it is skipped at random.
    """
    ex = _executor(state)
    if n > 1:
        ex.sync()
        if ex.error_ is not None:
            raise BranchFailed(branch_of(ex), ex.error_)
    return list(state.fork(n))


def error(state: ProgramState) -> BaseException | None:
    """The state's error without blocking (SGLang's `state.error()` can hang after one)."""
    return _executor(state).error_


def discard(state: ProgramState) -> None:
    """End a fork the program no longer needs (its thread exits; nothing is joined back).

    Do not use the state afterwards: anything queued on it waits forever, and so does
    `fork(n > 1)` of it (SGLang queues a prefill on the ended thread); `fork(1)` still works.
    """
    _executor(state).end()
