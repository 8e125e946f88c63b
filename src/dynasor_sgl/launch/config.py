"""Launch configuration: one frozen dataclass, the single place for defaults.

The CLI takes its option defaults from here; tests and the bench build it directly. It knows
what a launch needs, not how processes are started (that is `worker` and `launch`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from dynasor_sgl.policy.config import load_policy_file
from dynasor_sgl.protocol import DEFAULT_PORT
from dynasor_sgl.router.calibration_file import load_book
from dynasor_sgl.router.config import SCHEDULING, RouterConfig
from dynasor_sgl.router.effort import check_effort

DEVICES = ("auto", "cpu", "cuda")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
# ~23 KB of KV per token for the embedded model: 65,536 tokens is about 1.4 GB. Without a bound
# SGLang sizes the CPU KV pool from free RAM (15 GB here).
CPU_MAX_TOTAL_TOKENS = 65536
# Flags we set ourselves; passing them again through extra args would be ambiguous.
_RESERVED_SGLANG_FLAGS = ("--model-path", "--host", "--port", "--device")


@dataclass(frozen=True)
class LaunchConfig:
    """What `dynasor-sgl launch` starts.

    model_path: a Hugging Face model folder; None serves the embedded SmolLM2-135M-Instruct.
    workers: how many SGLang worker processes to start (each loads the model).
    host: the address users talk to; 127.0.0.1 unless you mean to expose it.
    port: the one port users talk to (the first worker's; the router's once it exists).
        Other workers take the next free ports above it.
    max_total_tokens: KV-cache size per worker in tokens. None: 65,536 on CPU, SGLang's own
        sizing from GPU memory on CUDA.
    device: "cpu", "cuda", or "auto" (CUDA when torch sees a GPU).
    log_level: log level for dynasor-sgl and the workers.
    grammar_backend: SGLang's constrained-decoding backend. xgrammar (SGLang's default) kills
        the CPU worker on the first regex/json_schema request; llguidance works on CPU.
    router: start the Dynasor router on `port` in front of the workers (default). Without it
        the first worker takes `port` and users talk to SGLang directly.
    scheduling, inflight_limit, max_inflight_per_worker, inflight_limit_min,
        inflight_limit_max, aging_rate, starvation_bound_s, deadline_stop, program_ttl_s: the
        router's settings (see `dynasor_sgl.router.config.RouterConfig`).
    default_effort: the router's early exit for OpenAI chats that ask for none (None: off).
    api_key: when set, the router requires `Authorization: Bearer <api_key>` on every route.
    policy_file: a JSON policy file (algorithm -> PolicyConfig overrides) the router applies
        to every program, e.g. from `dynasor-sgl calibrate`.
    explore, calibration_file, calibration_epsilon, calibration_delta: the router's
        self-calibration (see `RouterConfig`).
    startup_timeout: seconds to wait for each worker to become healthy.
    log_dir: where worker logs go; None picks a fresh folder under the user cache.
    step_trace: a file every worker's scheduler appends a line to for each step it runs
        (`dynasor_sgl.launch.steptrace`: what ran, how long it took), for fitting the simulator's
        step model; None: no trace.
    sglang_args: extra arguments passed verbatim to every `sglang.launch_server`.
    """

    model_path: str | None = None
    workers: int = 1
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    max_total_tokens: int | None = None
    device: str = "auto"
    log_level: str = "info"
    grammar_backend: str = "llguidance"
    router: bool = True
    scheduling: str = RouterConfig.scheduling
    inflight_limit: str = RouterConfig.inflight_limit
    max_inflight_per_worker: int = RouterConfig.max_inflight_per_worker
    inflight_limit_min: int = RouterConfig.inflight_limit_min
    inflight_limit_max: int = RouterConfig.inflight_limit_max
    aging_rate: float = RouterConfig.aging_rate
    starvation_bound_s: float = RouterConfig.starvation_bound_s
    deadline_stop: bool = RouterConfig.deadline_stop
    program_ttl_s: float = RouterConfig.program_ttl_s
    default_effort: str | None = RouterConfig.default_effort
    api_key: str | None = None
    policy_file: str | None = None
    explore: float = RouterConfig.explore
    calibration_file: str | None = None
    calibration_epsilon: float = RouterConfig.calibration_epsilon
    calibration_delta: float = RouterConfig.calibration_delta
    startup_timeout: float = 600.0
    log_dir: str | None = None
    step_trace: str | None = None
    sglang_args: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if not 1 <= self.workers <= 64:
            raise ValueError(f"workers must be between 1 and 64, got {self.workers}")
        if not 1 <= self.port <= 65535:
            raise ValueError(f"port must be between 1 and 65535, got {self.port}")
        if self.max_total_tokens is not None and self.max_total_tokens < 256:
            raise ValueError(f"max_total_tokens must be at least 256, got {self.max_total_tokens}")
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {self.device!r}")
        if self.log_level not in LOG_LEVELS:
            raise ValueError(
                f"log_level must be one of {', '.join(LOG_LEVELS)}, got {self.log_level!r}"
            )
        if self.policy_file is not None:
            load_policy_file(self.policy_file)  # a bad file fails here, not in the router
        if self.scheduling not in SCHEDULING:
            raise ValueError(f"scheduling must be one of {SCHEDULING}, got {self.scheduling!r}")
        self._check_calibration()
        if self.max_inflight_per_worker < 1:
            raise ValueError(
                f"max_inflight_per_worker must be >= 1, got {self.max_inflight_per_worker}"
            )
        if self.router:  # the router's own check, so a bad limit fails before any worker starts
            RouterConfig(
                worker_urls=("http://127.0.0.1:1",),
                inflight_limit=self.inflight_limit,
                inflight_limit_min=self.inflight_limit_min,
                inflight_limit_max=self.inflight_limit_max,
            )
        for name in ("aging_rate", "starvation_bound_s", "program_ttl_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.default_effort is not None:
            check_effort(self.default_effort)
        if self.startup_timeout <= 0:
            raise ValueError(f"startup_timeout must be positive, got {self.startup_timeout}")
        if not self.host:
            raise ValueError("host must not be empty")
        for arg in self.sglang_args:
            flag = arg.split("=", 1)[0]
            if flag in _RESERVED_SGLANG_FLAGS:
                raise ValueError(f"{flag} is set by dynasor-sgl; use its own option instead")

    def _check_calibration(self) -> None:
        """The router's self-calibration settings, and its file when it exists (a bad one
        fails here, not in the router)."""
        router = RouterConfig(
            worker_urls=("http://127.0.0.1",),
            explore=self.explore,
            calibration_file=self.calibration_file,
            calibration_epsilon=self.calibration_epsilon,
            calibration_delta=self.calibration_delta,
        )
        load_book(self.calibration_file, router.calibration_settings())

    @property
    def schedule_policy(self) -> str | None:
        """The `--schedule-policy` passed through to SGLang, if any."""
        args = list(self.sglang_args)
        for i, arg in enumerate(args):
            if arg == "--schedule-policy" and i + 1 < len(args):
                return args[i + 1]
            if arg.startswith("--schedule-policy="):
                return arg.split("=", 1)[1]
        return None

    @property
    def worker_priority(self) -> bool:
        """Whether workers run SGLang's priority scheduling for the router's priorities.
        SGLang allows it only with its fcfs and lof queue policies; with another (lpm,
        dfs-weight, random) the router still orders its own queue but sends no priority."""
        return self.router and self.schedule_policy in (None, "fcfs", "lof")

    def kv_tokens(self, device: str) -> int | None:
        """The --max-total-tokens to pass for a resolved device (None: let SGLang size it)."""
        if self.max_total_tokens is not None:
            return self.max_total_tokens
        return CPU_MAX_TOTAL_TOKENS if device == "cpu" else None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LaunchConfig:
        """Build from a mapping; unknown keys are an error, not silently dropped."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown launch option(s): {', '.join(unknown)}")
        if "sglang_args" in data:
            data = {**data, "sglang_args": tuple(data["sglang_args"])}
        return cls(**data)
