"""The router's side of admission: waiting requests as futures around the pure queue.

`dynasor_sgl.scheduling.admission.AdmissionQueue` decides (per-worker bound, the scheduler's order,
gangs, priorities, reservations); this module turns its grants into resumed coroutines and its
failures into errors for the waiting callers. Used from the router's event loop only.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable

from dynasor_sgl.router.errors import ApiError, unavailable
from dynasor_sgl.router.pool import Worker, WorkerPool
from dynasor_sgl.scheduling import SchedulerConfig
from dynasor_sgl.scheduling.admission import AdmissionQueue, Grant
from dynasor_sgl.scheduling.limiter import LimiterConfig

logger = logging.getLogger(__name__)


class Admission:
    """Gates requests per worker; thread-unsafe, used from the router's event loop only."""

    def __init__(
        self,
        pool: WorkerPool,
        config: SchedulerConfig,
        clock: Callable[[], float] = time.monotonic,
        limiter: LimiterConfig | None = None,
    ) -> None:
        """limiter: how each worker's in-flight limit is kept (None: fixed at the pool's
        max_inflight)."""
        self.pool = pool
        self.config = config
        self.clock = clock
        workers = [w.slots for w in pool.workers]
        self.queue = AdmissionQueue(workers, pool.max_inflight, config, limiter)
        self._futures: dict[str, asyncio.Future[Grant]] = {}

    def queue_length(self) -> int:
        return self.queue.queue_length()

    def ensure_program(
        self,
        worker: Worker,
        program_id: str,
        remaining_units: int,
        algorithm: str = "sc",
        deadline_at: float | None = None,
    ) -> None:
        """Schedules a program on `worker` (moving it, with its waiting requests, if it was
        scheduled elsewhere)."""
        grants = self.queue.ensure_program(
            worker.index, program_id, self.clock(), remaining_units, algorithm, deadline_at
        )
        self._resume(grants)

    def priority(self, worker: Worker, program_id: str) -> int | None:
        return self.queue.priority(worker.index, program_id, self.clock())

    def forget_program(self, program_id: str) -> None:
        for _, grants in self.queue.forget_program(program_id, self.clock()):
            self._resume(grants)

    def on_report(self, program_id: str, tokens: int, units: int, remaining_units: int) -> None:
        self.queue.on_report(program_id, tokens, units, remaining_units, self.clock())

    def predicted_time(self, program_id: str, units: int | None = None) -> float | None:
        return self.queue.predicted_time(program_id, units)

    def slack(self, worker: Worker) -> int:
        return self.queue.slack(worker.index)

    def reserve(self, program_id: str, slots: int) -> None:
        """Holds `slots` for the program's granted expansion (replacing what it held)."""
        self._resume(self.queue.reserve(program_id, slots, self.clock()))

    async def acquire(
        self, worker: Worker, request_id: str, program_id: str | None, max_new_tokens: int = 128
    ) -> tuple[Worker, int]:
        """Waits for a slot on `worker`; returns the worker whose slot it got and the SGLang
        priority to send. That is `worker` unless the program moved while the request waited:
        then the slot, and so the request and its release, are on the program's new worker.
        Raises ApiError if the wait is ended by an abort or a worker failure."""
        priority = self.queue.submit(
            worker.index, request_id, program_id, self.clock(), max_new_tokens
        )
        if priority is not None:
            return worker, priority
        fut: asyncio.Future[Grant] = asyncio.get_running_loop().create_future()
        self._futures[request_id] = fut
        try:
            grant = await fut
            return self.pool.workers[grant.worker], grant.priority
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                # granted, but the caller is gone: give the slot back where it was taken
                self.release(self.pool.workers[fut.result().worker])
            else:
                self.queue.cancel(request_id)
            raise
        finally:
            self._futures.pop(request_id, None)

    def release(
        self,
        worker: Worker,
        granted_at: float | None = None,
        tokens: int = 0,
        program_id: str | None = None,
    ) -> None:
        """A request on `worker` ended. With `granted_at` (the clock when its slot was granted)
        it completed with `tokens` generated: the worker's limiter and the program's attained
        service learn from it."""
        now = self.clock()
        latency = None if granted_at is None else max(0.0, now - granted_at)
        self._resume(self.queue.release(worker.index, now, latency, tokens, program_id))
        self._forget_if_drained(worker)

    def _resume(self, grants: Iterable[Grant]) -> None:
        for grant in grants:
            fut = self._futures.get(grant.request_id)
            if fut is None or fut.done():  # its caller is gone: hand the slot on
                self.release(self.pool.workers[grant.worker])
                continue
            fut.set_result(grant)

    # -- workers that join and leave ---------------------------------------------------------

    def add_worker(self, url: str) -> Worker:
        """A worker joins the pool and the queue (down until its health check passes).
        Raises ValueError if its URL is in the pool already."""
        worker = self.pool.add(url)
        self.queue.add_worker(worker.slots)
        return worker

    def drain(self, worker: Worker) -> int:
        """`worker` leaves: it takes no new request; its programs move, with their history,
        waiting requests and reservations, to the worker the pool pins each to now (one that
        is down if none is up: the next request re-pins it), its waiting plain requests to the
        least loaded; its requests in flight finish there, and the last one's release forgets
        it. Waiting requests fail with 503 only when no worker is up (the route refuses a
        removal that would do that). Returns how many failed."""
        now = self.clock()
        pinned = self.pool.start_drain(worker)
        self.queue.close_worker(worker.index)
        others = [w for w in self.pool.live() if w is not worker]
        stranded: list[str] = []
        for pid in sorted(set(pinned) | set(self.queue.programs_on(worker.index))):
            if self.queue.home(pid) != worker.index:
                continue  # pinned only: the next request pins it anew
            target = self.pool.worker_for(pid) or (others[0] if others else None)
            if target is None:
                stranded += self.queue.waiting_of(program_id=pid)
                continue
            logger.info("program %s leaves worker %d for %d", pid, worker.index, target.index)
            self._resume(self.queue.ensure_program(target.index, pid, now, 0, "sc"))
            if self.queue.waiting_of(program_id=pid, worker=target.index) and not target.healthy:
                stranded += self.queue.waiting_of(program_id=pid)
        for rid in self.queue.waiting_of(worker=worker.index):
            target = self.pool.least_loaded()
            if target is None:
                stranded.append(rid)
                continue
            self._resume(self.queue.move_plain(rid, target.index, now))
        failed = self._fail(stranded, unavailable(f"worker {worker.index} left, none is up"))
        self._forget_if_drained(worker)
        return failed

    def _forget_if_drained(self, worker: Worker) -> None:
        if worker.draining and worker.inflight == 0 and worker.index in self.pool.workers:
            self.queue.remove_worker(worker.index)
            self.pool.forget(worker)

    def _fail(self, request_ids: list[str], error: ApiError) -> int:
        failed = 0
        for rid in request_ids:
            self.queue.cancel(rid)
            fut = self._futures.get(rid)
            if fut is not None and not fut.done():
                fut.set_exception(error)
                failed += 1
        return failed

    def fail_program(self, program_id: str, error: ApiError) -> int:
        """Ends every waiting request of a program with `error`; returns how many."""
        return self._fail(self.queue.waiting_of(program_id=program_id), error)

    def evacuate(self, worker: Worker, error: ApiError) -> int:
        """Moves every request waiting for `worker` (it went down) to a healthy worker: a
        program's, with its history, to the worker the pool pins the program to now; a plain
        one to the least loaded. Ends them with `error` only when no worker is up; returns
        how many it ended. The pool must already count `worker` down."""
        now = self.clock()
        stranded: list[str] = []
        for pid in self.queue.programs_waiting(worker.index):
            target = self.pool.worker_for(pid)
            if target is None or target is worker:
                stranded += self.queue.waiting_of(program_id=pid)
                continue
            logger.info("program %s leaves worker %d, which is down", pid, worker.index)
            self._resume(self.queue.ensure_program(target.index, pid, now, 0, "sc"))
        for rid in self.queue.waiting_of(worker=worker.index):
            target = self.pool.least_loaded()
            if target is None or target is worker or rid in stranded:
                stranded.append(rid)
                continue
            self._resume(self.queue.move_plain(rid, target.index, now))
        return self._fail(stranded, error)

    def fail_worker(self, worker: Worker, error: ApiError) -> int:
        """Ends every request waiting for `worker` (it went down) with `error`."""
        return self._fail(self.queue.waiting_of(worker=worker.index), error)
