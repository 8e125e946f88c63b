"""Router configuration: one frozen dataclass with every default in one place."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from dynasor_sgl.policy import risk
from dynasor_sgl.policy.config import PolicyConfig
from dynasor_sgl.replay.selfcal_key import BookSettings
from dynasor_sgl.router.effort import check_effort
from dynasor_sgl.scheduling import Order, SchedulerConfig
from dynasor_sgl.scheduling.limiter import LimiterConfig, LimitMode

SCHEDULING = tuple(str(p) for p in Order)
# "auto": the device decides. `launch` knows its workers' device and gives a GPU worker the
# adaptive limit (LimiterConfig.for_device("gpu")); a router started alone cannot know it and
# keeps the fixed bound, which is what the CPU worker measured best (docs/router.md).
AUTO = "auto"
INFLIGHT_LIMITS = (AUTO, *(str(m) for m in LimitMode))
# Chosen as the knee of the CPU worker's throughput, but measured through a router bound at
# 12 (so it measured the bound); the worker alone reaches 90% of its best tokens/s at 48 and
# 61% at 12 (bench/worker_speed.py, 2026-11-30). Kept: below the knee the backlog waits in the
# router, where the scheduling order holds; see the README.
MEASURED_KNEE = 12


@dataclass(frozen=True)
class RouterConfig:
    """How the router runs.

    worker_urls: base URLs of the SGLang workers it fronts: at least one to run a router;
        empty in settings whose workers are not known yet (`LaunchConfig.router_config`).
    host, port: where it listens; 127.0.0.1 unless you mean to expose it.
    scheduling: the order of waiting work (`dynasor_sgl.scheduling.Order`):
        "deadline" (least slack first, gang; the default), "sjf" (approximate
        shortest-job-first with aging, gang; the paper's), "plas" (program-level least
        attained service, gang: Autellix's), "fifo" (programs in arrival order, gang) or
        "fcfs" (requests in arrival order).
    inflight_limit: how each worker's in-flight limit is kept
        (`dynasor_sgl.scheduling.limiter`): "adaptive" (it moves towards the worker's
        throughput knee as completions show what more concurrency buys), "fixed" (it stays
        at max_inflight_per_worker) or "auto" (the default: `launch` on a CUDA device makes it
        adaptive from the GPU's defaults, start 128, at most 1024; otherwise fixed).
    max_inflight_per_worker: requests in flight per worker before new ones wait in the
        router's admission queue, where the scheduling order holds: the fixed limit, or where
        the adaptive one starts. The default (12) is the CPU worker's (below its throughput
        knee, 48; 12 makes 61% of its best tokens/s); a GPU worker saturates much later
        (start it at 128 with `inflight_limit_max` 1024: `LimiterConfig.for_device("gpu")`).
    inflight_limit_min, inflight_limit_max: the adaptive limit stays within these (widened
        to include max_inflight_per_worker).
    aging_rate: tokens of predicted work forgiven per second a program waits (sjf).
    starvation_bound_s: no ready program waits longer than this (plus one dispatch per
        program ahead of it): predicted work is clamped to aging_rate × this.
    deadline_stop: stop a program (exit reason "deadline") when its next grant cannot end
        by its deadline, with its current best answer (on by default; only programs that
        were given a deadline are affected).
    program_ttl_s: a running program with nothing in flight and no request or report for
        this long is ended as "abandoned" (its client went away).
    worker_priority: pass SGLang's per-request `priority` (workers must run with
        `--enable-priority-scheduling`; `launch` does this).
    health_interval_s: seconds between worker health checks.
    request_timeout_s: longest a forwarded request may take.
    max_body_bytes: larger request bodies are refused with 413.
    api_key: when set, every route requires `Authorization: Bearer <api_key>`.
    max_programs: programs kept in the table (finished ones are evicted first).
    default_effort: the early exit of OpenAI chat requests that ask for none (a
        `reasoning_effort` name of `dynasor_sgl.router.effort.EFFORTS`); None: off.
    policy_defaults: algorithm -> PolicyConfig overrides applied to every program of that
        algorithm before its own (e.g. calibrated thresholds from `dynasor-sgl calibrate`).
    explore: the share of self-calibrating programs (self-consistency without a stop rule of
        the client's) run to their cap to learn the stop rule from, in [0, 1]; 0 = off.
    calibration_file: where the learned calibration is kept across restarts (loaded at start
        when it exists, rewritten atomically on every change); None: in memory only.
    calibration_epsilon, calibration_delta: the bound self-calibration fits to: the rate of
        answers that differ from the full budget's at most ε, with confidence 1 − δ.
    """

    worker_urls: tuple[str, ...] = field(default_factory=tuple)
    host: str = "127.0.0.1"
    port: int = 30000
    # The default is what the online benchmark measured best (README): least slack first with
    # the deadline stop. Programs without a deadline are due after the starvation bound, so
    # among them the order is by readiness; `sjf` (the paper's order) is one option away.
    scheduling: str = "deadline"
    inflight_limit: str = AUTO
    max_inflight_per_worker: int = MEASURED_KNEE
    inflight_limit_min: int = LimiterConfig.min_limit
    inflight_limit_max: int = LimiterConfig.max_limit
    aging_rate: float = SchedulerConfig.aging_rate
    starvation_bound_s: float = SchedulerConfig.starvation_bound_s
    deadline_stop: bool = True
    program_ttl_s: float = 600.0
    worker_priority: bool = False
    health_interval_s: float = 2.0
    request_timeout_s: float = 3600.0
    max_body_bytes: int = 8 * 1024 * 1024
    api_key: str | None = None
    max_programs: int = 10_000
    default_effort: str | None = None
    policy_defaults: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    explore: float = BookSettings.explore
    calibration_file: str | None = None
    calibration_epsilon: float = risk.DEFAULT_EPSILON
    calibration_delta: float = risk.DEFAULT_DELTA

    def __post_init__(self) -> None:
        for url in self.worker_urls:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"worker URL must start with http:// or https://, got {url!r}")
        if self.scheduling not in SCHEDULING:
            raise ValueError(f"scheduling must be one of {SCHEDULING}, got {self.scheduling!r}")
        if not 1 <= self.port <= 65535:
            raise ValueError(f"port must be between 1 and 65535, got {self.port}")
        for name in (
            "max_inflight_per_worker",
            "inflight_limit_min",
            "max_body_bytes",
            "max_programs",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.inflight_limit not in INFLIGHT_LIMITS:
            raise ValueError(
                f"inflight_limit must be one of {INFLIGHT_LIMITS}, got {self.inflight_limit!r}"
            )
        if self.inflight_limit_max < self.inflight_limit_min:
            raise ValueError(
                f"inflight_limit_max must be >= inflight_limit_min ({self.inflight_limit_min}), "
                f"got {self.inflight_limit_max}"
            )
        for algorithm, overrides in self.policy_defaults.items():
            PolicyConfig.for_algorithm(algorithm, **overrides)  # raises ValueError if bad
        if self.default_effort is not None:
            check_effort(self.default_effort)
        self.scheduler()  # raises ValueError naming a bad scheduling setting
        if not 0.0 <= self.explore <= 1.0 or math.isnan(self.explore):
            raise ValueError(f"explore must be in [0, 1], got {self.explore!r}")
        for name in ("calibration_epsilon", "calibration_delta"):
            value = getattr(self, name)
            if not 0.0 < value < 1.0 or math.isnan(value):
                raise ValueError(f"{name} must be in (0, 1), got {value!r}")
        if self.calibration_file is not None and not self.calibration_file:
            raise ValueError("calibration_file must not be empty")
        for name in ("health_interval_s", "request_timeout_s", "program_ttl_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")

    def for_device(self, device: str | None) -> RouterConfig:
        """These settings for workers on `device` (a resolved one: "cpu" or "cuda"; None: not
        known, as for a router started alone): an "auto" in-flight limit becomes adaptive from
        the GPU's defaults on CUDA, fixed otherwise. The one place "auto" is resolved."""
        if self.inflight_limit != AUTO:
            return self
        if device != "cuda":
            return replace(self, inflight_limit=str(LimitMode.FIXED))
        gpu = LimiterConfig.for_device("gpu")
        return replace(
            self,
            inflight_limit=str(LimitMode.ADAPTIVE),
            max_inflight_per_worker=gpu.initial,
            inflight_limit_min=gpu.min_limit,
            inflight_limit_max=gpu.max_limit,
        )

    def limiter(self) -> LimiterConfig:
        """How each worker's in-flight limit is kept; a still "auto" limit is resolved by
        `for_device` with the device not known (`launch` resolves it before the router)."""
        resolved = self.for_device(None)
        start = resolved.max_inflight_per_worker
        if resolved.inflight_limit == LimitMode.FIXED:
            return LimiterConfig.fixed(start)
        return LimiterConfig(
            initial=start,
            min_limit=min(resolved.inflight_limit_min, start),
            max_limit=max(resolved.inflight_limit_max, start),
        )

    def scheduler(self) -> SchedulerConfig:
        """The scheduler settings this router runs with."""
        return SchedulerConfig(
            order=Order(self.scheduling),
            aging_rate=self.aging_rate,
            starvation_bound_s=self.starvation_bound_s,
        )

    def calibration_settings(self) -> BookSettings:
        """The settings of this router's self-calibration book."""
        return BookSettings(self.explore, self.calibration_epsilon, self.calibration_delta)
