"""Engine requests and the engine's own waiting queue under SGLang's schedule policies.

A `Request` is what one /generate costs the engine: a prompt split into the program's shared
prefix (cacheable across its requests) and the request's own suffix, and the tokens it will
generate. The `WaitingQueue` orders requests the engine has not admitted yet as SGLang does:
fcfs (arrival order), lpm (longest cached prefix first; fcfs past `LPM_MAX_QUEUE` waiting, as
SGLang falls back), priority (higher `priority` first, then arrival; workers with
`--enable-priority-scheduling`). Pure.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum

LPM_MAX_QUEUE = 128  # SGLang sorts by prefix match only while the queue is this short


class QueueOrder(StrEnum):
    FCFS = "fcfs"
    LPM = "lpm"
    PRIORITY = "priority"


@dataclass(eq=False)
class Request:
    """One request to an engine. `new_tokens` ≤ `max_new` is what it really generates (EOS);
    admission reserves KV for `max_new`. `warm_len`: tokens of its shared prefix the engine's
    cache held before the simulation began (a prefix every program shares, or the same prompt
    run earlier on that worker). The engine fills in the rest."""

    rid: str
    program_id: str
    shared_len: int
    own_len: int
    new_tokens: int
    max_new: int
    priority: int = 0
    warm_len: int = 0
    seq: int = 0
    arrived: float = 0.0  # when it reached the engine
    admitted: float | None = None  # when its prefill began
    prefill_left: int = 0
    prefilled: int = 0  # prompt tokens the engine computed (not cached)
    cached: int = 0  # prompt tokens found in the prefix cache
    kv: int = 0  # KV tokens reserved for it while admitted
    join: int = 0  # the engine's decode count when it joined the batch
    generated: int = 0

    @property
    def prompt_len(self) -> int:
        return self.shared_len + self.own_len


@dataclass(frozen=True)
class Finished:
    """A request that left the engine at `at`: done, or aborted (with what it had made)."""

    request: Request
    at: float
    aborted: bool = False


class WaitingQueue:
    """Requests waiting for admission, in the queue's order; O(1) removal by rid."""

    def __init__(self, order: QueueOrder, cached: Callable[[Request], int]) -> None:
        self.order = order
        self._cached = cached  # prompt tokens of a request already in the prefix cache
        self._items: dict[str, Request] = {}  # insertion order = arrival order
        self._heap: list[tuple[int, int, str]] = []  # priority: (-priority, seq, rid)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, rid: str) -> bool:
        return rid in self._items

    def push(self, req: Request) -> None:
        self._items[req.rid] = req
        if self.order is QueueOrder.PRIORITY:
            heapq.heappush(self._heap, (-req.priority, req.seq, req.rid))

    def remove(self, rid: str) -> Request | None:
        return self._items.pop(rid, None)  # a priority heap entry goes stale

    def ordered(self) -> Iterator[Request]:
        """Waiting requests in admission order (take them with `remove` while iterating a
        priority queue: stale heap entries are skipped)."""
        if self.order is QueueOrder.PRIORITY:
            yield from self._by_priority()
        elif self.order is QueueOrder.LPM and len(self._items) <= LPM_MAX_QUEUE:
            yield from sorted(self._items.values(), key=lambda r: (-self._cached(r), r.seq))
        else:
            yield from list(self._items.values())

    def _by_priority(self) -> Iterator[Request]:
        while self._heap:
            _, _, rid = self._heap[0]
            req = self._items.get(rid)
            if req is None:
                heapq.heappop(self._heap)
                continue
            yield req
            if self._heap and self._heap[0][2] == rid and rid in self._items:
                return  # the caller did not take it: admission stops here
