"""Admission: a per-worker bound on in-flight requests, and the order in which waiters go.

Below the bound a request goes straight to its worker. Above it, requests wait, and each freed
slot goes to the program the pure `Scheduler` puts first (approximate SJF with aging, or FIFO):
all of that program's waiting requests go out together (gang). The same scheduler gives each
request its SGLang `priority`. This module owns the waiting; it does not talk to workers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from dynasor_sgl.router.errors import ApiError
from dynasor_sgl.router.pool import Worker, WorkerPool
from dynasor_sgl.scheduling import Scheduler, SchedulerConfig

logger = logging.getLogger(__name__)

DEFAULT_PRIORITY = 500  # requests outside any program: the middle of SGLang's range we use


@dataclass
class _Waiter:
    future: asyncio.Future[None]
    worker: Worker
    program_id: str


class Admission:
    """Gates requests per worker; thread-unsafe, used from the router's event loop only."""

    def __init__(
        self,
        pool: WorkerPool,
        config: SchedulerConfig,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pool = pool
        self.config = config
        self.clock = clock
        self._schedulers = {w.index: Scheduler(config) for w in pool.workers}
        self._waiting: dict[str, _Waiter] = {}

    def queue_length(self) -> int:
        return len(self._waiting)

    def ensure_program(self, worker: Worker, program_id: str, remaining_knob: int) -> None:
        sched = self._schedulers[worker.index]
        if program_id not in sched:
            sched.add(program_id, self.clock(), remaining_knob)

    def forget_program(self, program_id: str) -> None:
        for sched in self._schedulers.values():
            sched.on_finish(program_id)

    def on_report(self, program_id: str, tokens: int, steps: int, remaining_knob: int) -> None:
        for sched in self._schedulers.values():
            if program_id in sched:
                sched.on_report(program_id, tokens, steps, remaining_knob)

    def priority(self, worker: Worker, program_id: str | None) -> int:
        sched = self._schedulers[worker.index]
        if program_id is None or program_id not in sched:
            return DEFAULT_PRIORITY
        return sched.priority(program_id, self.clock())

    async def acquire(self, worker: Worker, request_id: str, program_id: str | None) -> None:
        """Wait for a slot on `worker`. Raises ApiError if the wait is cancelled by an abort."""
        if worker.inflight < self.pool.max_inflight and not worker.queued:
            worker.inflight += 1
            return
        sched = self._schedulers[worker.index]
        pid = program_id or f"request:{request_id}"
        if pid not in sched:
            sched.add(pid, self.clock(), 1)
        sched.enqueue(pid, [request_id], self.clock())
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = _Waiter(fut, worker, pid)
        worker.queued += 1
        logger.debug("request %s of %s queued on worker %d", request_id, pid, worker.index)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                self.release(worker)  # granted, but the caller is gone: give the slot back
            raise
        finally:
            if self._waiting.pop(request_id, None) is not None:
                worker.queued -= 1  # cancelled or failed while still waiting

    def release(self, worker: Worker) -> None:
        worker.inflight -= 1
        self._dispatch(worker)

    def _dispatch(self, worker: Worker) -> None:
        sched = self._schedulers[worker.index]
        while worker.inflight < self.pool.max_inflight:
            nxt = sched.next(self.clock())
            if nxt is None:
                return
            pid, request_ids = nxt
            for rid in request_ids:  # the whole gang, even past the bound by its size
                waiter = self._waiting.pop(rid, None)
                if waiter is None:
                    continue
                worker.queued -= 1
                if waiter.future.done():  # failed or cancelled, not yet resumed
                    continue
                worker.inflight += 1
                waiter.future.set_result(None)
            if pid.startswith("request:"):
                sched.on_finish(pid)

    def fail_program(self, program_id: str, error: ApiError) -> int:
        """End every waiting request of a program with `error`; returns how many."""
        failed = 0
        for waiter in list(self._waiting.values()):
            if waiter.program_id == program_id and not waiter.future.done():
                waiter.future.set_exception(error)
                failed += 1
        return failed

    def fail_worker(self, worker: Worker, error: ApiError) -> int:
        """End every request waiting for `worker` (it went down) with `error`."""
        failed = 0
        for waiter in list(self._waiting.values()):
            if waiter.worker is worker and not waiter.future.done():
                waiter.future.set_exception(error)
                failed += 1
        return failed
