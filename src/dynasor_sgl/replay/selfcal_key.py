"""Self-calibration online, one calibration key: what a server learns from the traffic it runs.

A calibration key is (algorithm, served model, the client's task tag, cap): the right stop rule
depends on each, and a disagreement with the full budget only means something at one cap. Per
key, a share of the programs (`explore`) runs to its cap; each such run is replayed once
through every candidate of `selfcal.sc_families` (the same pure code `dynasor-sgl calibrate`
fits) and kept, at most `max_runs` per key, the oldest dropped first. Once a key has the
programs the bound needs (`risk.min_programs` at δ shared over the families), its rule is refit
after every new run: the candidate `selfcal.fit` chooses, or the full budget when nothing is
certified (as `calibrate` writes). Until then a program gets the router's defaults.

Which programs explore is reproducible: the n-th eligible registration of a key (n from 0)
explores when floor((n + 1) · explore) > floor(n · explore), an even spread (every 10th at 0.1,
every one at 1.0). Each explored run also says whether the rule in force when it registered
(the one it would have run) disagreed with its full-budget answer: that rule never saw the run,
so the rate is an honest online estimate of the disagreement served.

Only self-consistency calibrates: its recorded run (answers in sample order) replays any SC rule.
A program whose client set its own stop rule (`CLIENT_RULE_KEYS`) keeps it and is not explored.
Pure: no I/O, no clock; `to_json` / `from_json` are plain data. All keys together:
`dynasor_sgl.replay.selfcal_book`.
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from dynasor_sgl.policy import risk
from dynasor_sgl.policy.config import PolicyConfig
from dynasor_sgl.replay import selfcal
from dynasor_sgl.replay.engine import same_answer
from dynasor_sgl.replay.sampled import RecordedRun, SampledRun

CALIBRATED = ("sc",)  # algorithms whose recorded runs replay their stop rules
# Keys of a client's policy that make the stop rule its own (cap may be set: it is in the key).
CLIENT_RULE_KEYS = frozenset(
    {"initial", "pace", "step", "detect_at", "detect_every", "thresholds", "rule", "confidence"}
    | {"posterior_of"}
    | {"confidence_window", "confidence_percentile", "warmup", "trim", "trim_fraction"}
)
Rule = Literal["explore", "fitted", "full budget", "defaults"]


@dataclass(frozen=True)
class BookSettings:
    """explore: the share of a key's eligible programs run to the cap, in [0, 1].
    epsilon, delta: the bound, disagreement ≤ ε with confidence 1 − δ (`policy.risk`).
    max_runs: explored runs kept per key; max_keys: keys kept (later ones stay on defaults)."""

    explore: float = 0.1
    epsilon: float = risk.DEFAULT_EPSILON
    delta: float = risk.DEFAULT_DELTA
    max_runs: int = 2000
    max_keys: int = 64

    def __post_init__(self) -> None:
        if not 0.0 <= self.explore <= 1.0 or math.isnan(self.explore):
            raise ValueError(f"explore must be in [0, 1], got {self.explore!r}")
        risk.check_levels(self.epsilon, self.delta)
        for name in ("max_runs", "max_keys"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")


@dataclass(frozen=True)
class Key:
    algorithm: str
    model: str
    task: str | None
    cap: int

    @property
    def name(self) -> str:
        return f"{self.algorithm}/{self.model}/{self.task or '-'}/cap{self.cap}"


@dataclass(frozen=True)
class Assignment:
    """What a registration gets: its policy, whether it explores, the rule it runs (`rule`),
    and `in_force`, the policy it would have run without exploring."""

    key: Key
    config: PolicyConfig
    explored: bool
    rule: Rule
    in_force: PolicyConfig

    def summary(self) -> dict[str, Any]:
        return {"key": self.key.name, "explored": self.explored, "rule": self.rule}


@dataclass(frozen=True)
class Explored:
    """One explored program replayed: its run, whether the rule in force at its registration
    disagreed with its full-budget answer, and per family each candidate's loss and tokens."""

    run: RecordedRun
    in_force_loss: bool
    losses: tuple[tuple[float, ...], ...]
    tokens: tuple[tuple[float, ...], ...]


def eligible(algorithm: str, client_policy: Mapping[str, Any]) -> bool:
    """Whether a registration self-calibrates: a calibrated algorithm, no rule of its own."""
    return algorithm in CALIBRATED and not (CLIENT_RULE_KEYS & set(client_policy))


def to_cap(config: PolicyConfig) -> PolicyConfig:
    """`config` that never stops before its cap (no signal thresholded: never certain), its
    reports where `config` would make them, no decided-vote stop; it ends as "cap"."""
    return dataclasses.replace(config, thresholds={}, rule="threshold", stop_when_decided=False)


def explore_run(
    run: RecordedRun, in_force: PolicyConfig, families: Sequence[selfcal.Family]
) -> Explored:
    """Replays an explored run through `in_force` and every candidate (slow: math-verify)."""
    out = selfcal.Candidate("in force", in_force).outcome(run)
    scores = [selfcal.score(f, [run]) for f in families]
    return Explored(
        run,
        not same_answer(out.answer, run.full_answer()),
        tuple(tuple(float(x) for x in s.losses[0]) for s in scores),
        tuple(tuple(float(x) for x in s.tokens[0]) for s in scores),
    )


class KeyState:
    """One key: registrations, explored programs, the runs kept and the rule fitted on them."""

    def __init__(self, key: Key, settings: BookSettings) -> None:
        self.key, self.settings = key, settings
        self.families = selfcal.sc_families(key.cap)
        self.registered = 0
        self.explored = 0
        self.runs: deque[Explored] = deque(maxlen=settings.max_runs)
        self.fit: selfcal.Fit | None = None

    @property
    def needed(self) -> int:
        """The fewest runs that can certify a rule (δ shared over the families)."""
        s = self.settings
        return risk.min_programs(s.epsilon, s.delta / len(self.families))

    def assign(self, base: PolicyConfig, client_policy: Mapping[str, Any]) -> Assignment:
        """The next eligible registration: explore it, or give it the rule in force."""
        n, f = self.registered, self.settings.explore
        self.registered += 1
        rule: Rule = "defaults"
        in_force = base
        if self.fit is not None and self.fit.candidate is not None:
            fitted = self.fit.candidate.config.to_dict()
            in_force = PolicyConfig.from_dict({**fitted, **client_policy})
            rule = "fitted"
        elif self.fit is not None:
            in_force, rule = to_cap(base), "full budget"
        if math.floor((n + 1) * f) > math.floor(n * f):
            self.explored += 1
            return Assignment(self.key, to_cap(base), True, "explore", in_force)
        return Assignment(self.key, in_force, False, rule, in_force)

    def add(self, explored: Explored) -> None:
        self.runs.append(explored)
        self.refit()

    def refit(self) -> None:
        if len(self.runs) < self.needed:
            self.fit = None
            return
        s = self.settings
        runs = [e.run for e in self.runs]
        self.fit = selfcal.fit(runs, self.families, s.epsilon, s.delta, self._scores())

    def _scores(self) -> list[selfcal.Scores]:
        out = []
        for j in range(len(self.families)):
            losses = np.array([e.losses[j] for e in self.runs])
            tokens = np.array([e.tokens[j] for e in self.runs])
            out.append(selfcal.Scores(losses, tokens, np.full(losses.shape, np.nan)))
        return out

    def disagreement(self) -> float | None:
        """Share of explored runs whose rule in force disagreed with their full budget."""
        return sum(e.in_force_loss for e in self.runs) / len(self.runs) if self.runs else None

    def threshold(self) -> float | None:
        """The fitted rule's threshold (entropy, or the posterior's level); None otherwise."""
        c = None if self.fit is None else self.fit.candidate
        if c is None:
            return None
        return (
            c.config.confidence if c.config.rule == "posterior" else c.config.thresholds["entropy"]
        )

    def view(self) -> dict[str, Any]:
        """What `GET /calibration` shows of the key."""
        c = None if self.fit is None else self.fit.candidate
        state = "defaults" if self.fit is None else "fitted" if c else "full budget"
        return {
            **dataclasses.asdict(self.key),
            "registered": self.registered,
            "explored": self.explored,
            "runs": len(self.runs),
            "pairs": len(self.runs) * sum(len(f.candidates) for f in self.families),
            "state": state,
            "family": None if self.fit is None else self.fit.family,
            "candidate": None if c is None else c.label,
            "threshold": self.threshold(),
            "policy": None if c is None else c.config.to_dict(),
            "epsilon": self.settings.epsilon,
            "delta": self.settings.delta,
            "min_programs": self.needed,
            "certifiable_epsilon": risk.certifiable_epsilon(
                len(self.runs), self.settings.delta / len(self.families)
            ),
            "disagreement": self.disagreement(),
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "key": dataclasses.asdict(self.key),
            "registered": self.registered,
            "explored": self.explored,
            "candidates": [[c.label for c in f.candidates] for f in self.families],
            "runs": [_run_json(e) for e in self.runs],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], settings: BookSettings) -> KeyState:
        """A key from `to_json`; runs scored against other candidates are replayed again."""
        state = cls(Key(**data["key"]), settings)
        state.registered, state.explored = int(data["registered"]), int(data["explored"])
        same = data.get("candidates") == [[c.label for c in f.candidates] for f in state.families]
        for item in data["runs"]:
            e = _run_of(item)
            if not same:
                e = dataclasses.replace(e, **_rescored(e, state.families))
            state.runs.append(e)
        state.refit()
        return state


def _run_json(e: Explored) -> dict[str, Any]:
    r = e.run.run
    return {
        "id": e.run.question_id,
        "answers": list(r.answers),
        "sample_tokens": list(r.sample_tokens),
        "shared_tokens": r.shared_tokens,
        "in_force_loss": e.in_force_loss,
        "losses": [list(x) for x in e.losses],
        "tokens": [list(x) for x in e.tokens],
    }


def _run_of(item: Mapping[str, Any]) -> Explored:
    sampled = SampledRun(
        tuple(item["answers"]), tuple(int(t) for t in item["sample_tokens"]), item["shared_tokens"]
    )
    return Explored(
        RecordedRun(str(item["id"]), None, sampled),
        bool(item["in_force_loss"]),
        tuple(tuple(float(x) for x in row) for row in item["losses"]),
        tuple(tuple(float(x) for x in row) for row in item["tokens"]),
    )


def _rescored(e: Explored, families: Sequence[selfcal.Family]) -> dict[str, Any]:
    scores = [selfcal.score(f, [e.run]) for f in families]
    return {
        "losses": tuple(tuple(float(x) for x in s.losses[0]) for s in scores),
        "tokens": tuple(tuple(float(x) for x in s.tokens[0]) for s in scores),
    }
