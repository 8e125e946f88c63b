"""The online benchmark's workload: which programs arrive when, and by when each must finish.

Arrivals are a seeded Poisson process: one draw of unit-rate exponential gaps, divided by the
rate, so every rate replays the same questions in the same order, only compressed, and every
system sees the same trace at a given rate. A program's deadline is
`slo_scale × difficulty × base_s` (paper §6.3): difficulty 1, 2 or 3 from a `dynasor-sgl eval`
results file (all samples right, mixed, all wrong), 1 for a question the file does not know.
Pure except `load_difficulty`, which reads that file. Knows nothing about systems or HTTP.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dynasor_sgl.eval.datasets import Item
from dynasor_sgl.online.mixes import slot

logger = logging.getLogger(__name__)

DIFFICULTIES = (1, 2, 3)
DEFAULT_DIFFICULTY = 1


@dataclass(frozen=True)
class Arrival:
    """One program of a run: its position in the trace, its question, when it arrives
    (seconds after the run starts), its difficulty factor and its workload part (index)."""

    index: int
    item: Item
    offset_s: float
    difficulty: int = DEFAULT_DIFFICULTY
    part: int = 0


def arrival_offsets(n: int, rate: float, seed: int) -> list[float]:
    """Arrival times (s) of `n` programs of a Poisson process at `rate` programs/s.

    Gaps are exponential with mean 1/rate, drawn with `np.random.default_rng(seed)` at rate 1
    and divided by `rate`; the first program arrives at 0. n >= 1, rate > 0, else ValueError.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if not rate > 0:
        raise ValueError(f"rate must be > 0, got {rate}")
    gaps = np.random.default_rng(seed).exponential(1.0, n)
    offsets = (np.cumsum(gaps) - gaps[0]) / rate
    return [float(x) for x in offsets]


def deadline_s(slo_scale: float, difficulty: int, base_s: float) -> float:
    """The deadline (s after arrival): slo_scale × difficulty × base_s; all must be > 0."""
    if slo_scale <= 0 or base_s <= 0 or difficulty not in DIFFICULTIES:
        raise ValueError(
            f"deadline needs slo_scale > 0, base > 0 and difficulty in {DIFFICULTIES}; "
            f"got {slo_scale}, {base_s}, {difficulty}"
        )
    return slo_scale * difficulty * base_s


def difficulty_of(correct: Sequence[bool]) -> int:
    """1 when every sample is right, 3 when every one is wrong, 2 when mixed; no samples:
    the default, 1."""
    if not correct:
        return DEFAULT_DIFFICULTY
    if all(correct):
        return 1
    return 3 if not any(correct) else 2


def workload(
    items: Sequence[Item],
    n: int,
    rate: float,
    seed: int,
    difficulty: Mapping[str, int] | None = None,
) -> list[Arrival]:
    """The trace of one run: program i asks items[i % len(items)], arriving per
    `arrival_offsets(n, rate, seed)`; difficulty by question id (default 1)."""
    return mixed_workload([items], n, rate, seed, difficulty)


def mixed_workload(
    parts: Sequence[Sequence[Item]],
    n: int,
    rate: float,
    seed: int,
    difficulty: Mapping[str, int] | None = None,
) -> list[Arrival]:
    """The trace of one run over a workload's parts (`mixes.slot`: program i is part i mod P,
    asking that part's questions in turn), arriving per `arrival_offsets(n, rate, seed)`."""
    if not parts or not all(parts):
        raise ValueError("the workload needs at least one question in every part")
    known = difficulty or {}
    offsets = arrival_offsets(n, rate, seed)
    counts = tuple(len(items) for items in parts)
    arrivals = []
    for i in range(n):
        part, k = slot(i, counts)
        item = parts[part][k]
        arrivals.append(Arrival(i, item, offsets[i], known.get(item.id, DEFAULT_DIFFICULTY), part))
    return arrivals


def _sample_correctness(record: Mapping[str, Any]) -> list[bool]:
    """Whether each sample of a baseline record was right: every sample's answer when the
    program kept them (self-consistency's `details.answers`), else the final answer's."""
    from dynasor_sgl.answers.equivalence import equivalent  # math-verify: only when a file is read

    answers = (record.get("details") or {}).get("answers")
    if isinstance(answers, list) and answers:
        return [equivalent(a, str(record.get("gold"))) for a in answers]
    return [bool(record.get("correct"))]


def load_difficulty(path: str | Path) -> dict[str, int]:
    """Question id -> difficulty, from the full-budget ("baseline") records of an eval results
    file. A missing or unreadable file, or one without baseline records, is a ValueError."""
    from dynasor_sgl.eval.results import read_records
    from dynasor_sgl.replay.sampled import is_baseline

    if not Path(path).is_file():
        raise ValueError(f"difficulty file {path} does not exist")
    _, records = read_records(path)
    found = {
        str(r["question_id"]): difficulty_of(_sample_correctness(r))
        for r in records
        if is_baseline(r)
    }
    if not found:
        raise ValueError(f"{path} has no finished baseline records to read difficulty from")
    counts = {d: sum(v == d for v in found.values()) for d in DIFFICULTIES}
    logger.info("difficulty of %d questions from %s: %s", len(found), path, counts)
    return found
