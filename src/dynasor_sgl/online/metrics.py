"""Pure metrics of the online benchmark over program records (plain dicts from the results).

A program record has `status` ("ok"/"error"), `latency_s` (from arrival to the end),
`difficulty`, `base_deadline_s`, `tokens` (total), `correct` (True/False/None) and `wait_s`
(mean seconds its requests spent in front of the worker, or None). A program meets its SLO at
scale s when it finished ok and latency_s ≤ s × difficulty × base_deadline_s; a failed program
never does. No I/O, no numpy randomness; empty inputs give None, not an exception.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

Record = Mapping[str, Any]
TARGET = 0.9


def meets(record: Record, slo_scale: float) -> bool:
    """Whether the program finished ok within slo_scale × difficulty × base deadline."""
    if record.get("status") != "ok" or record.get("latency_s") is None:
        return False
    deadline = slo_scale * float(record["difficulty"]) * float(record["base_deadline_s"])
    return float(record["latency_s"]) <= deadline


def attainment(records: Sequence[Record], slo_scale: float) -> float | None:
    """Fraction of programs meeting their SLO at `slo_scale`; None for no programs."""
    if not records:
        return None
    return sum(meets(r, slo_scale) for r in records) / len(records)


def max_rate(
    points: Sequence[tuple[float, float]], target: float = TARGET
) -> tuple[float | None, str]:
    """The highest arrival rate at which attainment ≥ target, and how it was found.

    points: (rate, attainment) pairs in any order. Take the highest measured rate r_i that
    meets the target; if a higher measured rate r_j misses it, interpolate linearly between
    (r_i, a_i) and (r_j, a_j) to the rate where attainment = target ("interpolated");
    otherwise r_i is a lower bound ("highest measured"). No rate meets it: (None, "none").
    """
    ordered = sorted(points)
    meeting = [i for i, (_, a) in enumerate(ordered) if a >= target]
    if not meeting:
        return None, "none"
    i = meeting[-1]
    if i + 1 == len(ordered):
        return ordered[i][0], "highest measured"
    (r0, a0), (r1, a1) = ordered[i], ordered[i + 1]
    rate = r0 + (a0 - target) / (a0 - a1) * (r1 - r0)
    return rate, "interpolated"


def ratio(value: float | None, baseline: float | None) -> float | None:
    """value / baseline, or None when either is missing or the baseline is 0."""
    if value is None or baseline is None or baseline == 0:
        return None
    return value / baseline


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100) with linear interpolation between order statistics."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def latencies(records: Sequence[Record]) -> list[float]:
    """Latencies of the programs that finished ok."""
    return [float(r["latency_s"]) for r in records if r.get("status") == "ok"]


def accuracy(records: Sequence[Record]) -> float | None:
    """Fraction of programs whose final answer was right (a failed program counts wrong)."""
    if not records:
        return None
    return sum(bool(r.get("correct")) for r in records) / len(records)


def mean_tokens(records: Sequence[Record]) -> float | None:
    return mean([float(r["tokens"]) for r in records if r.get("status") == "ok"])


def mean_wait(records: Sequence[Record]) -> float | None:
    """Mean queueing delay in front of the worker, over programs where it was observed."""
    return mean([float(r["wait_s"]) for r in records if r.get("wait_s") is not None])


def fairness(records: Sequence[Record]) -> list[float]:
    """Finish-time fairness per program: latency per generated token (s/token), sorted.

    Programs of very different sizes are compared by what each waited per unit of work;
    programs with no tokens are left out.
    """
    return sorted(
        float(r["latency_s"]) / float(r["tokens"])
        for r in records
        if r.get("status") == "ok" and r.get("tokens")
    )


def cdf(values: Sequence[float]) -> tuple[list[float], list[float]]:
    """Empirical CDF: sorted values and the fraction of values ≤ each, (1/n .. 1)."""
    xs = sorted(values)
    n = len(xs)
    return xs, [(i + 1) / n for i in range(n)]
