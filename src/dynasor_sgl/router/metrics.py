"""Prometheus metrics of the router (one registry per router instance)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from dynasor_sgl.answers import equivalence as answers
from dynasor_sgl.protocol import UNITS_KEYS
from dynasor_sgl.router.table import Program

disable_created_metrics()  # the *_created series only clutter a scrape


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter(
            "dynasor_requests",
            "Requests answered by the router",
            ["endpoint", "status"],
            registry=r,
        )
        self.programs_registered = Counter(
            "dynasor_programs_registered", "Programs registered", registry=r
        )
        self.programs_active = Gauge("dynasor_programs_active", "Programs running", registry=r)
        self.programs_ended = Counter(
            "dynasor_programs_ended",
            "Programs stopped or finished, by exit reason",
            ["exit_reason"],
            registry=r,
        )
        self.programs_abandoned = Counter(
            "dynasor_programs_abandoned",
            "Programs ended idle past the TTL (client gone)",
            registry=r,
        )
        self.health_errors = Counter(
            "dynasor_health_check_errors",
            "Health-check rounds that failed unexpectedly",
            registry=r,
        )
        self.undecided = Gauge(
            "dynasor_equivalence_undecided",
            "Answer comparisons math-verify could not decide (timeouts); compared as text instead",
            registry=r,
        )
        self.undecided.set_function(answers.undecided)
        self.tokens = Counter(
            "dynasor_tokens",
            "Tokens of requests through the router (native and OpenAI), by kind",
            ["kind"],
            registry=r,
        )
        self.tokens_saved = Counter(
            "dynasor_tokens_saved",
            "Estimated tokens not generated thanks to early exit",
            registry=r,
        )
        self.aborts = Counter(
            "dynasor_aborts", "Requests aborted in the workers, by cause", ["cause"], registry=r
        )
        self.branches_trimmed = Counter(
            "dynasor_branches_trimmed",
            "Branches the router cut short mid-generation (confidence trimming), by reason",
            ["reason"],
            registry=r,
        )
        self.decisions = Counter(
            "dynasor_decisions", "Policy decisions, by action", ["action"], registry=r
        )
        self.queue_length = Gauge(
            "dynasor_queue_length", "Requests waiting for admission", registry=r
        )
        self.worker_inflight = Gauge(
            "dynasor_worker_inflight", "Requests in flight per worker", ["worker"], registry=r
        )
        self.worker_healthy = Gauge(
            "dynasor_worker_healthy", "1 when the worker is healthy", ["worker"], registry=r
        )
        self.decision_seconds = Histogram(
            "dynasor_decision_seconds",
            "Seconds the policy took to decide a program's report (clustering its answers "
            "through math-verify included), by algorithm",
            ["algorithm"],
            buckets=(0.001, 0.005, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0),
            registry=r,
        )
        self.deciding = Gauge(
            "dynasor_reports_deciding",
            "Reports whose decision the policy is computing now (each program decides one "
            "report at a time; the others wait for it)",
            registry=r,
        )
        self.certaindex_at_exit = Histogram(
            "dynasor_certaindex_at_exit",
            "Last certaindex reading of each ended program",
            ["signal"],
            buckets=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0),
            registry=r,
        )

        self._calibration_gauges(r)

    def watch_limits(self, limits: Callable[[], Mapping[int, int]]) -> None:
        """`dynasor_inflight_limit{worker=...}`: each worker's in-flight limit, read from
        `limits` (worker index -> limit) at every scrape (an adaptive limit moves between)."""
        self.registry.register(_LimitCollector(limits))

    def _calibration_gauges(self, r: CollectorRegistry) -> None:
        """Self-calibration, one series per calibration key (`GET /calibration` has the rest)."""

        def gauge(name: str, text: str) -> Gauge:
            return Gauge(f"dynasor_calibration_{name}", text, ["key"], registry=r)

        self.calibration_explored = gauge("explored", "Programs run to their cap to calibrate")
        self.calibration_runs = gauge("runs", "Explored runs kept to fit the stop rule on")
        self.calibration_threshold = gauge(
            "threshold", "The fitted stop rule's threshold (entropy, or the posterior's level)"
        )
        self.calibration_min_programs = gauge(
            "min_programs", "Explored runs the bound needs before a rule is fitted"
        )
        self.calibration_disagreement = gauge(
            "disagreement",
            "Share of explored runs whose rule in force disagreed with their full budget",
        )

    def program_ended(self, prog: Program) -> None:
        self.programs_ended.labels(prog.exit_reason or "unknown").inc()
        if prog.trajectory:
            for name, value in prog.trajectory[-1].items():
                if name not in UNITS_KEYS:
                    self.certaindex_at_exit.labels(name).observe(float(value))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _LimitCollector(Collector):
    """The per-worker in-flight limits, read when scraped."""

    def __init__(self, limits: Callable[[], Mapping[int, int]]) -> None:
        self._limits = limits

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "dynasor_inflight_limit",
            "Requests a worker may have in flight before new ones wait in the router",
            labels=["worker"],
        )
        for worker, limit in sorted(self._limits().items()):
            family.add_metric([str(worker)], limit)
        yield family
