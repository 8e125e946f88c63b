"""One simulated SGLang worker: continuous batching on a virtual clock.

A step prefills up to `prefill_budget` prompt tokens of newly admitted requests (chunked: a
long prompt spans steps) or, with no prefill to do, decodes one token for every running
request; as in SGLang by default, a prefill step runs alone and the running requests wait
it out (with `profile.mixed_chunk` one step does both, as --enable-mixed-chunk). It takes
`profile.step_s(decoding, prefill tokens, admitted)`. A request whose prefill ends in a step
emits its first token there (one with `new_tokens` 0, e.g. a fork's prefix prefill, ends there).
Admission from the waiting queue (in the queue's order) stops at the first request that
does not fit: `max_running` requests at once, and KV: a request reserves its uncached prompt
plus `max_new` tokens of the `kv_tokens` pool until it ends (SGLang's conservative check; the
prefix cache itself is evictable and not charged; a program's prefix is dropped when it ends,
where LRU would drop it first; the CPU worker's 65,536 tokens never fill in the validation
runs, so LRU order never matters there). Prefix sharing: per program, the length of its prompt
already cached here (at least what the cache held before, `warm_len`); a request prefills
only the part of its shared prefix past it, plus its own suffix (at least one token, as
SGLang recomputes the last one, which then does not count as cached). An abort takes effect
at once: the request leaves the batch and its KV is freed.

Between changes of the batch every step is the same, so a run of pure-decode steps up to the
next request end is one event (`wake_at`); a submit or abort cuts it at the step in progress.
The caller owns the event loop: after any call, when `version` changed, it schedules
`on_wake(wake_at)`. A speed schedule (`speed`) replays a real worker whose speed drifted over
a run (`sim.steps.speed_schedule`). Pure: no clock, no I/O.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import logging
from collections.abc import Sequence

from dynasor_sgl.sim.profile import Profile
from dynasor_sgl.sim.queue import Finished, QueueOrder, Request, WaitingQueue

logger = logging.getLogger(__name__)


class Engine:
    """A worker's engine state; not thread-safe (one event loop drives it)."""

    def __init__(
        self,
        profile: Profile,
        order: QueueOrder = QueueOrder.FCFS,
        speed: Sequence[tuple[float, float]] = (),
    ) -> None:
        """speed: (from, factor) on the virtual clock, sorted: from `from` on, every step takes
        `factor` times the profile's (1 before the first); a run of steps keeps the factor it
        started with. Empty: the profile's speed throughout."""
        self.profile = profile
        self._speed_from = [t for t, _ in speed]
        self._speed = [f for _, f in speed]
        self.waiting = WaitingQueue(order, self._cached_of)
        self.prefilling: dict[str, Request] = {}  # admitted, prefill not done
        self.running: dict[str, Request] = {}  # decoding
        self.cache: dict[str, int] = {}  # program id -> prompt tokens cached here
        self.decoded = 0  # decode steps so far (every running request +1 token each)
        self.kv_used = 0
        self._ends: list[tuple[int, int, str]] = []  # (decode count at its end, seq, rid)
        self._seq = itertools.count()
        self.busy = False
        self.version = 0
        self.wake_at = 0.0
        self._start = 0.0
        self._dt = 0.0
        self._steps = 0
        self._batch = 0  # requests decoding in the step in progress
        self._plan: list[tuple[Request, int]] = []  # prefill of the step in progress
        self.busy_s = 0.0  # seconds spent stepping (for utilization)

    def slowdown(self, now: float) -> float:
        """How many times the profile's time a step started at `now` takes."""
        i = bisect.bisect_right(self._speed_from, now) - 1
        return self._speed[i] if i >= 0 else 1.0

    def _cached_of(self, req: Request) -> int:
        return min(req.shared_len, max(self.cache.get(req.program_id, 0), req.warm_len))

    def load(self) -> int:
        return len(self.waiting) + len(self.prefilling) + len(self.running)

    # -- requests -------------------------------------------------------------------------

    def submit(self, req: Request, now: float) -> None:
        req.arrived, req.seq = now, next(self._seq)
        self.waiting.push(req)
        self._interrupt(now)

    def abort(self, rid: str, now: float) -> Finished | None:
        """Ends a request at once (its KV freed); None if it is not here."""
        req = self.waiting.remove(rid)
        if req is not None:
            return Finished(req, now, aborted=True)
        req = self.prefilling.pop(rid, None) or self.running.pop(rid, None)
        if req is None:
            return None
        if req.admitted is not None and req.prefill_left == 0:
            stepping = self.busy and self._dt > 0 and self._batch > 0
            done = int((now - self._start) / self._dt) if stepping else 0
            req.generated = min(
                req.new_tokens, 1 + self.decoded + min(done, self._steps) - req.join
            )
        self.kv_used -= req.kv
        self._plan = [(r, n) for r, n in self._plan if r is not req]
        self._interrupt(now)
        return Finished(req, now, aborted=True)

    def forget_program(self, program_id: str) -> None:
        """Drops a program's cached prefix (it ended; the cache would evict it)."""
        self.cache.pop(program_id, None)

    # -- steps ----------------------------------------------------------------------------

    def _interrupt(self, now: float) -> None:
        """The batch changes at `now`: cut a run of steps at the step in progress, or wake
        an idle engine now."""
        if not self.busy:  # wake at once: requests submitted at this instant go together
            self.busy, self._start, self._steps, self._dt, self._batch = True, now, 0, 0.0, 0
            self._set_wake(now)
            return
        if self._steps > 1:
            done = int((now - self._start) / self._dt)
            steps = min(self._steps, done + 1)
            if steps != self._steps:
                self._steps = steps
                self._set_wake(self._start + steps * self._dt)

    def _set_wake(self, at: float) -> None:
        self.wake_at = at
        self.version += 1

    def on_wake(self, now: float) -> list[Finished]:
        """The step (or run of steps) in progress ended at `now`: apply it, start the next;
        returns the requests that ended."""
        self.busy_s += self._steps * self._dt
        if self._batch:
            self.decoded += self._steps
        finished = self._apply_prefill(now)
        finished += self._pop_ends(now)
        self.busy = False
        self._begin(now)
        return finished

    def _apply_prefill(self, now: float) -> list[Finished]:
        finished = []
        for req, tokens in self._plan:
            req.prefill_left -= tokens
            if req.prefill_left > 0:
                continue
            del self.prefilling[req.rid]
            if req.new_tokens <= 1:
                req.generated = req.new_tokens
                self.kv_used -= req.kv
                finished.append(Finished(req, now))
                continue
            req.generated = 1
            req.join = self.decoded
            self.running[req.rid] = req
            end = req.join + req.new_tokens - 1
            heapq.heappush(self._ends, (end, req.seq, req.rid))
        self._plan = []
        return finished

    def _pop_ends(self, now: float) -> list[Finished]:
        finished = []
        while self._ends and self._ends[0][0] <= self.decoded:
            _, _, rid = heapq.heappop(self._ends)
            req = self.running.pop(rid, None)
            if req is None:
                continue  # aborted earlier
            req.generated = req.new_tokens
            self.kv_used -= req.kv
            finished.append(Finished(req, now))
        return finished

    def _begin(self, now: float) -> None:
        """Plan and start the next step at `now` (or stay idle with nothing to do)."""
        admitted = self._admit(now)
        prefill = self._plan_prefill()
        batch = len(self.running)
        if prefill:
            steps = 1
            if not self.profile.mixed_chunk:
                batch = 0  # a prefill batch alone: the running ones decode after it
        elif batch:
            steps = self._ends_first() - self.decoded
        else:
            return
        self.busy, self._start, self._steps, self._batch = True, now, max(1, steps), batch
        self._dt = self.profile.step_s(batch, prefill, admitted) * self.slowdown(now)
        self._set_wake(now + self._steps * self._dt)

    def _ends_first(self) -> int:
        while self._ends and self._ends[0][2] not in self.running:
            heapq.heappop(self._ends)
        return self._ends[0][0] if self._ends else self.decoded + 1

    def _admit(self, now: float) -> int:
        """Admits waiting requests in the queue's order while they fit; how many."""
        p = self.profile
        admitted = 0
        pending = sum(r.prefill_left for r in self.prefilling.values())
        for req in self.waiting.ordered():
            if len(self.running) + len(self.prefilling) >= p.max_running:
                break
            if pending >= p.prefill_budget:
                break
            cached = self._cached_of(req)
            uncached = req.prompt_len - cached
            need = uncached + req.max_new
            if self.kv_used + need > p.kv_tokens and (self.running or self.prefilling):
                break
            self.waiting.remove(req.rid)
            req.admitted, req.kv = now, need
            req.prefill_left = req.prefilled = max(1, uncached)
            req.cached = max(0, req.prompt_len - req.prefilled)  # a recomputed token is not
            pending += req.prefill_left
            admitted += 1
            self.kv_used += need
            self.prefilling[req.rid] = req
            if req.shared_len > self.cache.get(req.program_id, 0):
                self.cache[req.program_id] = req.shared_len
        return admitted

    def _plan_prefill(self) -> int:
        budget = self.profile.prefill_budget
        total = 0
        for req in self.prefilling.values():
            if total >= budget:
                break
            take = min(req.prefill_left, budget - total)
            self._plan.append((req, take))
            total += take
        return total
