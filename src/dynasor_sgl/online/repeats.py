"""Repeats of the online benchmark: the interleaved run order, and each figure's median and spread.

This machine's speed drifts up to 2x within minutes, so one pass per system compares systems
at different speeds. `schedule` runs every (system, rate) `repeat` times in rounds, one round
per (repeat, rate), the systems forward in one round and backward in the next (ABC CBA ABC
...), alternating again across repeats at each rate, so each system runs as often early as
late. `spread` reduces one figure over the repeats to its median and range; `merit_over_repeats`
gives the figure of merit and its ratio to the baseline per repeat, and their medians. Pure.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from dynasor_sgl.online.metrics import ratio

T = TypeVar("T")


def schedule(
    systems: Sequence[T], rates: Sequence[float], repeat: int
) -> list[tuple[int, float, T]]:
    """(repeat, rate, system) in run order: for each repeat k and each rate j (in the order
    given), every system, forward when k + j is even and backward when odd. repeat >= 1."""
    if repeat < 1:
        raise ValueError(f"repeat must be >= 1, got {repeat}")
    order = []
    for k in range(repeat):
        for j, rate in enumerate(rates):
            ordered = systems if (k + j) % 2 == 0 else list(reversed(systems))
            order += [(k, float(rate), system) for system in ordered]
    return order


def spread(values: Sequence[float | None]) -> dict[str, float | None]:
    """{"median", "min", "max"} of the values that are not None (all None: all None)."""
    known = [float(v) for v in values if v is not None]
    if not known:
        return {"median": None, "min": None, "max": None}
    return {"median": statistics.median(known), "min": min(known), "max": max(known)}


def merit_over_repeats(
    per_repeat: Mapping[str, Sequence[float | None]], baseline: str
) -> dict[str, dict[str, Any]]:
    """Per system: its figure of merit per repeat (`rates`, None where no rate met the target),
    their `spread` with a rate that never met the target counted as 0 (a repeat where a
    system reached nothing is its worst, not a missing value), the ratio to `baseline` in each
    repeat (`ratios`, of those counted rates: None where the baseline reached nothing) and
    their `spread`.
    Repeats are matched by position; the baseline absent: every ratio None."""
    base = per_repeat.get(baseline)
    out: dict[str, dict[str, Any]] = {}
    for system, rates in per_repeat.items():
        counted = [0.0 if r is None else r for r in rates]
        ratios = [
            None if base is None or k >= len(base) else ratio(r, base[k])
            for k, r in enumerate(counted)
        ]
        out[system] = {
            "rates": list(rates),
            "rate": spread(counted if any(r is not None for r in rates) else rates),
            "ratios": ratios,
            "ratio": spread(ratios),
        }
    return out
