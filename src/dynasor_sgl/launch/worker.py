"""One SGLang worker process: its command line, start-up, health and shutdown.

Owns the `sglang.launch_server` process tree of a single worker and the port checks it needs.
It does not decide how many workers run or what sits in front of them (that is `launch`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

from dynasor_sgl.launch.config import LaunchConfig
from dynasor_sgl.protocol import API_KEY_ENV

logger = logging.getLogger(__name__)

_HEALTH_POLL_S = 0.5
_STOP_GRACE_S = 10.0
LOG_TAIL_LINES = 25


class WorkerStartError(Exception):
    """A worker that could not be started or did not become healthy; carries its log tail."""

    def __init__(self, message: str, log_tail: str = "") -> None:
        super().__init__(message)
        self.log_tail = log_tail


def port_is_free(host: str, port: int) -> bool:
    """True when a server could bind host:port now (SO_REUSEADDR, as uvicorn binds)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_ports(host: str, start: int, count: int, exclude: set[int] | None = None) -> list[int]:
    """The first `count` free ports at or above `start`, skipping `exclude`."""
    ports: list[int] = []
    port = start
    while len(ports) < count:
        if port > 65535:
            raise WorkerStartError(f"no {count} free ports at or above {start} on {host}")
        if port not in (exclude or set()) and port_is_free(host, port):
            ports.append(port)
        port += 1
    return ports


def resolve_device(device: str) -> str:
    """ "auto" becomes "cuda" when torch sees a GPU, else "cpu"."""
    if device != "auto":
        return device
    try:
        import torch
    except ImportError:
        return "cpu"
    return "cuda" if torch.cuda.is_available() else "cpu"


def worker_command(
    cfg: LaunchConfig, model_dir: Path, host: str, port: int, device: str
) -> list[str]:
    """The `sglang.launch_server` argv for one worker (wrapped by `dynasor_sgl.launch.steptrace`
    when the config asks for a step trace)."""
    server = ["sglang.launch_server"]
    if cfg.step_trace:
        server = [
            "dynasor_sgl.launch.steptrace",
            "--step-trace",
            str(Path(cfg.step_trace).resolve()),
        ]
    cmd = [
        sys.executable,
        "-m",
        *server,
        "--model-path",
        str(model_dir),
        "--host",
        host,
        "--port",
        str(port),
        "--log-level",
        cfg.log_level,
        "--grammar-backend",
        cfg.grammar_backend,
    ]
    if device == "cpu":
        cmd += ["--device", "cpu", "--attention-backend", "torch_native"]
    # An idle SGLang scheduler otherwise spins a whole core; with two workers on a two-core
    # machine that halves everything else. It wakes on the next request without delay.
    cmd += ["--sleep-on-idle"]
    if cfg.worker_priority:
        # The router maps its scheduling order onto SGLang's per-request priority, and the
        # same priority is the prefix cache's eviction hint: the prefixes of programs that run
        # soon (short or urgent) are kept, those of programs far back in the order go first.
        cmd += ["--enable-priority-scheduling"]
        if not any(a.split("=", 1)[0] == "--radix-eviction-policy" for a in cfg.sglang_args):
            cmd += ["--radix-eviction-policy", "priority"]
    kv_tokens = cfg.kv_tokens(device)
    if kv_tokens is not None:
        cmd += ["--max-total-tokens", str(kv_tokens)]
    return cmd + list(cfg.sglang_args)


def router_command(
    cfg: LaunchConfig, port: int, worker_urls: list[str], device: str = "cpu"
) -> list[str]:
    """The `dynasor-sgl router` argv that fronts the given workers on `device` (resolved:
    "cpu" or "cuda"), with `cfg.router_config`'s settings for that device (an "auto" in-flight
    limit resolved; the API key goes through the environment: `launch.cluster`)."""
    r = cfg.router_config.for_device(device)
    cmd = [
        sys.executable,
        "-m",
        "dynasor_sgl.cli.main",
        "router",
        "--host",
        cfg.host,
        "--port",
        str(port),
        "--scheduling",
        r.scheduling,
        "--inflight-limit",
        r.inflight_limit,
        "--max-inflight-per-worker",
        str(r.max_inflight_per_worker),
        "--inflight-limit-min",
        str(r.inflight_limit_min),
        "--inflight-limit-max",
        str(r.inflight_limit_max),
        "--aging-rate",
        str(r.aging_rate),
        "--starvation-bound-s",
        str(r.starvation_bound_s),
        "--program-ttl-s",
        str(r.program_ttl_s),
        "--deadline-stop" if r.deadline_stop else "--no-deadline-stop",
        "--log-level",
        cfg.log_level,
        "--worker-priority" if cfg.worker_priority else "--no-worker-priority",
        "--explore",
        str(r.explore),
        "--calibration-epsilon",
        str(r.calibration_epsilon),
        "--calibration-delta",
        str(r.calibration_delta),
    ]
    for url in worker_urls:
        cmd += ["--worker-url", url]
    if cfg.policy_file:
        cmd += ["--policy", cfg.policy_file]
    if r.default_effort:
        cmd += ["--default-effort", r.default_effort]
    if r.calibration_file:
        cmd += ["--calibration", r.calibration_file]
    return cmd


def worker_env(device: str) -> dict[str, str]:
    env = dict(os.environ)
    # Keep /health a cheap liveness probe (the router polls it every few seconds); SGLang
    # would otherwise run a one-token generation for each. /health_generate still does.
    env.setdefault("SGLANG_ENABLE_HEALTH_ENDPOINT_GENERATION", "false")
    if device == "cpu":
        env["SGLANG_USE_CPU_ENGINE"] = "1"  # without it SGLang looks for vllm's CPU ops
    return env


@dataclass
class WorkerProcess:
    """A started `sglang.launch_server` and everything it spawned."""

    index: int
    host: str
    port: int
    log_path: Path
    proc: subprocess.Popen[bytes]
    role: str = "worker"
    cmd: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return "router" if self.role == "router" else f"worker {self.index}"

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @classmethod
    def start(
        cls,
        index: int,
        cmd: list[str],
        env: dict[str, str],
        host: str,
        port: int,
        log_path: Path,
        role: str = "worker",
    ) -> WorkerProcess:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log:
            # Own session: one process group we can signal as a whole, and Ctrl-C in the
            # terminal reaches only us, so shutdown happens in our order.
            proc = subprocess.Popen(
                cmd,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        logger.info("%s %d: pid %d, port %d, log %s", role, index, proc.pid, port, log_path)
        return cls(index, host, port, log_path, proc, role, cmd, env)

    def restart(self) -> WorkerProcess:
        """Start the same command again (after a stop or a crash); returns the new process."""
        self.stop()
        return WorkerProcess.start(
            self.index, self.cmd, self.env, self.host, self.port, self.log_path, self.role
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            with open(self.log_path, errors="replace") as fh:
                return "".join(deque(fh, maxlen=lines))
        except OSError:
            return ""

    def healthy(self, timeout: float = 2.0) -> bool:
        """True once the worker finished loading and warm-up (/health answers 200)."""
        try:
            key = self.env.get(API_KEY_ENV)
            headers = {"Authorization": f"Bearer {key}"} if key else {}
            resp = httpx.get(f"{self.url}/health", headers=headers, timeout=timeout)
            return resp.status_code == 200
        except httpx.HTTPError:
            return False

    def wait_healthy(self, timeout: float, stop: threading.Event | None = None) -> None:
        """Block until healthy; raise WorkerStartError if it dies, times out, or `stop` is set."""
        deadline = time.monotonic() + timeout
        while True:
            if not self.alive():
                raise WorkerStartError(
                    f"{self.name} (port {self.port}) exited with code "
                    f"{self.proc.returncode} during start-up; log: {self.log_path}",
                    self.log_tail(),
                )
            if self.healthy():
                return
            if stop is not None and stop.is_set():
                raise WorkerStartError(f"start-up of {self.name} interrupted")
            if time.monotonic() > deadline:
                raise WorkerStartError(
                    f"{self.name} (port {self.port}) not healthy after {timeout:.0f} s; "
                    f"log: {self.log_path}",
                    self.log_tail(),
                )
            time.sleep(_HEALTH_POLL_S)

    def stop(self, grace: float = _STOP_GRACE_S) -> None:
        """SIGTERM the whole process tree, then SIGKILL whatever is left after `grace` s."""
        procs = _tree(self.proc.pid)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        for p in procs:
            with contextlib.suppress(psutil.Error):
                p.terminate()
        _, alive = psutil.wait_procs(procs, timeout=grace)
        for p in alive:
            with contextlib.suppress(psutil.Error):
                p.kill()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        psutil.wait_procs(alive, timeout=5)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        logger.info("%s stopped", self.name)


def _tree(pid: int) -> list[psutil.Process]:
    """The process and all its descendants (collected before signalling, so none escapes)."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []
