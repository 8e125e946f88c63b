"""`dynasor-sgl chat` through click's CliRunner against the real router app over HTTP (uvicorn)
in front of a fake worker; and a client that hangs up on a real socket."""

from __future__ import annotations

import subprocess
import sys
import time

import httpx
import pytest
from click.testing import CliRunner
from lang_harness import refused_url, serve_router
from test_router_chat_exit import scripted

from dynasor_sgl.cli.chat import summary
from dynasor_sgl.cli.main import main

pytestmark = pytest.mark.io


def test_summary_says_why_it_ended_and_what_it_saved() -> None:
    usage = {
        "completion_tokens_details": {"reasoning_tokens": 64},
        "dynasor": {
            "exit_reason": "certain",
            "probe_tokens": 6,
            "tokens_saved": 442,
            "budget": 512,
        },
    }
    line = summary(usage)
    assert "probes agreed" in line and "64 reasoning + 6 probe" in line and "~442 of 512" in line
    usage["dynasor"] |= {"exit_reason": "completed", "tokens_saved": -6}
    assert "finished on its own" in summary(usage) and "nothing saved" in summary(usage)
    assert summary({"prompt_tokens": 3}) == "[no early exit on this reply]"


def test_chat_streams_the_reply_and_reports_the_early_exit() -> None:
    with serve_router() as served:
        served.fake.script = scripted(["42}"])
        args = ["chat", "--router", served.url, "--effort", "low", "--once", "What is 6 * 7?"]
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, result.output
        assert "\\boxed{42}" in result.stdout and "r0 r1" in result.stdout
        assert "early exit: the probes agreed" in result.stderr
        assert "suddenly" not in result.output  # the probe never shows


def test_chat_without_a_router_is_one_clear_error() -> None:
    with refused_url() as url:
        result = CliRunner().invoke(main, ["chat", "--router", url, "--once", "hi"])
    assert result.exit_code == 1 and "cannot reach the router" in result.output
    assert "Traceback" not in result.output


def test_a_client_hanging_up_on_a_real_socket_frees_the_worker() -> None:
    with serve_router() as served:
        body = {"text": "a", "sampling_params": {"max_new_tokens": 5000}, "stream": True}
        with httpx.stream("POST", served.url + "/generate", json=body, timeout=10) as resp:
            chunks = resp.iter_bytes()  # held: a dropped iterator closes the stream
            next(chunks)  # the stream has started
            assert len(served.fake.running) == 1
        # observed, not timed: the router's abort (checked below) frees the request; no
        # window a slow machine could miss
        deadline = time.monotonic() + 30
        while served.fake.running and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not served.fake.running
        assert served.fake.aborts


def test_launch_passes_the_default_effort_to_its_router() -> None:
    from dynasor_sgl.launch.config import LaunchConfig
    from dynasor_sgl.launch.worker import router_command
    from dynasor_sgl.router.config import RouterConfig

    low = LaunchConfig(router_config=RouterConfig(default_effort="low"))
    cmd = router_command(low, 30001, ["http://127.0.0.1:30002"])
    assert cmd[cmd.index("--default-effort") + 1] == "low"
    assert "--default-effort" not in router_command(LaunchConfig(), 30001, ["http://w"])
    with pytest.raises(ValueError, match="reasoning_effort"):
        RouterConfig(default_effort="extreme")


def test_chat_as_a_real_subprocess_reads_the_conversation_from_stdin() -> None:
    with serve_router() as served:
        served.fake.script = scripted(["42}"])
        cmd = [sys.executable, "-m", "dynasor_sgl.cli.main", "chat", "--router", served.url]
        done = subprocess.run(
            [*cmd, "--effort", "low"],
            input="What is 6 * 7?\n/quit\n",
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 0, done.stderr
    assert "\\boxed{42}" in done.stdout and "probes agreed" in done.stderr
    assert "Traceback" not in done.stderr
