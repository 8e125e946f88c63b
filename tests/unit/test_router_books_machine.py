"""The admission queue's books under random events: a hypothesis state machine.

Drives the pure `AdmissionQueue` (two or three workers, up to five joined) through submits
(program and plain), releases, cancels, moves of programs and of plain requests, reservations,
reports, the end of programs, and workers that join and leave (a leaving worker is closed, its
programs and waiting plain requests move to an open worker as the router's drain moves them, and
it is removed once its last request in flight is released), against a model of which request
holds a slot where and which waits. After every step the queue's counts equal the model's, every
grant comes from a waiting request and is released on the worker that granted it, no request
waits on a worker with nothing in flight (nothing would ever dispatch it), a leaving worker
holds no waiting request, program or reservation, and a drained one is gone. Half the runs
keep each worker's limit adaptive, fed every release as a completion with a random latency
and token count on windows of one sample, so limits rise and shrink (below the requests in
flight too) all through the run: above its limit a worker's in-flight count never grows, and
no slot is dropped or leaked.

Examples: 2,000 by default (31 s on one CPU core, 2026-12-07); the environment variable
`DYNASOR_MACHINE_EXAMPLES` sets another count (fewer for a quick run, more for a long hunt).
"""

from __future__ import annotations

import itertools
import os

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from router_harness import restless_limiter

from dynasor_sgl.scheduling import Order, SchedulerConfig
from dynasor_sgl.scheduling.admission import AdmissionQueue, Grant, Slots

PROGRAMS = ("p", "q", "r")
MAX_WORKERS = 5  # joined over a run, the first ones included
EXAMPLES = int(os.environ.get("DYNASOR_MACHINE_EXAMPLES", "2000"))


class AdmissionBooks(RuleBasedStateMachine):
    """The queue against a model: rid -> worker for slots held, rid -> program for waiters."""

    @initialize(
        workers=st.integers(2, 3),
        bound=st.integers(1, 3),
        policy=st.sampled_from(list(Order)),
        adaptive=st.booleans(),
    )
    def start(self, workers: int, bound: int, policy: Order, adaptive: bool) -> None:
        # Every completion is a window: the limit moves at every release.
        limiter = restless_limiter(bound, 5) if adaptive else None
        self.queue = AdmissionQueue(
            [Slots(i) for i in range(workers)], bound, SchedulerConfig(order=policy), limiter
        )
        self.last_inflight: dict[int, int] = {}  # per worker, after the previous step
        self.now = 0.0
        self.ids = itertools.count()
        self.holding: dict[str, int] = {}  # rid -> worker whose slot it holds
        self.waiting: dict[str, str | None] = {}  # rid -> program (None: plain)
        self.ended: set[str] = set()
        self.joined = workers  # indices handed out so far: the next worker gets this one
        self.leaving: set[int] = set()  # closed, with requests still in flight
        self.removed: set[int] = set()

    def _granted(self, grants: list[Grant]) -> None:
        for grant in grants:
            assert grant.request_id in self.waiting, grant
            del self.waiting[grant.request_id]
            self.holding[grant.request_id] = grant.worker

    def _worker(self, data: st.DataObject, but: int | None = None) -> int:
        """An open worker (one that is not leaving), other than `but`."""
        return data.draw(st.sampled_from([i for i in self.queue.open_workers() if i != but]))

    def _release_on(self, worker: int, latency: float | None = None, tokens: int = 0) -> None:
        self.now += 0.001  # a window needs time to pass
        self._granted(self.queue.release(worker, self.now, latency, tokens))
        if worker in self.leaving and self.queue.workers[worker].inflight == 0:
            self._remove(worker)  # drained: as the router forgets it

    @rule(data=st.data(), program=st.sampled_from((None, *PROGRAMS)), tokens=st.integers(1, 64))
    def submit(self, data: st.DataObject, program: str | None, tokens: int) -> None:
        if program in self.ended:
            return
        worker = self._worker(data)
        if program is not None:  # as the router does: the program is scheduled where it goes
            self._granted(self.queue.ensure_program(worker, program, self.now, 8, "sc"))
        rid = f"r{next(self.ids)}"
        priority = self.queue.submit(worker, rid, program, self.now, tokens)
        if priority is None:
            self.waiting[rid] = program
        else:
            assert 0 <= priority <= self.queue.config.max_priority
            self.holding[rid] = worker

    @precondition(lambda self: self.holding)
    @rule(
        data=st.data(),
        latency=st.none() | st.floats(0, 60),
        tokens=st.integers(0, 2000),
    )
    def release(self, data: st.DataObject, latency: float | None, tokens: int) -> None:
        """A request ends: a completion (with its latency and tokens) or a failure (None)."""
        rid = data.draw(st.sampled_from(sorted(self.holding)))
        self._release_on(self.holding.pop(rid), latency, tokens)

    @precondition(lambda self: self.waiting)
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        rid = data.draw(st.sampled_from(sorted(self.waiting)))
        assert self.queue.cancel(rid)
        del self.waiting[rid]

    @rule(data=st.data(), program=st.sampled_from(PROGRAMS))
    def move(self, data: st.DataObject, program: str) -> None:
        if self.queue.home(program) is not None:
            self._granted(self.queue.ensure_program(self._worker(data), program, self.now, 8, "sc"))

    @precondition(lambda self: any(p is None for p in self.waiting.values()))
    @rule(data=st.data())
    def move_plain(self, data: st.DataObject) -> None:
        rid = data.draw(st.sampled_from(sorted(r for r, p in self.waiting.items() if p is None)))
        self._granted(self.queue.move_plain(rid, self._worker(data), self.now))

    @rule(program=st.sampled_from(PROGRAMS), slots=st.integers(0, 4))
    def reserve(self, program: str, slots: int) -> None:
        self._granted(self.queue.reserve(program, slots, self.now))

    @rule(program=st.sampled_from(PROGRAMS), tokens=st.integers(0, 500))
    def report(self, program: str, tokens: int) -> None:
        self.queue.on_report(program, tokens, 1, 4, self.now)

    @rule(program=st.sampled_from(PROGRAMS))
    def end(self, program: str) -> None:
        """The program ends: its waiting requests fail first, then it is forgotten."""
        for rid in self.queue.waiting_of(program_id=program):
            assert self.queue.cancel(rid)
            del self.waiting[rid]
        for _, grants in self.queue.forget_program(program, self.now):
            self._granted(grants)
        self.ended.add(program)

    @precondition(lambda self: self.joined < MAX_WORKERS)
    @rule()
    def join(self) -> None:
        self.queue.add_worker(Slots(self.joined))
        self.joined += 1

    @precondition(lambda self: len(self.queue.open_workers()) > 1)
    @rule(data=st.data())
    def leave(self, data: st.DataObject) -> None:
        """A worker leaves as the router drains it: closed first, then its programs (with
        their history, waiting requests and reservations) and its waiting plain requests move
        to open workers; it is removed now if idle, else at its last release."""
        worker = self._worker(data)
        self.queue.close_worker(worker)
        for program in self.queue.programs_on(worker):
            dst = self._worker(data, but=worker)
            self._granted(self.queue.ensure_program(dst, program, self.now, 0, "sc"))
        for rid in self.queue.waiting_of(worker=worker):
            self._granted(self.queue.move_plain(rid, self._worker(data, but=worker), self.now))
        self.leaving.add(worker)
        if self.queue.workers[worker].inflight == 0:
            self._remove(worker)

    def _remove(self, worker: int) -> None:
        self.queue.remove_worker(worker)
        self.leaving.discard(worker)
        self.removed.add(worker)

    @precondition(lambda self: self.leaving)
    @rule(data=st.data(), program=st.sampled_from((None, *PROGRAMS)))
    def submit_to_leaving(self, data: st.DataObject, program: str | None) -> None:
        """A leaving worker takes no new request or program (the router never sends one)."""
        worker = data.draw(st.sampled_from(sorted(self.leaving)))
        with pytest.raises(ValueError, match="leaving"):
            self.queue.submit(worker, f"r{next(self.ids)}", program, self.now)
        if program is not None:
            with pytest.raises(ValueError, match="leaving"):
                self.queue.ensure_program(worker, program, self.now, 8, "sc")

    @rule(seconds=st.floats(0, 30))
    def advance(self, seconds: float) -> None:
        self.now += seconds

    @invariant()
    def books_balance(self) -> None:
        queue = self.queue
        assert queue.queue_length() == len(self.waiting)
        for index, w in queue.workers.items():
            held = sum(1 for worker in self.holding.values() if worker == index)
            assert w.inflight == held, (w, self.holding)
            assert w.queued == len(queue.waiting_of(worker=index)), w
            assert w.reserved >= 0, w
            # Nothing would ever dispatch a request waiting on a worker with nothing in flight.
            assert not (w.queued and w.inflight == 0), w
            assert queue.limiter.min_limit <= w.limit <= queue.limiter.max_limit, w
            # At or above its limit (it may have shrunk) a worker takes nothing new until
            # enough have ended; below it, a gang may take it past.
            last = self.last_inflight.get(index, 0)
            assert w.inflight <= last or last <= w.limit, (w, last)
            if queue.config.order is Order.FCFS:  # no gangs: the limit holds
                assert w.inflight <= max(w.limit, last), (w, last)
        assert sorted(queue.waiting_of()) == sorted(self.waiting)
        assert set(queue.workers) == set(range(self.joined)) - self.removed
        assert set(queue.open_workers()) == set(queue.workers) - self.leaving
        assert set(self.holding.values()) <= set(queue.workers)  # no slot on a removed one
        for index in self.leaving:
            w = queue.workers[index]
            assert w.inflight > 0, w  # drained workers are removed at once
            assert (w.queued, w.reserved, queue.programs_on(index)) == (0, 0, []), w
        self.last_inflight = {i: w.inflight for i, w in queue.workers.items()}


AdmissionBooks.TestCase.settings = settings(
    max_examples=EXAMPLES, stateful_step_count=40, deadline=None
)
TestAdmissionBooks = AdmissionBooks.TestCase
