"""The discrete-event loop: callbacks ordered by virtual time (ties in scheduling order)."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from typing import Any


class EventLoop:
    """A virtual clock and the callbacks due on it. `now` only moves forward."""

    def __init__(self) -> None:
        self.now = 0.0
        self.events = 0  # callbacks run so far
        self._heap: list[tuple[float, int, Callable[..., None], tuple[Any, ...]]] = []
        self._seq = itertools.count()

    def at(self, when: float, fn: Callable[..., None], *args: Any) -> None:
        """Run `fn(*args)` at virtual time `when` (now, if `when` is in the past)."""
        heapq.heappush(self._heap, (max(when, self.now), next(self._seq), fn, args))

    def run(self, until: float = float("inf")) -> None:
        """Run callbacks in time order until none is left (or the next is past `until`)."""
        heap = self._heap
        while heap and heap[0][0] <= until:
            when, _, fn, args = heapq.heappop(heap)
            self.now = when
            self.events += 1
            fn(*args)
