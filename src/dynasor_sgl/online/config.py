"""`BenchConfig`: what one `dynasor-sgl bench online` run measures, with every default here.

The default workload is one where Certaindex has something to act on: self-consistency on
`synth:add1` with 48-token samples (the length the recorded add1 runs reason in; one sample
is right 37% of the time, the vote of 20 77%: docs/results/sc.md), cap 10, the policy `run`
gives the embedded model (`--preset cpu`; the CLI applies it). The rates are sized for the
embedded SmolLM2-135M on a 2-core CPU, where one worker serves roughly 0.2 such programs/s: 30
programs per run at 0.1, 0.2 and 0.4 programs/s (under, near and over that capacity).
`quick()` is the smoke run. Each figure is noisy on a machine whose speed drifts, so `repeat`
runs every system that many times, interleaved (see `online.repeats`). On a GPU deployment
pass your own rates, dataset and knobs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dynasor_sgl.online.mixes import SINGLE, WORKLOADS, Part
from dynasor_sgl.online.systems import DEFAULT_SYSTEMS, SYSTEMS
from dynasor_sgl.policy.config import current_keys

# The smoke run: 4 programs at 2 rates, cap 8 (certaindex still reads at 5 samples and can stop
# 3 short of the cap), 2 programs for the base deadline, and the three systems of the headline
# comparison (SGLang alone, the best order without certaindex, dynasor): with all nine, one
# repeat was 18 runs of about a minute each, and `--repeat 2` could not finish in 15 minutes.
QUICK: Mapping[str, Any] = {
    "programs": 4,
    "rates": (0.2, 0.4),
    "cap": 8,
    "calibration_programs": 2,
    "systems": ("sglang", "autellix", "dynasor"),
}


@dataclass(frozen=True)
class BenchConfig:
    """One online benchmark.

    out: the output folder (results.jsonl, summary.json, summary.md, PNGs, logs/).
    workload: "single" (the program below) or a named mix of `online.mixes.MIXES` (its
        parts fix their own program, dataset, cap and parameters).
    program / dataset / seed: the program (a registered name or `module:ATTRIBUTE`) and its
        questions (`load_dataset` spec; built-in tasks are generated with `seed`, which also
        seeds the arrivals).
    programs: programs per run (one run = one system at one rate in one repeat).
    repeat: how many times every (system, rate) runs, interleaved across systems.
    rates: arrival rates in programs/s. systems: names from `online.systems.SYSTEMS`.
    slo_scale: the SLO scale of the figure of merit (and of the deadline told to the router).
    fixed_rate: the rate of the attainment-vs-SLO-scale view (None: the middle rate).
    cap / max_tokens: the program's knob cap and tokens per generation (if it has that
        parameter). params / policy: more program parameters and PolicyConfig overrides.
    difficulty: a `dynasor-sgl eval` results file giving each question's difficulty.
    base_deadline: the base deadline in s; None measures it (median latency of
        `calibration_programs` programs run one at a time on the dynasor system at cap).
    worker_url: an existing SGLang worker for every system; None starts the bench's own.
    max_inflight: the routers' `--max-inflight-per-worker` (None: the router's default).
    model_path: the model of the bench's own workers (None: the embedded model).
    """

    out: Path
    workload: str = SINGLE
    program: str = "self-consistency"
    dataset: str = "synth:add1"
    seed: int = 0
    programs: int = 30
    repeat: int = 1
    rates: tuple[float, ...] = (0.1, 0.2, 0.4)
    systems: tuple[str, ...] = DEFAULT_SYSTEMS
    slo_scale: float = 2.0
    fixed_rate: float | None = None
    cap: int = 10
    max_tokens: int = 48
    params: Mapping[str, Any] = field(default_factory=dict)
    policy: Mapping[str, Any] = field(default_factory=dict)
    difficulty: str | None = None
    base_deadline: float | None = None
    calibration_programs: int = 3
    worker_url: str | None = None
    max_inflight: int | None = None
    model_path: str | None = None

    def __post_init__(self) -> None:
        for name in ("programs", "repeat", "cap", "max_tokens", "calibration_programs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.rates or any(r <= 0 for r in self.rates):
            raise ValueError(f"rates must be positive numbers, got {self.rates}")
        if self.slo_scale <= 0:
            raise ValueError(f"slo_scale must be > 0, got {self.slo_scale}")
        if self.base_deadline is not None and self.base_deadline <= 0:
            raise ValueError(f"base_deadline must be > 0, got {self.base_deadline}")
        if self.max_inflight is not None and self.max_inflight < 1:
            raise ValueError(f"max_inflight must be >= 1, got {self.max_inflight}")
        if self.workload not in WORKLOADS:
            raise ValueError(
                f"unknown workload {self.workload!r}; choose from {', '.join(WORKLOADS)}"
            )
        unknown = [s for s in self.systems if s not in SYSTEMS]
        if unknown or not self.systems:
            raise ValueError(
                f"unknown system(s) {unknown or '(none)'}; choose from {', '.join(SYSTEMS)}"
            )
        if self.worker_url is not None and not self.worker_url.startswith(("http://", "https://")):
            raise ValueError(
                f"worker URL must start with http:// or https://, got {self.worker_url!r}"
            )

    @classmethod
    def quick(cls, **overrides: Any) -> BenchConfig:
        """The smoke-run defaults (`QUICK`), with `overrides` on top."""
        return cls(**{**QUICK, **overrides})

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {
            f.name: f.default
            for f in dataclasses.fields(cls)
            if f.default is not dataclasses.MISSING
        }

    def user_policy(self) -> dict[str, Any]:
        """The PolicyConfig overrides every system starts from (its own go on top)."""
        return {"cap": self.cap, **current_keys(self.policy)}

    def single_part(self, params: Mapping[str, Any]) -> Part:
        """The one part of the "single" workload, with the program's parameters `params`."""
        return Part(self.program, self.program, self.dataset, self.cap, params, self.user_policy())

    def settings(self) -> dict[str, Any]:
        """What must match for a results folder to be resumed (not the rates or systems:
        adding one later runs just the new runs)."""
        keys = (
            "program",
            "dataset",
            "seed",
            "programs",
            "slo_scale",
            "cap",
            "max_tokens",
            "difficulty",
            "base_deadline",
            "calibration_programs",
            "max_inflight",
            "model_path",
        )
        data = {k: getattr(self, k) for k in keys}
        if self.workload != SINGLE:  # kept out otherwise: older folders stay resumable
            data["workload"] = self.workload
        return {**data, "params": dict(self.params), "policy": dict(self.policy)}
