"""The processes behind one benchmark: a worker of each flavour, a router per system.

`own_worker` starts one SGLang worker (no router) through
`dynasor_sgl.launch.cluster.run_cluster` with
the flavour's extra arguments; `router_for` starts `dynasor-sgl router` as a subprocess in front
of a worker and waits for its /health (`serve_router`, which tests use too). Both stop what
they started on exit, whatever happens. Also the small worker calls the benchmark needs
(priority scheduling on?, flush the cache).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx

from dynasor_sgl.launch.cluster import LaunchError, run_cluster
from dynasor_sgl.launch.config import LaunchConfig
from dynasor_sgl.launch.worker import WorkerProcess, WorkerStartError, free_ports, worker_env
from dynasor_sgl.online.systems import WORKER_FLAVOURS, Flavour, System, router_command

logger = logging.getLogger(__name__)

ROUTER_PORT_BASE = 38700
WORKER_PORT_BASE = 38800
ROUTER_START_S = 120.0


class ServerError(RuntimeError):
    """A worker or router that did not come up; the message says where its log is."""


@contextmanager
def own_worker(
    flavour: Flavour, log_dir: Path, model_path: str | None = None, startup_timeout: float = 600.0
) -> Iterator[str]:
    """One SGLang worker of `flavour` on a free port; its URL until the block ends. It records
    a step trace beside its log (`worker-<flavour>/steps.jsonl`,
    `dynasor_sgl.launch.steptrace`): what
    the engine ran in the benchmark, for the simulator's step model and its validation."""
    port = free_ports("127.0.0.1", WORKER_PORT_BASE, 1)[0]
    cfg = LaunchConfig(
        model_path=model_path,
        router=False,
        port=port,
        log_level="warning",
        log_dir=str(log_dir / f"worker-{flavour}"),
        step_trace=str(log_dir / f"worker-{flavour}" / "steps.jsonl"),
        startup_timeout=startup_timeout,
        sglang_args=WORKER_FLAVOURS[flavour],
    )
    logger.info(
        "starting a %s SGLang worker (%s)", flavour, " ".join(WORKER_FLAVOURS[flavour]) or "stock"
    )
    try:
        with run_cluster(cfg, progress=logger.info) as cluster:
            yield cluster.workers[0].url
    except LaunchError as exc:
        raise ServerError(f"the {flavour} worker did not start: {exc}") from exc


@contextmanager
def router_for(
    system: System, worker_url: str, log_dir: Path, *, priority: bool, max_inflight: int | None
) -> Iterator[str]:
    """`dynasor-sgl router` for `system` in front of `worker_url`; its URL until the block ends."""
    port = free_ports("127.0.0.1", ROUTER_PORT_BASE, 1)[0]
    cmd = router_command(system, worker_url, port, priority=priority, max_inflight=max_inflight)
    log = log_dir / f"router-{system.name}.log"
    with serve_router(cmd, port, log, what=f"router for {system.name}") as url:
        logger.info("router for %s at %s (%s)", system.name, url, " ".join(cmd[3:]))
        yield url


@contextmanager
def serve_router(
    cmd: Sequence[str], port: int, log: Path, start_s: float = ROUTER_START_S, what: str = "router"
) -> Iterator[str]:
    """Run a router argv (`systems.router_argv`) listening on `port`, its output in `log`;
    its URL once /health answers (else `ServerError` naming `what`), stopped when the block
    ends."""
    proc = WorkerProcess.start(0, list(cmd), worker_env("router"), "127.0.0.1", port, log, "router")
    try:
        try:
            proc.wait_healthy(start_s)
        except WorkerStartError as exc:
            tail = exc.log_tail.strip().splitlines()[-1:] or [""]
            raise ServerError(f"{what} did not start: {exc} {tail[0]}") from exc
        yield proc.url
    finally:
        proc.stop()


def has_priority_scheduling(worker_url: str) -> bool:
    """Whether the worker runs with `--enable-priority-scheduling` (False if it cannot say)."""
    for path in ("/server_info", "/get_server_info"):
        try:
            reply = httpx.get(worker_url.rstrip("/") + path, timeout=10.0)
        except httpx.HTTPError:
            continue
        if reply.status_code == 200:
            return bool(reply.json().get("enable_priority_scheduling"))
    logger.warning("%s does not say whether priority scheduling is on; assuming off", worker_url)
    return False


def flush_cache(worker_url: str) -> None:
    """Empty the worker's prefix cache, so no run inherits another's; best effort."""
    try:
        reply = httpx.post(worker_url.rstrip("/") + "/flush_cache", timeout=30.0)
    except httpx.HTTPError as exc:
        logger.warning("could not flush %s: %s", worker_url, exc)
        return
    if reply.status_code != 200:
        logger.warning(
            "could not flush %s: HTTP %d %s", worker_url, reply.status_code, reply.text[:200]
        )
