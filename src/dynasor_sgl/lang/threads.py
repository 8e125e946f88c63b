"""A deadlock between SGLang's frontend and CPython 3.11's threading, and its fix.

SGLang's `ProgramState.__del__` calls `StreamExecutor.end()`, which asks
`self.worker.is_alive()`. For a worker thread that has finished but was never joined,
`is_alive()` takes `threading._shutdown_locks_lock`. The garbage collector runs finalizers in
whichever thread triggers it, and a thread starting up holds that same (non-reentrant) lock in
`Thread._set_tstate_lock` while it allocates: a collection there that finalizes a program state
deadlocks the thread, then every thread that starts or stops after it (observed on the chaos
test: a fork's `Thread.start()` never returned; the same pattern as apache/tvm#18157).

`end()` here does what SGLang's does without asking whether the worker lives: it queues the
worker's stop marker unconditionally. A worker that already stopped never reads its queue
again, so the extra marker is inert, and `end()` called twice queues two (the first stops the
worker). Installed once, when `dynasor_sgl.lang` is imported.
"""

from __future__ import annotations

from typing import Any

from sglang.lang.interpreter import StreamExecutor

_INSTALLED = "_dynasor_end_without_is_alive"


def _end(self: Any) -> None:
    if self.use_thread:
        self.queue.put(None)
    self.backend.end_program(self)


def install() -> None:
    """Replaces `StreamExecutor.end` (idempotent)."""
    if getattr(StreamExecutor, _INSTALLED, False):
        return
    StreamExecutor.end = _end
    setattr(StreamExecutor, _INSTALLED, True)
