"""Policy configuration: one frozen dataclass and the per-algorithm defaults.

Owns the knobs of `dynasor_sgl.policy.machine` and their validation (a bad value is a
ValueError naming
it; an unknown key in `from_dict` too). Knows nothing about how decisions are taken.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from dynasor_sgl.plain import from_plain, read_json_object

logger = logging.getLogger(__name__)

SIGNALS = ("entropy", "reward", "consistency", "confidence", "posterior")
ALGORITHMS = ("sc", "cot", "beam", "rebase", "mcts", "bon")
RULES = ("threshold", "posterior")
MAX_MC_SAMPLES = 100_000  # bounds the memory one posterior decision may take
# Bounds `cap` (and so every grant and remaining count): the scheduler's cost math turns knob
# units into float tokens and seconds, and a cap past float range overflowed there. Far above
# any real budget (a CoT cap counts tokens: 2048 by default).
MAX_CAP = 1 << 24
TRIMS = ("none", "minority", "lowest_reward")
Rule = Literal["threshold", "posterior"]
POSTERIOR_EVENTS = ("majority", "full_budget")
PosteriorOf = Literal["majority", "full_budget"]
TrimMode = Literal["none", "minority", "lowest_reward"]
RewardMode = Literal["mean", "max"]


@dataclass(frozen=True)
class PolicyConfig:
    """How one program is allocated. Knob units depend on the algorithm (samples, tokens, ...).

    algorithm: one of ALGORITHMS (informational; defaults come from `for_algorithm`).
    cap: the most knob units the program may ever use (1..MAX_CAP).
    initial: knob units granted before the first report (1..cap).
    pace: knob units granted per non-final decision at the normal pace (≥ 1; the old key
      `step` is read as a deprecated alias, see `current_keys`).
    detect_at: first knob value at which certaindex is read (1..cap).
    detect_every: read again every this many units after a read; 0 = read once (the paper).
    thresholds: signal name -> threshold in [0, 1]; all must pass to stop (SIGNALS).
    rule: "threshold" (the paper) or "posterior" (stop when the majority posterior ≥
      `confidence`; non-entropy thresholds still apply).
    confidence: posterior level for rule="posterior", in (0, 1).
    posterior_of: what the posterior is the probability of. "majority" (Adaptive-Consistency's):
      the leading answer is the most likely answer of all. "full_budget": the leading answer
      still wins the vote after every knob unit left to the cap, the event a label-free
      calibration bounds (`certaindex.full_budget_posterior`).
    mc_samples / seed: Dirichlet Monte-Carlo draws and seed for the posterior (3+ answers).
    reward_mode: "mean" (MCTS) or "max" (REBASE, best-of-N) for the reward signal.
    probe_window: CoT window w (consecutive consistent probe answers).
    stop_when_decided: stop (reason "decided") at any report where the leading answer can no
      longer be overturned within the cap: its class is larger than the runner-up's plus every
      knob unit left (cap − used), so the full budget's majority is already known. It needs no
      threshold and cannot change the program's answer; it reads answers at every report,
      detection point or not. On for self-consistency by default.
    expand_past_readings: whether an expansion (extra knob units granted with slack) may run
      past the next pending detection point. False (the default): it stops there, so an idle
      router still reads at every detection point and a reading that is certain saves what
      follows it; True: an uncertain program on an idle router gets the rest of its cap at
      once (fewer rounds, more tokens: measured in docs/results/sc-expand.md).
    trim: "none", "minority" (drop branches outside a clear leading answer) or
      "lowest_reward" (drop the lowest-reward fraction of branches).
    trim_fraction: minority: least share of the leader; lowest_reward: share dropped. In (0, 1].
    confidence_window: tokens in the sliding group of confidence trimming (DeepConf online,
      `dynasor_sgl.policy.trimming`); 0 = off (the default), DeepConf uses 2048. When > 0 the router
      streams the program's generations with top-k logprobs and cuts a branch whose group
      confidence (mean of −mean top-k logprob over the last `confidence_window` tokens) falls
      below the threshold its warm-up branches set.
    confidence_percentile: η in (0, 100], the share in percent of warm-up branches whose
      lowest group confidence is at or above the threshold: threshold = the (100 − η)-th
      percentile of their lowest group confidences. 10 = DeepConf-low (aggressive), 90 =
      DeepConf-high (conservative, the default); TensorRT-LLM's `confidence_percentile`.
    warmup: finished branches (≥ 1) whose lowest group confidences set the threshold; no
      branch is trimmed before they have finished.
    confidence_topk: top-k logprobs per generated token the confidence is read from (1..20).
    """

    algorithm: str = "sc"
    cap: int = 20
    initial: int = 5
    pace: int = 5
    detect_at: int = 5
    detect_every: int = 0
    thresholds: Mapping[str, float] = field(default_factory=lambda: {"entropy": 0.7})
    rule: Rule = "threshold"
    confidence: float = 0.95
    posterior_of: PosteriorOf = "majority"
    mc_samples: int = 1000
    seed: int = 0
    reward_mode: RewardMode = "mean"
    probe_window: int = 3
    stop_when_decided: bool = False
    expand_past_readings: bool = False
    trim: TrimMode = "none"
    trim_fraction: float = 0.5
    confidence_window: int = 0
    confidence_percentile: float = 90.0
    warmup: int = 4
    confidence_topk: int = 5

    def __post_init__(self) -> None:
        self._check_choice("algorithm", ALGORITHMS)
        self._check_choice("rule", RULES)
        self._check_choice("posterior_of", POSTERIOR_EVENTS)
        self._check_choice("reward_mode", ("mean", "max"))
        self._check_choice("trim", TRIMS)
        for name in ("cap", "initial", "pace", "detect_at", "probe_window", "mc_samples"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {getattr(self, name)!r}")
        if self.cap > MAX_CAP:
            raise ValueError(f"cap must be <= {MAX_CAP}, got {self.cap!r}")
        if self.mc_samples > MAX_MC_SAMPLES:
            raise ValueError(f"mc_samples must be <= {MAX_MC_SAMPLES}, got {self.mc_samples!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {self.seed!r}")
        for name in ("detect_every", "confidence_window"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {getattr(self, name)!r}")
        for name in ("stop_when_decided", "expand_past_readings"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")
        self._check_trimming()
        for name in ("initial", "detect_at"):
            if getattr(self, name) > self.cap:
                raise ValueError(f"{name}={getattr(self, name)!r} exceeds cap={self.cap!r}")
        if not 0.0 < self.confidence < 1.0:
            raise ValueError(f"confidence must be in (0, 1), got {self.confidence!r}")
        if not 0.0 < self.trim_fraction <= 1.0:
            raise ValueError(f"trim_fraction must be in (0, 1], got {self.trim_fraction!r}")
        for key, value in self.thresholds.items():
            if key not in SIGNALS:
                raise ValueError(f"unknown signal {key!r} in thresholds; known: {SIGNALS}")
            if not (isinstance(value, int | float) and 0.0 <= value <= 1.0):
                raise ValueError(f"threshold {key}={value!r} must be in [0, 1]")
        object.__setattr__(self, "thresholds", MappingProxyType(dict(self.thresholds)))

    def _check_trimming(self) -> None:
        """The confidence-trimming keys (`confidence_window` is checked with the counts)."""
        if not isinstance(self.warmup, int) or self.warmup < 1:
            raise ValueError(f"warmup must be an integer >= 1, got {self.warmup!r}")
        if not isinstance(self.confidence_topk, int) or not 1 <= self.confidence_topk <= 20:
            raise ValueError(
                f"confidence_topk must be an integer in 1..20, got {self.confidence_topk!r}"
            )
        if not (
            isinstance(self.confidence_percentile, int | float)
            and not isinstance(self.confidence_percentile, bool)
            and 0.0 < self.confidence_percentile <= 100.0
        ):
            raise ValueError(
                f"confidence_percentile must be in (0, 100], got {self.confidence_percentile!r}"
            )

    def _check_choice(self, name: str, choices: tuple[str, ...]) -> None:
        if getattr(self, name) not in choices:
            raise ValueError(f"{name} must be one of {choices}, got {getattr(self, name)!r}")

    @classmethod
    def for_algorithm(cls, algorithm: str, **overrides: Any) -> PolicyConfig:
        """The defaults for `algorithm` (see DEFAULTS) with `overrides` applied.

        A `cap` below the defaults' `initial` or `detect_at` pulls those down to the cap
        (unless they are overridden too, which is then checked as given).
        """
        if algorithm not in DEFAULTS:
            raise ValueError(f"algorithm must be one of {tuple(DEFAULTS)}, got {algorithm!r}")
        overrides = current_keys(overrides)
        data = {**DEFAULTS[algorithm], **overrides}
        cap = overrides.get("cap")
        if isinstance(cap, int) and cap >= 1:
            for name in ("initial", "detect_at"):
                if name not in overrides and data[name] > cap:
                    data[name] = cap
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PolicyConfig:
        """A config from plain data (e.g. JSON); unknown keys are a ValueError, a deprecated
        key (see `current_keys`) is read under its new name."""
        return from_plain(cls, current_keys(data), "policy config")

    def to_dict(self) -> dict[str, Any]:
        """Plain data that `from_dict` accepts."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["thresholds"] = dict(self.thresholds)
        return data


# Keys a policy used to have -> their name now. Read on input with a warning, never written.
DEPRECATED_KEYS = MappingProxyType({"step": "pace"})


def current_keys(data: Mapping[str, Any]) -> dict[str, Any]:
    """`data` with each deprecated policy key renamed (one warning line per key met); a key
    given under both names is a ValueError."""
    out = dict(data)
    for old, new in DEPRECATED_KEYS.items():
        if old not in out:
            continue
        if new in out:
            raise ValueError(f"policy key {old!r} is the old name of {new!r}; give only {new!r}")
        logger.warning("policy key %r is deprecated; use %r", old, new)
        out[new] = out.pop(old)
    return out


# Paper Table 3 / §4.1 where it gives a number; beam and best-of-N are our own starting points.
DEFAULTS: dict[str, dict[str, Any]] = {
    # SC (MATH, GSM8K): read at 5 samples, stop if entropy certaindex >= 0.7; online cap 20.
    "sc": {
        "algorithm": "sc",
        "cap": 20,
        "initial": 5,
        "pace": 5,
        "detect_at": 5,
        # Read again after every batch of 5 (the paper reads once): measured on 100 held-out
        # add1 questions (docs/results/sc-add1), sequential reading saves more at the same
        # accuracy; batches of 5 keep samples in parallel (the paper's Table 4 latency warning).
        "detect_every": 5,
        "thresholds": {"entropy": 0.7},
        # Zero-risk: stops only once the cap's majority is known (docs/results/sc-decided.md).
        "stop_when_decided": True,
    },
    # MCTS (ASDiv): mean reward >= 0.4 at 3 iterations; online cap 15.
    "mcts": {
        "algorithm": "mcts",
        "cap": 15,
        "initial": 3,
        "pace": 1,
        "detect_at": 3,
        "thresholds": {"reward": 0.4},
        "reward_mode": "mean",
    },
    # REBASE (MATH): entropy >= 0.75 at width 16; online cap 128.
    "rebase": {
        "algorithm": "rebase",
        "cap": 128,
        "initial": 16,
        "pace": 16,
        "detect_at": 16,
        "thresholds": {"entropy": 0.75},
        "reward_mode": "max",
    },
    # CoT: probe every 64 tokens, exit when the last 3 probe answers agree (repo "mid" effort).
    "cot": {
        "algorithm": "cot",
        "cap": 2048,
        "initial": 64,
        "pace": 64,
        "detect_at": 64,
        "detect_every": 64,
        "thresholds": {"consistency": 1.0},
        "probe_window": 3,
    },
    # Beam: knob = node expansions (width 4); read from 3 levels deep, best path reward.
    "beam": {
        "algorithm": "beam",
        "cap": 40,
        "initial": 4,
        "pace": 4,
        "detect_at": 12,
        "detect_every": 4,
        "thresholds": {"reward": 0.8},
        "reward_mode": "max",
        "trim": "lowest_reward",
    },
    # Best-of-N: batches of 4 up to 16, stop once the best reward is near-certain.
    "bon": {
        "algorithm": "bon",
        "cap": 16,
        "initial": 4,
        "pace": 4,
        "detect_at": 4,
        "detect_every": 4,
        "thresholds": {"reward": 0.9},
        "reward_mode": "max",
    },
}


def load_policy_file(path: str | Path) -> dict[str, dict[str, Any]]:
    """A policy file: a JSON object mapping algorithm -> PolicyConfig overrides.

    Example: {"sc": {"detect_at": 4, "thresholds": {"entropy": 0.6}}}. Deprecated keys come
    back under their new names (`current_keys`). Each entry is checked
    against that algorithm's defaults; an unreadable file, bad JSON, an unknown algorithm or a
    bad value raises ValueError naming the file and the entry.
    """
    data = read_json_object(path, "policy file")
    out: dict[str, dict[str, Any]] = {}
    for algorithm, overrides in data.items():
        if not isinstance(overrides, dict):
            raise ValueError(f"policy file {path}: {algorithm!r} must map to an object")
        try:
            out[algorithm] = current_keys(overrides)
            PolicyConfig.for_algorithm(algorithm, **out[algorithm])
        except (ValueError, TypeError) as exc:
            raise ValueError(f"policy file {path}: {algorithm}: {exc}") from exc
    return out
