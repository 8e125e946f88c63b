"""Run the router: uvicorn on the configured host and port until SIGINT/SIGTERM."""

from __future__ import annotations

import logging

import uvicorn

from dynasor_sgl.router.app import create_app
from dynasor_sgl.router.config import RouterConfig

logger = logging.getLogger(__name__)


def serve(config: RouterConfig, log_level: str = "info") -> None:
    """Blocks until the server is told to stop. uvicorn handles SIGINT and SIGTERM."""
    app = create_app(config)
    logger.info(
        "router on http://%s:%d in front of %s (%s scheduling)",
        config.host,
        config.port,
        ", ".join(config.worker_urls),
        config.scheduling,
    )
    uvicorn.run(
        app,
        host=config.host,
        port=config.port,
        log_level="warning" if log_level == "info" else log_level,
        access_log=False,
        loop="uvloop",
        lifespan="on",
        timeout_graceful_shutdown=5,
        # Per-request work we do not need: X-Forwarded-* rewriting, Server and Date headers.
        proxy_headers=False,
        server_header=False,
        date_header=False,
    )
