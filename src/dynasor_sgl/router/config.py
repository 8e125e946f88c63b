"""Router configuration: one frozen dataclass with every default in one place."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dynasor_sgl.policy_config import PolicyConfig

SCHEDULING = ("sjf", "fifo")


@dataclass(frozen=True)
class RouterConfig:
    """How the router runs.

    worker_urls: base URLs of the SGLang workers it fronts (at least one).
    host, port: where it listens; 127.0.0.1 unless you mean to expose it.
    scheduling: "sjf" (approximate shortest-job-first with aging, gang) or "fifo" (baseline).
    max_inflight_per_worker: requests in flight per worker before new ones wait in the
        router's admission queue (so the scheduling order holds under overload).
    worker_priority: pass SGLang's per-request `priority` (workers must run with
        `--enable-priority-scheduling`; `launch` does this).
    health_interval_s: seconds between worker health checks.
    request_timeout_s: longest a forwarded request may take.
    max_body_bytes: larger request bodies are refused with 413.
    api_key: when set, every route requires `Authorization: Bearer <api_key>`.
    max_programs: programs kept in the table (finished ones are evicted first).
    policy_defaults: algorithm -> PolicyConfig overrides applied to every program of that
        algorithm before its own (e.g. calibrated thresholds from `dynasor-sgl calibrate`).
    """

    worker_urls: tuple[str, ...] = field(default_factory=tuple)
    host: str = "127.0.0.1"
    port: int = 30000
    scheduling: str = "sjf"
    max_inflight_per_worker: int = 32
    worker_priority: bool = False
    health_interval_s: float = 2.0
    request_timeout_s: float = 3600.0
    max_body_bytes: int = 8 * 1024 * 1024
    api_key: str | None = None
    max_programs: int = 10_000
    policy_defaults: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.worker_urls:
            raise ValueError("at least one worker URL is required")
        for url in self.worker_urls:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"worker URL must start with http:// or https://, got {url!r}")
        if self.scheduling not in SCHEDULING:
            raise ValueError(f"scheduling must be one of {SCHEDULING}, got {self.scheduling!r}")
        if not 1 <= self.port <= 65535:
            raise ValueError(f"port must be between 1 and 65535, got {self.port}")
        for name in ("max_inflight_per_worker", "max_body_bytes", "max_programs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for algorithm, overrides in self.policy_defaults.items():
            PolicyConfig.for_algorithm(algorithm, **overrides)  # raises ValueError if bad
        for name in ("health_interval_s", "request_timeout_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
