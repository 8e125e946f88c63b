"""Bring up a serving cluster: resolve the model, start the workers, wait, tear everything down.

Owns the order of a launch and its cleanup guarantee (every child process is stopped, whatever
happens). The router, once it exists, is started here in front of the workers and takes the
user-facing port; until then the first worker has it. It knows nothing about the CLI.
"""

from __future__ import annotations

import logging
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from dynasor_sgl.launch.config import LaunchConfig
from dynasor_sgl.launch.model import cache_dir, ensure_embedded_model, validate_model_path
from dynasor_sgl.launch.worker import (
    WorkerProcess,
    WorkerStartError,
    free_ports,
    port_is_free,
    resolve_device,
    router_command,
    worker_command,
    worker_env,
)
from dynasor_sgl.protocol import API_KEY_ENV

logger = logging.getLogger(__name__)


class LaunchError(Exception):
    """A launch that cannot go ahead (bad model, busy port, a worker that failed to start)."""

    def __init__(self, message: str, log_tail: str = "") -> None:
        super().__init__(message)
        self.log_tail = log_tail


@dataclass
class Cluster:
    """A running set of workers (and, later, the router in front of them)."""

    config: LaunchConfig
    device: str
    model_dir: Path
    log_dir: Path
    workers: list[WorkerProcess] = field(default_factory=list)
    router: WorkerProcess | None = None

    @property
    def url(self) -> str:
        """The URL users talk to: the router's, or the first worker's without a router."""
        return self.router.url if self.router is not None else self.workers[0].url

    @property
    def worker_urls(self) -> list[str]:
        return [w.url for w in self.workers]

    def processes(self) -> list[WorkerProcess]:
        return ([self.router] if self.router is not None else []) + self.workers

    def dead_workers(self) -> list[WorkerProcess]:
        return [w for w in self.processes() if not w.alive()]

    def stop(self) -> None:
        for w in self.processes():  # the router first: no new work reaches dying workers
            w.stop()


def resolve_model(cfg: LaunchConfig, progress: Callable[[str], None]) -> Path:
    try:
        if cfg.model_path is not None:
            return validate_model_path(cfg.model_path)
        return ensure_embedded_model(progress)
    except Exception as exc:
        raise LaunchError(str(exc)) from exc


def worker_host(cfg: LaunchConfig) -> str:
    """Workers behind the router only need to be reachable from it."""
    return "127.0.0.1" if cfg.router else cfg.host


def plan_ports(cfg: LaunchConfig) -> list[int]:
    """The user-facing port first (router, or worker 0), then the workers' free ports above it."""
    if not port_is_free(cfg.host, cfg.port):
        raise LaunchError(
            f"port {cfg.port} on {cfg.host} is already in use; choose another with --port"
        )
    needed = cfg.workers if cfg.router else cfg.workers - 1
    rest = free_ports(worker_host(cfg), cfg.port + 1, needed, exclude={cfg.port}) if needed else []
    return [cfg.port, *rest]


@contextmanager
def run_cluster(
    cfg: LaunchConfig,
    progress: Callable[[str], None] = logger.info,
    on_ready: Callable[[WorkerProcess, float], None] | None = None,
    stop: threading.Event | None = None,
) -> Iterator[Cluster]:
    """Start the cluster, yield it once every worker is healthy, stop it on exit.

    All workers start at once (start-up is mostly Python imports) and are awaited in order.
    `on_ready(worker, seconds_since_start)` reports progress; setting `stop` aborts a start-up
    in progress.
    """
    model_dir = resolve_model(cfg, progress)
    ports = plan_ports(cfg)
    user_port = ports[0]
    worker_ports = ports[1:] if cfg.router else ports
    device = resolve_device(cfg.device)
    log_dir = Path(cfg.log_dir) if cfg.log_dir else _fresh_log_dir()
    cluster = Cluster(cfg, device, model_dir, log_dir)
    progress(
        f"Starting {cfg.workers} SGLang worker(s) on {device} (~20 s each on CPU); "
        f"logs in {log_dir}"
    )
    started = time.monotonic()
    try:
        host = worker_host(cfg)
        for i, port in enumerate(worker_ports):
            cmd = worker_command(cfg, model_dir, host, port, device)
            log = log_dir / f"worker-{i}.log"
            cluster.workers.append(WorkerProcess.start(i, cmd, worker_env(device), host, port, log))
        for worker in cluster.workers:
            _await(worker, cfg, stop, on_ready, started)
        if cfg.router:
            urls = cluster.worker_urls
            cluster.router = _start_router(cfg, user_port, urls, device, log_dir)
            _await(cluster.router, cfg, stop, on_ready, started)
        yield cluster
    finally:
        cluster.stop()


def _start_router(
    cfg: LaunchConfig, port: int, worker_urls: list[str], device: str, log_dir: Path
) -> WorkerProcess:
    env = worker_env("router")
    if cfg.router_config.api_key:
        env[API_KEY_ENV] = cfg.router_config.api_key
    cmd = router_command(cfg, port, worker_urls, device)
    return WorkerProcess.start(0, cmd, env, cfg.host, port, log_dir / "router.log", "router")


def _await(
    proc: WorkerProcess,
    cfg: LaunchConfig,
    stop: threading.Event | None,
    on_ready: Callable[[WorkerProcess, float], None] | None,
    started: float,
) -> None:
    try:
        proc.wait_healthy(cfg.startup_timeout, stop)
    except WorkerStartError as exc:
        raise LaunchError(str(exc), exc.log_tail) from exc
    if on_ready is not None:
        on_ready(proc, time.monotonic() - started)


def _fresh_log_dir() -> Path:
    root = cache_dir() / "logs"
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=time.strftime("launch-%Y%m%d-%H%M%S-"), dir=root))
