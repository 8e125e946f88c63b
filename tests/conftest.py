"""Shared fixtures. The real SGLang worker is started once per test session and shared."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import pytest

from dynasor_sgl.config import LaunchConfig
from dynasor_sgl.launch import Cluster, run_cluster
from dynasor_sgl.worker import free_ports

# A port range of its own, away from the CLI default (30000) a developer may be running.
E2E_PORT_BASE = 38100
ROUTER_ENV = "DYNASOR_SGL_E2E_ROUTER"


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """The router in front of two real SGLang CPU workers on the embedded model, started by our
    own launch code once per session."""
    port = free_ports("127.0.0.1", E2E_PORT_BASE, 1)[0]
    cfg = LaunchConfig(
        port=port,
        workers=2,
        log_level="warning",
        log_dir=str(tmp_path_factory.mktemp("worker-logs")),
        startup_timeout=600,
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
