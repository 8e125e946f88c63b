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
from dynasor_sgl.router.config import RouterConfig

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
    router_config: the router's settings (`dynasor_sgl.router.config.RouterConfig`: its
        scheduling order, in-flight limit, deadline stop, API key, self-calibration, ...).
        Launch fills in what it owns: the workers it starts (so `worker_urls` stays empty),
        `host` and `port` (the router takes launch's), per-request priority (`worker_priority`,
        below) and the policy defaults (read from `policy_file`).
    policy_file: a JSON policy file (algorithm -> PolicyConfig overrides) the router applies
        to every program, e.g. from `dynasor-sgl calibrate`.
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
    router_config: RouterConfig = field(default_factory=RouterConfig)
    policy_file: str | None = None
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
        # The router's own settings were checked when its RouterConfig was built.
        if self.router_config.worker_urls:
            raise ValueError("router_config.worker_urls must be empty: launch starts the workers")
        settings = self.router_config  # a bad calibration file fails here, not in the router
        load_book(settings.calibration_file, settings.calibration_settings())
        if self.startup_timeout <= 0:
            raise ValueError(f"startup_timeout must be positive, got {self.startup_timeout}")
        if not self.host:
            raise ValueError("host must not be empty")
        for arg in self.sglang_args:
            flag = arg.split("=", 1)[0]
            if flag in _RESERVED_SGLANG_FLAGS:
                raise ValueError(f"{flag} is set by dynasor-sgl; use its own option instead")

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
        if isinstance(data.get("router_config"), dict):
            data = {**data, "router_config": RouterConfig(**data["router_config"])}
        return cls(**data)
