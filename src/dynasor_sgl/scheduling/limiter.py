"""The per-worker in-flight limit: fixed, or adapted to what the worker delivers.

Admission lets at most `limit` requests run on a worker at once; past the worker's knee more
concurrent requests only share the same tokens/s, so the backlog should wait in the router,
where the scheduling order holds. A fixed limit is right for one workload on one device; the
adaptive one finds the knee as it serves.

The rule (`InflightLimiter`): a throughput hill-climb over windows of completions, the
"throughput gradient" that adaptive concurrency limiters apply to latency (Netflix
concurrency-limits `GradientLimit`/`Gradient2Limit`, Envoy's adaptive concurrency gradient
controller), with per-request latency replaced by delivered tokens/s because an LLM request's
latency scales with its output length (reference: risk-control-limiters-plas.md §2.7).
Each window lasts at least `window_s` and `min_samples` completions (the clock starts at the
first completion); its throughput is the completion tokens it delivered over its length.
Latency is read per generated token, for the record (`last_window`), not as the signal: a
request's latency scales with its length, and past the knee it grows without more tokens/s,
which is what the throughput rule detects.
- App-limited guard (Netflix: no change while inflight < L/2): a window in which fewer than
  `busy_share` of the completions found the worker at its limit or a request waiting says
  nothing about more concurrency; the limit holds and the comparison starts over.
- A window at an unchanged limit is the baseline; after `hold_windows` of them the limit
  probes one step (`step_fraction` of it, at least 1) in the current direction.
- A step up is kept if it bought tokens/s: gain ≥ `gain` × the relative step (more concurrency
  that buys less than that share of proportional throughput is past the knee); else the limit
  goes back, the direction turns down, and it holds.
- A step down is kept if it cost little: loss ≤ `gain` × the relative step (overload: latency
  had grown without more throughput, so fewer requests deliver the same tokens/s); else it goes
  back, the direction turns up, and it holds.
Kept steps continue in the same direction, so the limit climbs to the knee from below and
walks down to it from above, then probes around it. Until a step is first undone the limit
doubles instead (TCP's slow start), so a GPU worker's knee, hundreds of requests, is reached in
a few windows. Always within [min_limit, max_limit].

With `gain` g, the limit settles where one more request's share of tokens/s falls below g of
the average request's: for a step time base + c·B (the simulator's model) that is
B = (1/g − 1)·base/c, which at the default g = 0.1 is the knee the rest of the project uses
(the smallest batch within 90% of the throughput limit, `sim.scale.router_bound`).

Pure and clock-injected (`now` in seconds, any monotone origin): the router and the simulator
feed it the same completions through `scheduling.admission`. Knows nothing of HTTP or engines.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Literal

logger = logging.getLogger(__name__)

Device = Literal["cpu", "gpu"]


class LimitMode(StrEnum):
    """How a worker's in-flight limit is set (the router's `--inflight-limit`)."""

    ADAPTIVE = "adaptive"
    FIXED = "fixed"


@dataclass(frozen=True)
class LimiterConfig:
    """mode: `LimitMode`; fixed keeps `initial` for good.
    initial: the limit a worker starts at (the fixed bound under fixed), in [min, max].
    min_limit / max_limit: the adaptive limit stays within these (>= 1).
    window_s: shortest measurement window, seconds (> 0).
    min_samples: completions a window needs before it counts (>= 1).
    step_fraction: a probe moves the limit by this fraction of it, at least 1, in (0, 1].
    gain: a step is worth it when throughput moves by at least this share of the step's
      proportional change, in (0, 1).
    hold_windows: baseline windows between probes (>= 0).
    busy_share: share of a window's completions that must find the worker at its limit or
      with requests waiting for the window to count, in [0, 1].

    `for_device` gives the defaults that suit a device: the CPU worker's measured knee (12,
    bench/worker_speed.py) with 10 s windows (a request takes seconds there); a GPU worker's
    batch runs hundreds of requests (the A100 profile's knee is 284): it starts at 128, with
    1 s windows (in the simulator, 64 and 2 s windows reached the knee too late in a run of a
    few minutes: 1.88x sglang at 16 workers where the knee gives 2.14x; 128 and 1 s: 2.14x)."""

    mode: LimitMode = LimitMode.ADAPTIVE
    initial: int = 12
    min_limit: int = 4
    max_limit: int = 64
    window_s: float = 10.0
    min_samples: int = 8
    step_fraction: float = 0.25
    gain: float = 0.1
    hold_windows: int = 2
    busy_share: float = 0.5

    def __post_init__(self) -> None:
        if self.mode not in tuple(LimitMode):
            raise ValueError(f"mode must be one of {', '.join(LimitMode)}, got {self.mode!r}")
        object.__setattr__(self, "mode", LimitMode(self.mode))
        if not isinstance(self.min_limit, int) or self.min_limit < 1:
            raise ValueError(f"min_limit must be an integer >= 1, got {self.min_limit!r}")
        if not isinstance(self.max_limit, int) or self.max_limit < self.min_limit:
            raise ValueError(f"max_limit must be an integer >= min_limit, got {self.max_limit!r}")
        within = self.min_limit <= self.initial <= self.max_limit
        if not isinstance(self.initial, int) or not within:
            raise ValueError(
                f"initial must be an integer in [{self.min_limit}, {self.max_limit}], "
                f"got {self.initial!r}"
            )
        if not (math.isfinite(self.window_s) and self.window_s > 0):
            raise ValueError(f"window_s must be a finite number > 0, got {self.window_s!r}")
        if self.min_samples < 1 or self.hold_windows < 0:
            raise ValueError(
                f"min_samples must be >= 1 and hold_windows >= 0, got {self.min_samples!r}, "
                f"{self.hold_windows!r}"
            )
        if not 0 < self.step_fraction <= 1:
            raise ValueError(f"step_fraction must be in (0, 1], got {self.step_fraction!r}")
        if not 0 < self.gain < 1:
            raise ValueError(f"gain must be in (0, 1), got {self.gain!r}")
        if not 0 <= self.busy_share <= 1:
            raise ValueError(f"busy_share must be in [0, 1], got {self.busy_share!r}")

    @classmethod
    def fixed(cls, bound: int) -> LimiterConfig:
        """A limit that stays at `bound` (>= 1)."""
        if not isinstance(bound, int) or bound < 1:
            raise ValueError(f"bound must be an integer >= 1, got {bound!r}")
        return cls(LimitMode.FIXED, initial=bound, min_limit=bound, max_limit=bound)

    @classmethod
    def for_device(
        cls, device: Device, mode: LimitMode | str = LimitMode.ADAPTIVE, **overrides: Any
    ) -> LimiterConfig:
        """The defaults that suit `device` ("cpu" or "gpu"), with `overrides` on top; under
        fixed the limit stays at `initial`."""
        if device not in DEVICE_DEFAULTS:
            raise ValueError(f"device must be one of {', '.join(DEVICE_DEFAULTS)}, got {device!r}")
        config = replace(DEVICE_DEFAULTS[device], **overrides)
        if LimitMode(mode) is LimitMode.FIXED:
            return cls.fixed(config.initial)
        return config


DEVICE_DEFAULTS: dict[str, LimiterConfig] = {
    "cpu": LimiterConfig(),
    "gpu": LimiterConfig(initial=128, min_limit=8, max_limit=1024, window_s=1.0, min_samples=8),
}


@dataclass
class _Window:
    start: float | None  # None: it starts at the next completion
    tokens: int = 0
    samples: int = 0
    busy: int = 0
    seconds_per_token: float = 0.0  # summed over the window's completions


@dataclass
class InflightLimiter:
    """One worker's limit. Not thread-safe; the caller serializes."""

    config: LimiterConfig
    limit: int = field(init=False)
    # The last window's tokens/s and mean seconds per generated token (the rule reads the
    # first; the second, for logs, shows latency growing without throughput past the knee).
    last_window: tuple[float, float] | None = field(init=False, default=None)
    _window: _Window = field(init=False)
    _base: tuple[int, float] | None = field(init=False, default=None)  # (limit, tokens/s)
    _direction: int = field(init=False, default=1)
    _hold: int = field(init=False, default=0)
    _slow_start: bool = field(init=False, default=True)  # doubling until a step is undone

    def __post_init__(self) -> None:
        self.limit = self.config.initial
        self._window = _Window(None)

    def on_complete(
        self, now: float, latency_s: float, tokens: int, inflight: int, queued: int
    ) -> int:
        """A request ended at `now` after `latency_s` with `tokens` generated; `inflight` and
        `queued` are the worker's counts just before it ended. Returns the limit."""
        if self.config.mode is LimitMode.FIXED:
            return self.limit
        w = self._window
        if w.start is None:  # the first completion only starts the clock
            w.start = now
            return self.limit
        w.tokens += max(0, tokens)
        w.samples += 1
        w.busy += int(inflight >= self.limit or queued > 0)
        w.seconds_per_token += max(0.0, latency_s) / max(1, tokens)
        elapsed = now - w.start
        if elapsed >= self.config.window_s and w.samples >= self.config.min_samples:
            self.last_window = (w.tokens / elapsed, w.seconds_per_token / w.samples)
            self._decide(self.last_window[0], w.busy >= self.config.busy_share * w.samples)
            self._window = _Window(now)
        return self.limit

    def _decide(self, throughput: float, busy: bool) -> None:
        cfg = self.config
        if not busy:  # app-limited: the limit was not what held the worker back
            self._base = None
            return
        base = self._base
        if base is None or base[0] == self.limit:
            self._base = (self.limit, throughput)
            if self._hold > 0:
                self._hold -= 1
            else:
                self._step(self._direction)
            return
        step = self.limit / base[0] - 1  # > 0 up, < 0 down
        change = throughput / base[1] - 1 if base[1] > 0 else math.inf
        kept = change >= cfg.gain * step if step > 0 else -change <= cfg.gain * -step
        if kept:
            self._base = (self.limit, throughput)
            self._step(1 if step > 0 else -1)
            return
        logger.debug(
            "limit %d -> %d: tokens/s %.1f vs %.1f, %s s a token",
            self.limit,
            base[0],
            throughput,
            base[1],
            self.last_window and round(self.last_window[1], 4),
        )
        self.limit, self._base = base[0], None
        self._direction = -1 if step > 0 else 1
        self._hold = cfg.hold_windows
        self._slow_start = False

    def _step(self, direction: int) -> None:
        cfg = self.config
        fraction = 1.0 if self._slow_start and direction > 0 else cfg.step_fraction
        delta = max(1, round(self.limit * fraction))
        new = min(cfg.max_limit, max(cfg.min_limit, self.limit + direction * delta))
        if new == self.limit:  # at a bound: probe the other way next time
            self._direction = -direction
            return
        self.limit = new
