"""math-verify in a worker process, with a timeout of our own.

math-verify guards its sympy work with SIGALRM, which only works in the main thread; a router
handler thread calling it would either crash or hang on a pathological expression. So its own
timeouts are switched off and every check runs in one long-lived child process (spawned lazily,
on first use). The caller waits at most `timeout_s`; on a timeout the child is killed and the
next call starts a fresh one. This module owns that process and nothing else: it does not know
about answer extraction, normalization or caching (see `dynasor_sgl.answers.equivalence`).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import sys
import threading
import types
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 5.0
STARTUP_TIMEOUT_S = 120.0


def _serve(conn: Connection, target: Callable[..., Any], warmup: Callable[[], Any] | None) -> None:
    """Child loop: answer ("ok", value) or ("error", message) for each args tuple received."""
    if warmup is not None:
        warmup()
    conn.send(("ready", None))
    while True:
        try:
            args = conn.recv()
        except EOFError:
            return
        try:
            conn.send(("ok", target(*args)))
        except Exception as exc:  # a failing check must not kill the worker
            conn.send(("error", repr(exc)))


def _import_math_verify() -> None:
    import math_verify  # noqa: F401  (imported once at startup, not inside a timed call)

    logging.getLogger("math_verify").setLevel(logging.ERROR)


def math_verify_pair(a: str, b: str) -> bool:
    """math-verify on two bare LaTeX answers (wrapped in `$...$`), its own timeouts disabled."""
    from math_verify import parse, verify

    gold = parse(f"${a}$", parsing_timeout=None)
    target = parse(f"${b}$", parsing_timeout=None)
    if not gold or not target:
        return False
    return bool(verify(gold, target, timeout_seconds=None))


def math_verify_extract(text: str) -> str:
    """The final value math-verify's `parse` finds in free text (its string form); "" if none."""
    from math_verify import parse

    found = parse(text, parsing_timeout=None)
    return str(found[1]) if len(found) > 1 else ""


def math_verify_call(op: str, *args: str) -> Any:
    """The child's entry point: ("equal", a, b) or ("extract", text)."""
    if op == "equal":
        return math_verify_pair(*args)
    if op == "extract":
        return math_verify_extract(*args)
    raise ValueError(f"unknown math-verify operation {op!r}")


@contextlib.contextmanager
def _without_main() -> Iterator[None]:
    """Hide the caller's `__main__` while a child is spawned.

    A spawned child re-imports the parent's main script (as `__mp_main__`) before it runs
    anything; a user's script without an `if __name__ == "__main__"` guard would then run again
    inside the verifier. The child needs nothing from `__main__`: its target is a module-level
    function pickled by reference.
    """
    saved = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = saved


class FifoLock:
    """A lock granted in the order it was asked for. `threading.Lock` lets the thread that just
    released it take it again first, so one program's run of checks could keep every other
    program's decision waiting; here a waiter waits for at most the calls asked before it."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.asked = 0  # tickets handed out
        self._serving = 0  # the ticket that holds the lock
        self._gone: set[int] = set()  # tickets whose waiter was interrupted

    def __enter__(self) -> None:
        with self._cond:
            ticket, self.asked = self.asked, self.asked + 1
            try:
                self._cond.wait_for(lambda: self._serving == ticket)
            except BaseException:  # e.g. KeyboardInterrupt: its turn must not block the rest
                self._gone.add(ticket)
                self._next()
                raise

    def __exit__(self, *_: object) -> None:
        with self._cond:
            self._serving += 1
            self._next()

    def _next(self) -> None:
        """Skip the turns of waiters that went away, and wake the rest (lock held)."""
        while self._serving in self._gone:
            self._gone.remove(self._serving)
            self._serving += 1
        self._cond.notify_all()


class TimedWorker:
    """One child process that runs `target(*args)` with a per-call timeout.

    Thread-safe: calls are served one at a time, in the order they came (`FifoLock`). `call`
    returns the target's value, or None if it timed out, raised, or the child died; the child
    is then replaced on the next call.
    """

    def __init__(
        self,
        target: Callable[..., Any],
        timeout_s: float = DEFAULT_TIMEOUT_S,
        warmup: Callable[[], Any] | None = None,
    ) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s!r}")
        self.target = target
        self.timeout_s = timeout_s
        self.warmup = warmup
        self._lock = FifoLock()
        self._proc: BaseProcess | None = None
        self._conn: Connection | None = None
        self.restarts = 0

    def _start(self) -> Connection:
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        proc = ctx.Process(
            target=_serve,
            args=(child, self.target, self.warmup),
            daemon=True,
            name="dynasor-verifier",
        )
        with _without_main():
            proc.start()
        child.close()
        if not parent.poll(STARTUP_TIMEOUT_S):
            proc.kill()
            raise RuntimeError(f"verifier process did not start within {STARTUP_TIMEOUT_S}s")
        parent.recv()
        self._proc, self._conn = proc, parent
        return parent

    def _kill(self, restart: bool = True) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.join(timeout=5)
        if self._conn is not None:
            self._conn.close()
        self._proc, self._conn = None, None
        self.restarts += int(restart)

    def start(self) -> None:
        """Starts the child now instead of on the first call (to keep startup out of timings)."""
        with self._lock:
            if self._conn is None:
                self._start()

    def call(self, *args: Any) -> Any | None:
        """`target(*args)` evaluated in the child, or None on timeout, error or a dead child."""
        with self._lock:
            try:
                conn = self._conn or self._start()
            except RuntimeError as exc:
                logger.warning("verifier unavailable: %s", exc)
                return None
            try:
                conn.send(args)
                if not conn.poll(self.timeout_s):
                    logger.warning("verifier timed out after %.1fs on %r", self.timeout_s, args)
                    self._kill()
                    return None
                status, value = conn.recv()
            except (EOFError, OSError) as exc:
                logger.warning("verifier process died (%s); restarting on next call", exc)
                self._kill()
                return None
        if status != "ok":
            logger.warning("verifier failed on %r: %s", args, value)
            return None
        return value

    def close(self) -> None:
        """Stops the child process, if any."""
        with self._lock:
            self._kill(restart=False)


_default_worker: TimedWorker | None = None
_default_lock = threading.Lock()


def default_worker() -> TimedWorker:
    """The process-wide math-verify worker (created on first use)."""
    global _default_worker
    with _default_lock:
        if _default_worker is None:
            _default_worker = TimedWorker(math_verify_call, warmup=_import_math_verify)
        return _default_worker


def math_verify_equal(a: str, b: str) -> bool | None:
    """Whether math-verify judges `a` and `b` equal; None when it could not say (a timeout, an
    error or a dead child): the caller must not take that for "different"."""
    value = default_worker().call("equal", a, b)
    return None if value is None else value is True


def math_verify_parse(text: str) -> str | None:
    """The final value math-verify finds in `text`; "" when it finds none, None when it could
    not say (a timeout, an error or a dead child)."""
    value = default_worker().call("extract", text)
    return value if isinstance(value, str) else None
