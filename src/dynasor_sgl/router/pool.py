"""The workers behind the router: health, load, and which program runs where.

Owns each worker's up/down state (periodic `/health` checks; a failed request marks it down at
once), its in-flight count, the program → worker pinning (prefix locality; spill to another
worker only under overload), and which workers there are: workers join (`add`) and leave
(`start_drain`, then `forget` once nothing runs there) while the router runs. It does not
order requests (that is `admission`) or send them (that is `forward`).

A worker's index is its id for its whole life and is never given to another worker, even after
it leaves: logs, metrics labels and in-flight entries name workers by index, and a reused index
would make two workers one series.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import aiohttp

from dynasor_sgl.scheduling.admission import Slots

logger = logging.getLogger(__name__)

HEALTH_TIMEOUT_S = 10.0
MISSED_CHECKS_DOWN = 3


@dataclass
class Worker:
    index: int
    url: str
    healthy: bool = False
    failures: int = 0
    missed_checks: int = 0
    last_check: float = 0.0
    draining: bool = False  # leaving: takes no new request; forgotten once idle
    programs: set[str] = field(default_factory=set)
    slots: Slots = field(init=False)  # occupancy, kept by admission

    def __post_init__(self) -> None:
        self.slots = Slots(self.index)

    @property
    def inflight(self) -> int:
        return self.slots.inflight

    @inflight.setter
    def inflight(self, value: int) -> None:
        self.slots.inflight = value

    @property
    def queued(self) -> int:
        return self.slots.queued

    @queued.setter
    def queued(self, value: int) -> None:
        self.slots.queued = value

    @property
    def load(self) -> int:
        return self.slots.inflight + self.slots.queued


class Workers:
    """The pool's workers by their stable index: iterating yields the workers (in index
    order), `workers[i]` is the worker with index i (a KeyError once it has left)."""

    def __init__(self) -> None:
        self._by_index: dict[int, Worker] = {}

    def __iter__(self) -> Iterator[Worker]:
        return iter(list(self._by_index.values()))  # a copy: workers may leave meanwhile

    def __len__(self) -> int:
        return len(self._by_index)

    def __getitem__(self, index: int) -> Worker:
        return self._by_index[index]

    def get(self, index: int) -> Worker | None:
        return self._by_index.get(index)

    def __contains__(self, index: object) -> bool:
        return index in self._by_index

    def add(self, worker: Worker) -> None:
        self._by_index[worker.index] = worker

    def remove(self, index: int) -> None:
        del self._by_index[index]


class WorkerPool:
    """The set of workers, their health, and program pinning."""

    def __init__(self, urls: tuple[str, ...], max_inflight: int) -> None:
        self.workers = Workers()
        self.max_inflight = max_inflight
        self._pins: dict[str, int] = {}
        self._next_index = 0
        for url in urls:
            self.add(url)

    def add(self, url: str) -> Worker:
        """A new worker at `url` (down until a health check passes), under a fresh index.
        Raises ValueError if a worker with that URL is already in the pool."""
        url = url.rstrip("/")
        if self.find(url) is not None:
            raise ValueError(f"worker {url} is already in the pool")
        worker = Worker(self._next_index, url)
        self._next_index += 1
        self.workers.add(worker)
        return worker

    def find(self, url: str) -> Worker | None:
        url = url.rstrip("/")
        return next((w for w in self.workers if w.url == url), None)

    def live(self) -> list[Worker]:
        """The workers that are not leaving (up or down)."""
        return [w for w in self.workers if not w.draining]

    def start_drain(self, worker: Worker) -> list[str]:
        """Takes `worker` out of rotation: it gets no new request and no program stays pinned
        to it. Returns the programs that were pinned to it (the caller moves them)."""
        if not worker.draining:
            logger.info("worker %d (%s) is leaving: draining", worker.index, worker.url)
        worker.draining = True
        moved = sorted(worker.programs)
        for pid in moved:
            self.unpin(pid)
        return moved

    def forget(self, worker: Worker) -> None:
        """Removes a drained worker (nothing in flight or waiting) for good."""
        assert worker.draining and worker.inflight == 0 and worker.queued == 0, worker
        for pid in list(worker.programs):
            self.unpin(pid)
        self.workers.remove(worker.index)
        logger.info("worker %d (%s) left the pool", worker.index, worker.url)

    def healthy(self) -> list[Worker]:
        """The workers that are up, leaving ones included (an abort must reach them)."""
        return [w for w in self.workers if w.healthy]

    def available(self) -> list[Worker]:
        """The workers new requests may go to: up and not leaving."""
        return [w for w in self.workers if w.healthy and not w.draining]

    def least_loaded(self) -> Worker | None:
        up = self.available()
        # Ties go to the worker with fewer pinned programs, so programs spread out.
        return min(up, key=lambda w: (w.load, len(w.programs), w.index)) if up else None

    def worker_for(self, program_id: str | None) -> Worker | None:
        """The worker a request should go to (pinning a new program), or None if none is up."""
        if program_id is None:
            return self.least_loaded()
        idx = self._pins.get(program_id)
        current = None if idx is None else self.workers[idx]
        usable = current is not None and current.healthy and not current.draining
        if current is not None and usable and not self._overloaded(current):
            return current
        target = self.least_loaded()
        if target is None:
            return None
        if current is not None and usable and target.load >= current.load:
            return current  # nowhere better to spill to
        if current is not None:
            logger.info(
                "program %s moves from worker %d to worker %d",
                program_id,
                current.index,
                target.index,
            )
            current.programs.discard(program_id)
        self._pins[program_id] = target.index
        target.programs.add(program_id)
        return target

    def pinned(self, program_id: str) -> Worker | None:
        idx = self._pins.get(program_id)
        return None if idx is None else self.workers[idx]

    def unpin(self, program_id: str) -> None:
        idx = self._pins.pop(program_id, None)
        if idx is not None:
            self.workers[idx].programs.discard(program_id)

    def _overloaded(self, w: Worker) -> bool:
        """Full and with a queue while another healthy worker has room to spare (half its
        limit free)."""
        if w.inflight < self._limit(w) or w.queued == 0:
            return False
        return any(o.load < max(1, self._limit(o) // 2) for o in self.available() if o is not w)

    def _limit(self, w: Worker) -> int:
        """The worker's in-flight limit as admission keeps it (else the pool's own)."""
        return w.slots.limit or self.max_inflight

    def mark_down(self, worker: Worker, reason: str) -> None:
        if worker.healthy:
            logger.warning("worker %d (%s) marked down: %s", worker.index, worker.url, reason)
        worker.healthy = False
        worker.failures += 1

    def mark_up(self, worker: Worker) -> None:
        if not worker.healthy:
            logger.info("worker %d (%s) is healthy", worker.index, worker.url)
        worker.healthy = True

    async def check(self, session: aiohttp.ClientSession, worker: Worker) -> bool:
        """One /health probe. Refused connections and error statuses mark the worker down at
        once; a probe that merely times out (a busy CPU worker answers slowly) counts only
        after MISSED_CHECKS_DOWN in a row."""
        try:
            timeout = aiohttp.ClientTimeout(total=HEALTH_TIMEOUT_S)
            async with session.get(f"{worker.url}/health", timeout=timeout) as resp:
                ok, reason = resp.status == 200, f"/health answered {resp.status}"
        except TimeoutError:
            worker.missed_checks += 1
            if worker.missed_checks >= MISSED_CHECKS_DOWN:
                self.mark_down(worker, f"{worker.missed_checks} health checks timed out")
            return worker.healthy
        except aiohttp.ClientError as exc:
            ok, reason = False, f"{type(exc).__name__}: {exc}"
        worker.missed_checks = 0
        worker.last_check = time.monotonic()
        if ok:
            self.mark_up(worker)
        else:
            self.mark_down(worker, reason)
        return ok

    async def check_all(self, session: aiohttp.ClientSession) -> None:
        await asyncio.gather(*(self.check(session, w) for w in self.workers))
