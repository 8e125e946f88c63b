"""Synthetic program traces for paper-like workloads (labelled synthetic in every output).

Not measurements: seeded draws whose parameters are written down here (`WORKLOADS`) and copied
into the results, shaped after the Dynasor paper's online workloads (SC on MATH with
Llama-3.1-8B, cap 20; MCTS on ASDiv, cap 15; REBASE on GSM8K, cap 128). Each program has a
per-question skill p ~ Uniform(p_low, p_high): a unit answers right (label 0) with probability
p, else one of `wrong_answers` wrong labels (or no answer, with probability `no_answer`).
Tokens per unit are lognormal around `unit_tokens` (sigma `token_sigma`); rewards (MCTS) are
p + Normal(0, reward_noise), clipped to [0, 1]. Pure; randomness through one Generator.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from dynasor_sgl.sim.traces import NO_ANSWER, Trace, Unit


@dataclass(frozen=True)
class SyntheticWorkload:
    """The parameters of one synthetic workload (see the module docstring)."""

    algorithm: str
    cap: int
    prompt_tokens: int
    unit_tokens: float
    token_sigma: float = 0.5
    p_low: float = 0.1
    p_high: float = 0.95
    wrong_answers: int = 4
    no_answer: float = 0.05
    reward_noise: float = 0.0
    note: str = ""

    def describe(self) -> dict[str, Any]:
        return {"synthetic": True, **asdict(self)}


WORKLOADS: Mapping[str, SyntheticWorkload] = {
    "sc-math": SyntheticWorkload(
        "sc", 20, 150, 350.0, note="SC on MATH-like questions, Llama-3.1-8B-sized solutions"
    ),
    "mcts": SyntheticWorkload(
        "mcts",
        15,
        120,
        60.0,
        reward_noise=0.15,
        note="MCTS on ASDiv-like questions: per iteration 2 expansions of ~60 tokens + a judge",
    ),
    "rebase": SyntheticWorkload(
        "rebase", 128, 120, 90.0, note="REBASE on GSM8K-like questions: ~90-token tree nodes"
    ),
}
MIXES: Mapping[str, tuple[str, ...]] = {"mix": ("sc-math", "mcts", "rebase")}


def workload_names() -> list[str]:
    return [*WORKLOADS, *MIXES]


def synthetic_traces(name: str, n: int, seed: int) -> list[Trace]:
    """`n` traces of workload `name` (or a mix: round-robin over its workloads)."""
    if name not in WORKLOADS and name not in MIXES:
        raise ValueError(f"unknown synthetic workload {name!r}; choose from {workload_names()}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    parts = MIXES.get(name, (name,))
    rng = np.random.default_rng(seed)
    return [_trace(parts[i % len(parts)], i, rng) for i in range(n)]


def _trace(name: str, i: int, rng: np.random.Generator) -> Trace:
    w = WORKLOADS[name]
    p = rng.uniform(w.p_low, w.p_high)
    mu = np.log(w.unit_tokens) - w.token_sigma**2 / 2  # the lognormal's mean is unit_tokens
    tokens = np.maximum(1, rng.lognormal(mu, w.token_sigma, w.cap).round()).astype(int)
    right = rng.random(w.cap) < p
    blank = rng.random(w.cap) < w.no_answer
    wrong = rng.integers(1, w.wrong_answers + 1, w.cap)
    rewards = np.clip(p + rng.normal(0, w.reward_noise, w.cap), 0, 1)
    units = tuple(
        Unit(
            int(tokens[j]),
            NO_ANSWER if blank[j] else (0 if right[j] else int(wrong[j])),
            float(rewards[j]) if w.algorithm == "mcts" else None,
        )
        for j in range(w.cap)
    )
    max_new = int(3 * w.unit_tokens)
    return Trace(
        f"{name}-{i}", w.algorithm, w.prompt_tokens, units, 0, f"synthetic:{name}", max_new
    )
