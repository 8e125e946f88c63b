"""The step-trace wrapper around `sglang.launch_server`: its arguments, its lines, its argv.
(That it leaves SGLang serving and times real steps: tests/e2e/test_worker.py, whose shared
cluster runs under it.)"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from dynasor_sgl.launch.config import LaunchConfig
from dynasor_sgl.launch.steptrace import split_argv, step_line
from dynasor_sgl.launch.worker import worker_command


def test_the_trace_flag_is_taken_out_of_sglangs_arguments() -> None:
    assert split_argv(["--step-trace", "a.jsonl", "--port", "1"]) == ("a.jsonl", ["--port", "1"])
    assert split_argv(["--port", "1", "--step-trace=b.jsonl"]) == ("b.jsonl", ["--port", "1"])
    assert split_argv(["--port", "1"]) == (None, ["--port", "1"])
    with pytest.raises(ValueError, match="needs a file path"):
        split_argv(["--port", "1", "--step-trace"])


@dataclass
class Mode:
    extend: bool

    def is_extend(self) -> bool:
        return self.extend

    def is_decode(self) -> bool:
        return not self.extend


@dataclass
class Batch:
    forward_mode: Mode
    extend_lens: list[int] = field(default_factory=list)
    prefix_lens: list[int] = field(default_factory=list)
    seq_lens_sum: int = 0

    def batch_size(self) -> int:
        return max(len(self.extend_lens), 3)


@dataclass
class Args:
    port: int = 30001


@dataclass
class Scheduler:
    waiting_queue: list[object]
    server_args: Args = field(default_factory=Args)
    _dynasor_step_t: float = 1.5


def test_an_extend_step_line_counts_computed_and_cached_prompt_tokens() -> None:
    batch = Batch(Mode(True), extend_lens=[5, 1], prefix_lens=[40, 48], seq_lens_sum=94)
    got = step_line(Scheduler(waiting_queue=[object()]), batch, end=1.6)
    assert got == {
        "t": 1.5,
        "run_end": 1.6,
        "mode": "extend",
        "batch": 3,
        "context": 94,
        "waiting": 1,
        "worker": 30001,
        "new_tokens": 6,
        "cached": 88,
    }


def test_a_decode_step_line_has_no_prompt_tokens() -> None:
    got = step_line(Scheduler(waiting_queue=[]), Batch(Mode(False), seq_lens_sum=120), end=2.0)
    assert got["mode"] == "decode" and got["batch"] == 3 and got["context"] == 120
    assert "new_tokens" not in got


def test_a_worker_asked_for_a_trace_runs_under_the_wrapper(tmp_path: Path) -> None:
    trace = tmp_path / "steps.jsonl"
    cmd = worker_command(LaunchConfig(step_trace=str(trace)), tmp_path, "127.0.0.1", 30001, "cpu")
    assert cmd[:5] == [
        sys.executable,
        "-m",
        "dynasor_sgl.launch.steptrace",
        "--step-trace",
        str(trace),
    ]
    plain = worker_command(LaunchConfig(), tmp_path, "127.0.0.1", 30001, "cpu")
    assert plain[:3] == [sys.executable, "-m", "sglang.launch_server"]
    assert cmd[5:] == plain[3:]
