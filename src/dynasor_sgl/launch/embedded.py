"""The embedded model behind a router, started for the length of one command or bench script
and stopped when it ends. Knows nothing about the CLI: progress goes to stderr unless the
caller says where.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from contextlib import ExitStack

from dynasor_sgl.launch.cluster import run_cluster
from dynasor_sgl.launch.config import LaunchConfig
from dynasor_sgl.launch.worker import free_ports


def to_stderr(message: str) -> None:
    """One line of start-up progress on stderr, where a command's output does not go."""
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def launch_embedded(stack: ExitStack, progress: Callable[[str], None] = to_stderr) -> str:
    """Start the embedded model behind a router on a free port from 38500 (stopped when
    `stack` closes), telling `progress` how start-up goes; its URL."""
    port = free_ports("127.0.0.1", 38500, 1)[0]
    cluster = stack.enter_context(
        run_cluster(LaunchConfig(port=port, log_level="warning"), progress=progress)
    )
    return str(cluster.url)
