"""The online benchmark's workloads: which programs arrive, on which questions, with which knobs.

A workload is one or more parts, each a program on a dataset with its own cap and parameters.
Program i of a run belongs to part i mod P and asks that part's question (i div P) mod its
count, so every part sees its questions in order and the mix is even at every rate.
`single` is the one part the options describe (`--program`, `--dataset`, `--cap`, ...); the
named mixes fix their parts, chosen where the mechanism has something to act on: on
`synth:add1` one sample of the embedded model is right 37% of the time and the vote of 20 77%
(docs/results/sc.md), and each part's cap differs. Pure: names and knobs, no program is
imported here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

SINGLE = "single"


@dataclass(frozen=True)
class Part:
    """One part of a workload.

    label: its name in records and reports (a record's `program`). program: a registered
    program name or `module:ATTRIBUTE`. dataset: a `load_dataset` spec. cap: the policy's cap
    on the program's knob. params: the program's parameters.
    policy: PolicyConfig overrides on top of the shipped default (the cap is added).
    """

    label: str
    program: str
    dataset: str
    cap: int
    params: Mapping[str, Any] = field(default_factory=dict)
    policy: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.cap < 1:
            raise ValueError(f"cap of part {self.label!r} must be >= 1, got {self.cap}")

    def user_policy(self) -> dict[str, Any]:
        """The PolicyConfig overrides every system starts from (its own go on top)."""
        return {**self.policy, "cap": self.cap}


# Knobs sized for the embedded model on CPU: each program a few hundred tokens.
MIXES: dict[str, tuple[Part, ...]] = {
    "mixed": (
        Part("self-consistency", "self-consistency", "synth:add1", 10, {"max_tokens": 48}),
        Part("mcts", "mcts", "synth:add1", 4, {"step_tokens": 48, "max_depth": 3}),
        Part("cot-probe", "cot-probe", "synth:add1", 192),
    ),
}
WORKLOADS = (SINGLE, *MIXES)


def parts_of(workload: str, single: Part) -> tuple[Part, ...]:
    """The parts of `workload`: `single` for SINGLE, else the named mix; unknown: ValueError."""
    if workload == SINGLE:
        return (single,)
    if workload not in MIXES:
        raise ValueError(f"unknown workload {workload!r}; choose from {', '.join(WORKLOADS)}")
    return MIXES[workload]


def slot(index: int, counts: tuple[int, ...]) -> tuple[int, int]:
    """(part, question) of program `index` when the parts have `counts` questions each."""
    if not counts or min(counts) < 1:
        raise ValueError(f"every part needs at least one question, got counts {counts}")
    part = index % len(counts)
    return part, (index // len(counts)) % counts[part]
