"""`dynasor-sgl launch` as a real subprocess: comes up, serves, and leaves nothing behind."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from dynasor_sgl.launch.worker import free_ports

pytestmark = pytest.mark.e2e
CLI = [sys.executable, "-m", "dynasor_sgl.cli.main"]


def _read_until(proc: subprocess.Popen[str], pattern: str, timeout: float) -> re.Match[str]:
    deadline = time.monotonic() + timeout
    seen: list[str] = []
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            if proc.poll() is not None:
                break
            continue
        seen.append(line)
        if m := re.search(pattern, line):
            return m
    raise AssertionError(f"no line matching {pattern!r}; got: {''.join(seen)[-2000:]}")


def test_launch_serves_and_sigterm_leaves_no_process(tmp_path: Path) -> None:
    port = free_ports("127.0.0.1", 38300, 1)[0]
    proc = subprocess.Popen(
        [
            *CLI,
            "launch",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--log-dir",
            str(tmp_path),
            "--api-key",
            "s3cret",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        m = _read_until(proc, r"serving \S+ on cpu at (http://\S+)", timeout=600)
        url = m.group(1)
        assert url == f"http://127.0.0.1:{port}"
        body = {"text": "Hello, my name is", "sampling_params": {"max_new_tokens": 4}}
        denied = httpx.post(f"{url}/generate", json=body, timeout=120)
        assert denied.status_code == 401 and "API key" in denied.json()["error"]["message"]
        auth = {"Authorization": "Bearer s3cret"}
        out = httpx.post(f"{url}/generate", json=body, headers=auth, timeout=120).json()
        assert out["text"] and out["meta_info"]["completion_tokens"] >= 1
        tree = psutil.Process(proc.pid).children(recursive=True)
        assert tree, "launch should own the SGLang worker processes"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    _, alive = psutil.wait_procs(tree, timeout=10)
    assert not alive, f"left behind: {[p.pid for p in alive]}"
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0, "nothing should listen on the port"


def _run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout)


def test_missing_model_path_is_one_clear_line() -> None:
    res = _run_cli("launch", "--model-path", "/nonexistent")
    assert res.returncode != 0
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert lines == ["Error: model path /nonexistent does not exist"]
    assert "Traceback" not in res.stderr


def test_port_in_use_is_one_clear_line() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        res = _run_cli("launch", "--port", str(port))
    assert res.returncode != 0
    assert f"Error: port {port} on 127.0.0.1 is already in use" in res.stderr
    assert "Traceback" not in res.stderr


def test_worker_dying_at_startup_shows_its_log_tail(tmp_path: Path) -> None:
    port = free_ports("127.0.0.1", 38400, 1)[0]
    # SGLang's own argument parser rejects this and the worker exits during start-up.
    res = _run_cli(
        "launch",
        "--port",
        str(port),
        "--log-dir",
        str(tmp_path),
        "--",
        "--context-length",
        "not-a-number",
    )
    assert res.returncode == 1
    first = next(ln for ln in res.stderr.splitlines() if ln.startswith("Error:"))
    assert re.match(r"Error: worker 0 \(port \d+\) exited with code \d+ during start-up", first)
    assert "context-length" in res.stderr  # the tail of the worker's log explains why
    assert "Traceback" not in res.stderr.split(first)[0]
    assert not any(
        "sglang.launch_server" in " ".join(p.cmdline()) and str(port) in p.cmdline()
        for p in psutil.process_iter()
        if _safe(p)
    )


def _safe(p: psutil.Process) -> bool:
    try:
        p.cmdline()
        return p.pid != os.getpid()
    except psutil.Error:
        return False
