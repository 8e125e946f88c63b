"""The allocation policy: one pure state machine per reasoning program.

A program's knob (SC: samples; REBASE: width; MCTS: iterations; beam: expansions; CoT: tokens)
runs from an initial grant up to a cap. At each report the policy reads certaindex (at the
detection point, and every `detect_every` knob units after it if set) and decides: continue,
stop (certain, or at the cap), trim branches, or expand (only with slack, never past the cap, and
by default never past the next pending reading).
Defaults come from the Dynasor paper's Table 3 (see `DEFAULTS`). This module owns the decision
and its bookkeeping; it knows nothing about HTTP, SGLang, threads or time (configuration lives
in `dynasor_sgl.policy.config`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from dynasor_sgl.answers import equivalence as _answers
from dynasor_sgl.policy import certaindex as ci
from dynasor_sgl.policy.config import DEFAULTS, PolicyConfig

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULTS",
    "EARLY_STOPS",
    "Action",
    "Decision",
    "PolicyConfig",
    "ProgramPolicy",
    "Report",
    "StopReason",
]


class Action(StrEnum):
    CONTINUE = "continue"
    STOP = "stop"
    TRIM = "trim"
    EXPAND = "expand"


class StopReason(StrEnum):
    THRESHOLD = "threshold"  # all thresholded signals passed
    POSTERIOR = "posterior"  # the majority-posterior rule passed
    DECIDED = "decided"  # the leading answer can no longer be overturned within the cap
    CAP = "cap"  # the knob reached its cap
    DEADLINE = "deadline"  # its next grant could not end by the program's deadline


# The policy's early stops on what certaindex read (the answers settled), as opposed to the cap
# and the router's deadline stop.
EARLY_STOPS = frozenset({StopReason.THRESHOLD, StopReason.POSTERIOR, StopReason.DECIDED})


@dataclass(frozen=True)
class Report:
    """What a program tells the policy after running part of its grant.

    used: knob units used so far (≥ 0). answers / rewards: per branch id, the extracted final
    answer (None if none) and the normalized reward in [0, 1]. probe_answers / probe_texts: CoT
    probe answers and raw probe responses, oldest first. top_logprobs: per generated token, its
    top-k logprobs. values: signals the program computed itself (they win over recomputation).
    slack: knob units the system can take on top of the normal pace now (0 = no capacity).
    """

    used: int
    answers: Mapping[str, str | None] = field(default_factory=dict)
    rewards: Mapping[str, float] = field(default_factory=dict)
    probe_answers: Sequence[str | None] = ()
    probe_texts: Sequence[str | None] = ()
    top_logprobs: Sequence[Sequence[float]] = ()
    values: Mapping[str, float] = field(default_factory=dict)
    slack: int = 0
    clusters: Sequence[Sequence[str]] | None = None

    def __post_init__(self) -> None:
        if self.used < 0:
            raise ValueError(f"used must be >= 0, got {self.used!r}")
        if self.slack < 0:
            raise ValueError(f"slack must be >= 0, got {self.slack!r}")


@dataclass(frozen=True)
class Decision:
    """The policy's answer to a report.

    action: STOP, or else TRIM if `trim` is non-empty, EXPAND if `expand` > 0, else CONTINUE.
    grant: knob units the program may use before its next report (0 when stopping); it already
    includes `expand`, the part beyond the normal pace. trim: branch ids to drop. reason: why
    it stopped. values: the signals read at this report (empty between detection points).
    """

    action: Action
    grant: int = 0
    expand: int = 0
    trim: tuple[str, ...] = ()
    reason: StopReason | None = None
    values: Mapping[str, float] = field(default_factory=dict)


class ProgramPolicy:
    """The decision state of one program. Not thread-safe; the router serializes per program."""

    def __init__(self, config: PolicyConfig | None = None) -> None:
        self.config = config or PolicyConfig()
        self.initial_grant = min(self.config.initial, self.config.cap)
        self._next_detect: float = self.config.detect_at
        self._read_once = False
        self._stop: Decision | None = None
        self.history: list[tuple[int, Mapping[str, float]]] = []
        self._uses_answers = (
            self.config.rule == "posterior"
            or self.config.trim == "minority"
            or "entropy" in self.config.thresholds
            or self.config.stop_when_decided
        )

    @property
    def stopped(self) -> bool:
        return self._stop is not None

    def decide(self, report: Report) -> Decision:
        """The decision for `report`. Once stopped, always the same stop decision."""
        if self._stop is not None:
            return self._stop
        cfg = self.config
        clusters = self._clusters(report) if self._uses_answers and report.answers else []
        values: Mapping[str, float] = {}
        if report.used >= self._next_detect:
            values = self._signals(report, clusters)
            # A detection point is used up only once every thresholded signal had data (e.g.
            # MCTS before any solution finished has no reward yet): read again next report.
            if all(name in values for name in self._needed()):
                self.history.append((report.used, values))
                self._read_once = True
                self._next_detect = (
                    report.used + cfg.detect_every if cfg.detect_every else float("inf")
                )
                reason = self._certain(values)
                if reason is not None:
                    return self._stop_with(reason, values)
        if report.used >= cfg.cap:
            return self._stop_with(StopReason.CAP, values)
        if cfg.stop_when_decided and decided(clusters, cfg.cap - report.used):
            return self._stop_with(StopReason.DECIDED, values)
        # With no detection point left and nothing to trim, rounds decide nothing and only add
        # latency: grant the rest at once.
        rounds = self._next_detect != float("inf") or cfg.trim != "none"
        pace = cfg.pace if rounds else cfg.cap
        base = min(pace, cfg.cap - report.used)
        expand = 0
        if self._read_once and report.slack > 0:
            # By default a grant ends at the next pending reading (the cap if none): past it,
            # it would spend the units that reading could save.
            end = cfg.cap if cfg.expand_past_readings else min(cfg.cap, self._next_detect)
            expand = max(0, min(report.slack, int(end) - report.used - base))
        trim = self._trim(report, clusters)
        action = Action.TRIM if trim else Action.EXPAND if expand else Action.CONTINUE
        return Decision(action, grant=base + expand, expand=expand, trim=trim, values=values)

    def _stop_with(self, reason: StopReason, values: Mapping[str, float]) -> Decision:
        self._stop = Decision(Action.STOP, reason=reason, values=values)
        return self._stop

    def _clusters(self, report: Report) -> list[list[str]]:
        if report.clusters is not None:
            given = [sorted(g) for g in report.clusters if g]
            return sorted(given, key=lambda g: (-len(g), g[0]))
        ids = sorted(report.answers)
        groups = _answers.cluster([report.answers[i] for i in ids])
        return [[ids[j] for j in group] for group in groups]

    def _needed(self) -> set[str]:
        """The signals a stop decision reads (under the posterior rule, entropy is replaced)."""
        cfg = self.config
        if cfg.rule == "posterior":
            return (set(cfg.thresholds) - {"entropy"}) | {"posterior"}
        return set(cfg.thresholds)

    def _signals(self, report: Report, clusters: list[list[str]]) -> dict[str, float]:
        """Each needed signal that the report has data for; precomputed values win."""
        cfg = self.config
        needed = set(cfg.thresholds) | ({"posterior"} if cfg.rule == "posterior" else set())
        values: dict[str, float] = {}
        sizes = [len(g) for g in clusters]
        if "entropy" in needed and report.answers:
            values["entropy"] = ci.entropy_certaindex_from_sizes(sizes)
        if "posterior" in needed and report.answers:
            if cfg.posterior_of == "full_budget":
                left = max(0, cfg.cap - report.used)
                values["posterior"] = ci.full_budget_posterior(
                    sizes, left, cfg.mc_samples, cfg.seed
                )
            else:
                values["posterior"] = ci.majority_posterior(sizes, cfg.mc_samples, cfg.seed)
        if "reward" in needed and report.rewards:
            values["reward"] = ci.reward_certaindex(list(report.rewards.values()), cfg.reward_mode)
        if "consistency" in needed and report.probe_answers:
            texts = report.probe_texts or None
            values["consistency"] = ci.probe_consistency(
                report.probe_answers, texts, cfg.probe_window
            )
        if "confidence" in needed and report.top_logprobs:
            values["confidence"] = ci.token_confidence(report.top_logprobs)
        values.update({k: float(v) for k, v in report.values.items() if k in needed})
        return values

    def _certain(self, values: Mapping[str, float]) -> StopReason | None:
        cfg = self.config
        if cfg.rule == "posterior":
            checks = {k: v for k, v in cfg.thresholds.items() if k != "entropy"}
            checks["posterior"] = cfg.confidence
            return StopReason.POSTERIOR if ci.all_pass(values, checks) else None
        return StopReason.THRESHOLD if ci.all_pass(values, cfg.thresholds) else None

    def _trim(self, report: Report, clusters: list[list[str]]) -> tuple[str, ...]:
        """Branch ids to drop: answers outside a clear leader, or the lowest rewards."""
        cfg = self.config
        if cfg.trim == "minority" and len(clusters) > 1:
            n = sum(len(g) for g in clusters)
            lead = clusters[0]
            if len(lead) > len(clusters[1]) and len(lead) >= cfg.trim_fraction * n:
                return tuple(sorted(b for g in clusters[1:] for b in g))
        if cfg.trim == "lowest_reward" and len(report.rewards) > 1:
            ranked = sorted(report.rewards, key=lambda b: (report.rewards[b], b))
            drop = min(int(len(ranked) * cfg.trim_fraction), len(ranked) - 1)
            return tuple(sorted(ranked[:drop]))
        return ()


def decided(clusters: Sequence[Sequence[str]], remaining: int) -> bool:
    """Whether the leading class of answers stays the largest whatever the `remaining` knob
    units return: |C1| > |C2| + remaining (|C2| = 0 with one class). Strict, so no tie can
    arise at the cap. An empty answer is a class of its own (size 1), so junk never leads a
    decided vote: with |C1| = 1 the rule needs remaining < 0. False with no answers."""
    if not clusters:
        return False
    runner_up = len(clusters[1]) if len(clusters) > 1 else 0
    return len(clusters[0]) > runner_up + remaining
