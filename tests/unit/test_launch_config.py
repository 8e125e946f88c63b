"""LaunchConfig validation, port planning and worker command lines (no processes started)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from dynasor_sgl.launch.cluster import LaunchError, plan_ports
from dynasor_sgl.launch.config import CPU_MAX_TOTAL_TOKENS, LaunchConfig
from dynasor_sgl.launch.worker import (
    free_ports,
    port_is_free,
    router_command,
    worker_command,
    worker_env,
)
from dynasor_sgl.router.config import RouterConfig
from dynasor_sgl.scheduling.limiter import LimiterConfig


def launch_with(**router: object) -> LaunchConfig:
    """A launch whose router has these settings."""
    return LaunchConfig(router_config=RouterConfig(**router))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("workers", 0, "workers must be between 1 and 64, got 0"),
        ("port", 70000, "port must be between 1 and 65535, got 70000"),
        ("max_total_tokens", 10, "max_total_tokens must be at least 256, got 10"),
        ("device", "tpu", "device must be one of auto, cpu, cuda, got 'tpu'"),
        ("log_level", "loud", "got 'loud'"),
        ("startup_timeout", 0, "startup_timeout must be positive"),
        ("host", "", "host must not be empty"),
    ],
)
def test_bad_values_name_themselves(field: str, value: object, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        LaunchConfig(**{field: value})  # type: ignore[arg-type]


@pytest.mark.parametrize("arg", ["--port", "--model-path=/x", "--host"])
def test_reserved_sglang_flags_are_refused(arg: str) -> None:
    with pytest.raises(ValueError, match="is set by dynasor-sgl"):
        LaunchConfig(sglang_args=(arg,))


def test_from_dict_rejects_unknown_keys() -> None:
    with pytest.raises(ValueError, match="unknown launch option\\(s\\): colour"):
        LaunchConfig.from_dict({"workers": 2, "colour": "red"})
    cfg = LaunchConfig.from_dict({"workers": 2, "sglang_args": ["--foo", "1"]})
    assert cfg.workers == 2 and cfg.sglang_args == ("--foo", "1")


def test_defaults_are_safe() -> None:
    cfg = LaunchConfig()
    assert cfg.host == "127.0.0.1"
    assert cfg.kv_tokens("cpu") == CPU_MAX_TOTAL_TOKENS  # never SGLang's RAM-sized default
    assert cfg.kv_tokens("cuda") is None
    assert LaunchConfig(max_total_tokens=4096).kv_tokens("cuda") == 4096


def test_cpu_worker_command() -> None:
    cfg = LaunchConfig(sglang_args=("--schedule-policy", "fcfs"))
    cmd = worker_command(cfg, Path("/m"), "127.0.0.1", 31234, "cpu")
    assert cmd[1:3] == ["-m", "sglang.launch_server"]
    joined = " ".join(cmd)
    for part in (
        "--model-path /m",
        "--port 31234",
        "--device cpu",
        "--attention-backend torch_native",
        f"--max-total-tokens {CPU_MAX_TOTAL_TOKENS}",
        "--grammar-backend llguidance",
        "--sleep-on-idle",
        "--enable-priority-scheduling",
        "--radix-eviction-policy priority",
    ):
        assert part in joined
    assert cmd[-2:] == ["--schedule-policy", "fcfs"]
    env = worker_env("cpu")
    assert env["SGLANG_USE_CPU_ENGINE"] == "1"
    assert env["SGLANG_ENABLE_HEALTH_ENDPOINT_GENERATION"] == "false"


@pytest.mark.parametrize("args", [("--schedule-policy", "lpm"), ("--schedule-policy=dfs-weight",)])
def test_lpm_workers_run_without_priority_and_the_router_sends_none(args: tuple[str, ...]) -> None:
    # SGLang asserts fcfs or lof when priority scheduling is on: lpm used to fail at start-up.
    cfg = LaunchConfig(sglang_args=args)
    assert not cfg.worker_priority
    cmd = worker_command(cfg, Path("/m"), "127.0.0.1", 1, "cpu")
    assert "--enable-priority-scheduling" not in cmd and cmd[-len(args) :] == list(args)
    assert "--radix-eviction-policy" not in cmd
    router = router_command(cfg, 2, ["http://127.0.0.1:1"])
    assert "--no-worker-priority" in router and "--worker-priority" not in router


def test_router_command_carries_the_scheduler_settings() -> None:
    cfg = launch_with(
        scheduling="deadline",
        deadline_stop=True,
        aging_rate=8.0,
        starvation_bound_s=30.0,
        program_ttl_s=60.0,
        max_inflight_per_worker=4,
        inflight_limit="fixed",
        inflight_limit_min=2,
        inflight_limit_max=99,
    )
    joined = " ".join(router_command(cfg, 2, ["http://127.0.0.1:1"]))
    for part in (
        "--scheduling deadline",
        "--deadline-stop",
        "--aging-rate 8.0",
        "--starvation-bound-s 30.0",
        "--program-ttl-s 60.0",
        "--max-inflight-per-worker 4",
        "--inflight-limit fixed",
        "--inflight-limit-min 2",
        "--inflight-limit-max 99",
        "--worker-priority",
    ):
        assert part in joined
    with pytest.raises(ValueError, match="starvation_bound_s"):
        launch_with(starvation_bound_s=0)
    with pytest.raises(ValueError, match="inflight_limit"):
        launch_with(inflight_limit="sometimes")
    with pytest.raises(ValueError, match="inflight_limit_max"):
        launch_with(inflight_limit_min=8, inflight_limit_max=4)
    with pytest.raises(ValueError, match="worker_urls must be empty"):
        LaunchConfig(router_config=RouterConfig(worker_urls=("http://127.0.0.1:1",)))


def test_without_router_workers_skip_priority_scheduling() -> None:
    cmd = worker_command(LaunchConfig(router=False), Path("/m"), "127.0.0.1", 1, "cpu")
    assert "--enable-priority-scheduling" not in cmd and "--sleep-on-idle" in cmd


def test_cuda_worker_command_uses_sglang_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SGLANG_USE_CPU_ENGINE", raising=False)
    cmd = worker_command(LaunchConfig(), Path("/m"), "127.0.0.1", 1, "cuda")
    assert "--device" not in cmd and "--max-total-tokens" not in cmd
    assert "SGLANG_USE_CPU_ENGINE" not in worker_env("cuda")


def test_port_checks() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert not port_is_free("127.0.0.1", port)
        with pytest.raises(LaunchError, match=f"port {port} on 127.0.0.1 is already in use"):
            plan_ports(LaunchConfig(port=port))
        # The next free ports skip the busy one and anything excluded.
        ports = free_ports("127.0.0.1", port, 2, exclude={port + 1})
        assert port not in ports and port + 1 not in ports and len(ports) == 2
    assert port_is_free("127.0.0.1", port)


def test_plan_ports_puts_user_port_first() -> None:
    start = free_ports("127.0.0.1", 39000, 1)[0]
    # With the router: the router takes the user port and each worker one above it.
    ports = plan_ports(LaunchConfig(port=start, workers=3))
    assert ports[0] == start and len(set(ports)) == 4 and all(p > start for p in ports[1:])
    # SGLang alone: the first worker takes the user port.
    ports = plan_ports(LaunchConfig(port=start, workers=3, router=False))
    assert ports[0] == start and len(set(ports)) == 3


def test_an_auto_inflight_limit_follows_the_device() -> None:
    def limit_flags(cfg: LaunchConfig, device: str) -> tuple[str, ...]:
        cmd = router_command(cfg, 2, ["http://127.0.0.1:1"], device)
        flags = ("--inflight-limit", "--max-inflight-per-worker", "--inflight-limit-max")
        return tuple(cmd[cmd.index(flag) + 1] for flag in flags)

    # the default is auto: a GPU worker gets the adaptive limit from the GPU's defaults, the
    # CPU worker the fixed bound it measured best
    assert LaunchConfig().router_config.inflight_limit == "auto"
    assert limit_flags(LaunchConfig(), "cuda") == ("adaptive", "128", "1024")
    assert limit_flags(LaunchConfig(), "cpu") == ("fixed", "12", "64")
    # a limit the user chose is kept on either device
    chosen = launch_with(inflight_limit="fixed", max_inflight_per_worker=32)
    assert limit_flags(chosen, "cuda") == ("fixed", "32", "64")
    # a router started alone cannot see its workers' device: auto keeps the fixed bound
    alone = RouterConfig(worker_urls=("http://127.0.0.1:1",))
    assert alone.limiter() == LimiterConfig.fixed(12)
    assert alone.for_device(None) == alone.for_device("cpu") != alone.for_device("cuda")
