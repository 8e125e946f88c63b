"""Shared fixtures. The real SGLang worker is started once per test session and shared."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator

import httpx
import pytest

from dynasor_sgl.launch.cluster import Cluster, run_cluster
from dynasor_sgl.launch.config import LaunchConfig
from dynasor_sgl.launch.worker import free_ports
from dynasor_sgl.router.config import RouterConfig

# A port range of its own, away from the CLI default (30000) a developer may be running.
E2E_PORT_BASE = 38100
ROUTER_ENV = "DYNASOR_SGL_E2E_ROUTER"


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """The router in front of two real SGLang CPU workers on the embedded model, started by our
    own launch code once per session. The workers record a step trace
    (`dynasor_sgl.launch.steptrace`):
    every e2e test also checks that the wrapper leaves SGLang serving as it did."""
    port = free_ports("127.0.0.1", E2E_PORT_BASE, 1)[0]
    cfg = LaunchConfig(
        port=port,
        workers=2,
        log_level="warning",
        log_dir=str(tmp_path_factory.mktemp("worker-logs")),
        step_trace=str(tmp_path_factory.mktemp("steps") / "steps.jsonl"),
        startup_timeout=600,
        # No self-calibration exploration: tests that expect an early exit must not draw an
        # explored program (tests/e2e/test_router_selfcal.py starts routers of its own).
        router_config=RouterConfig(explore=0.0),
    )
    with run_cluster(cfg, progress=logging.getLogger("e2e").info) as running:
        yield running


@pytest.fixture(scope="session")
def worker_url(cluster: Cluster) -> str:
    """A worker directly, bypassing the router."""
    return cluster.workers[0].url


@pytest.fixture(scope="session")
def router_url(request: pytest.FixtureRequest) -> str:
    """The router of the session cluster, or an already running one named by
    $DYNASOR_SGL_E2E_ROUTER (for quick iteration on tests that only need a router)."""
    if os.environ.get(ROUTER_ENV):
        return os.environ[ROUTER_ENV].rstrip("/")
    cluster: Cluster = request.getfixturevalue("cluster")
    assert cluster.router is not None
    return cluster.url


@pytest.fixture(autouse=True)
def _whole_cluster(request: pytest.FixtureRequest) -> None:
    """Every test on the shared cluster starts with all its workers up: the worker-crash test
    restarts the worker it kills, and this checks it did (a test never inherits a half cluster)."""
    uses = {"cluster", "router_url", "worker_url"} & set(request.fixturenames)
    if not uses or os.environ.get(ROUTER_ENV):
        return
    cluster: Cluster = request.getfixturevalue("cluster")
    deadline = time.monotonic() + 120
    while True:
        try:
            healthy = httpx.get(f"{cluster.url}/health", timeout=10).json().get("healthy_workers")
        except (httpx.HTTPError, ValueError):
            healthy = None
        if healthy == len(cluster.workers):
            return
        assert time.monotonic() < deadline, f"the shared cluster is not whole: {healthy} healthy"
        time.sleep(0.5)
