"""The CLI through click's CliRunner: usage errors are one line, never a traceback."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from dynasor_sgl.cli.main import main

pytestmark = pytest.mark.io  # sockets, subprocesses or a served router


def test_help_lists_launch_options() -> None:
    res = CliRunner().invoke(main, ["launch", "--help"])
    assert res.exit_code == 0
    for opt in (
        "--model-path",
        "--workers",
        "--host",
        "--port",
        "--max-total-tokens",
        "--log-level",
        "SGLANG_ARGS",
    ):
        assert opt in res.output


def test_bad_workers_is_a_usage_error() -> None:
    res = CliRunner().invoke(main, ["launch", "--workers", "0"])
    assert res.exit_code == 2
    assert "workers must be between 1 and 64, got 0" in res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)


def test_reserved_flag_after_double_dash_is_refused() -> None:
    res = CliRunner().invoke(main, ["launch", "--", "--port", "1"])
    assert res.exit_code == 2 and "--port is set by dynasor-sgl" in res.output


def test_unknown_option_is_refused() -> None:
    res = CliRunner().invoke(main, ["launch", "--colour", "red"])
    assert res.exit_code == 2 and "No such option" in res.output


# A command's cleanup (stopping the SGLang workers it started) must run on `kill` as on Ctrl-C.
_TERMINATED = """
import sys, time
from dynasor_sgl.cli.common import interrupt_on_terminate
interrupt_on_terminate()
try:
    print("ready", flush=True)
    time.sleep(60)
except KeyboardInterrupt as exc:
    print(f"cleaned up after {exc}", flush=True)
    sys.exit(130)
"""


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGHUP"])
def test_terminate_runs_the_commands_cleanup_as_ctrl_c_does(sig: str) -> None:
    import signal
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", _TERMINATED], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    proc.send_signal(getattr(signal, sig))
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 130 and out.strip() == f"cleaned up after {sig}"
