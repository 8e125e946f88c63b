"""The online benchmark's summary (a JSON-ready dict), its Markdown and its closing line.

Built from program records with the pure functions of `online.metrics`: per system and rate,
attainment at the chosen SLO scale, P50/P90 latency, tokens, accuracy (with its Wilson
interval, overall and per program of the workload) and queueing delay; attainment against SLO
scale at a fixed rate; and the figure of merit, the highest rate at which ≥ 90% of programs
meet their deadline, with its ratio to SGLang alone. With repeats (a record's `repeat`, 0 when
absent) each figure is computed per repeat and given as its median with the range
(`online.repeats`), the figure of merit and its ratio per repeat, and each system's accuracy
at the rate of its figure of merit, pooled over repeats. No I/O.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from dynasor_sgl.eval.report import wilson
from dynasor_sgl.online import metrics as m
from dynasor_sgl.online.markdown import markdown as markdown  # re-exported: its home
from dynasor_sgl.online.markdown import one_line as one_line
from dynasor_sgl.online.repeats import merit_over_repeats, spread

SLO_SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0)
BASELINE = "sglang"
Record = Mapping[str, Any]
# The figures of a run that are reduced over repeats to their median and range.
FIGURES = ("attainment", "p50_s", "p90_s", "mean_tokens", "accuracy", "mean_wait_s")


def _rnd(x: float | None, digits: int = 3) -> float | None:
    return None if x is None else round(x, digits)


def run_stats(records: Sequence[Record], slo_scale: float) -> dict[str, Any]:
    """The numbers of one (system, rate) run."""
    lat = m.latencies(records)
    return {
        "programs": len(records),
        "errors": sum(r.get("status") != "ok" for r in records),
        "attainment": _rnd(m.attainment(records, slo_scale)),
        "p50_s": _rnd(m.percentile(lat, 50)),
        "p90_s": _rnd(m.percentile(lat, 90)),
        "mean_tokens": _rnd(m.mean_tokens(records), 1),
        "accuracy": _rnd(m.accuracy(records)),
        "mean_wait_s": _rnd(m.mean_wait(records)),
        "exit_reasons": dict(Counter(str(r.get("exit_reason")) for r in records)),
    }


def correct_of(records: Sequence[Record]) -> dict[str, Any]:
    """Accuracy as correct/total (a failed program counts wrong) with its 95% Wilson interval."""
    total = len(records)
    correct = sum(bool(r.get("correct")) for r in records)
    lo, hi = wilson(correct, total)
    return {
        "correct": correct,
        "total": total,
        "accuracy": _rnd(correct / total if total else None),
        "ci": [_rnd(lo), _rnd(hi)],
    }


def pooled_stats(per_repeat: Sequence[Sequence[Record]], slo_scale: float) -> dict[str, Any]:
    """The numbers of one (system, rate) over its repeats: each of `FIGURES` as the median of
    the per-repeat values, with `spread` ({figure: [min, max]}); counts, exits, accuracy's
    interval and accuracy per program of the workload pooled over every repeat."""
    each = [run_stats(recs, slo_scale) for recs in per_repeat]
    pooled = [r for recs in per_repeat for r in recs]
    stats: dict[str, Any] = {
        "repeats": len(each),
        "programs": len(pooled),
        "errors": sum(s["errors"] for s in each),
    }
    ranges = {}
    for key in FIGURES:
        s = spread([e[key] for e in each])
        stats[key] = _rnd(s["median"], 1 if key == "mean_tokens" else 3)
        ranges[key] = [_rnd(s["min"]), _rnd(s["max"])]
    exits: Counter[str] = Counter()
    for e in each:
        exits.update(e["exit_reasons"])
    by_program: dict[str, list[Record]] = {}
    for r in pooled:
        if r.get("program") is not None:  # a program that raised has no part label
            by_program.setdefault(str(r["program"]), []).append(r)
    return {
        **stats,
        "spread": ranges,
        "exit_reasons": dict(exits),
        "accuracy_pooled": correct_of(pooled),
        "accuracy_by_program": {p: correct_of(recs) for p, recs in sorted(by_program.items())},
    }


Runs = dict[str, dict[float, dict[int, list[Record]]]]


def _by_run(records: Sequence[Record]) -> Runs:
    runs: Runs = {}
    for r in records:
        by_rate = runs.setdefault(str(r["system"]), {})
        by_rate.setdefault(float(r["rate"]), {}).setdefault(int(r.get("repeat", 0)), []).append(r)
    return runs


def _merit(runs: Runs, slo_scale: float) -> dict[str, dict[str, Any]]:
    """Each system's figure of merit per repeat, their median and range, the ratio to sglang
    per repeat and its median, and its accuracy at the rate of its figure of merit."""
    repeats = sorted({k for by_rate in runs.values() for by in by_rate.values() for k in by})
    rates: dict[str, list[float | None]] = {}
    methods: dict[str, list[str]] = {}
    for system, by_rate in runs.items():
        for k in repeats:
            points = [
                (rate, m.attainment(by[k], slo_scale) or 0.0)
                for rate, by in by_rate.items()
                if k in by
            ]
            rate, how = m.max_rate(points) if points else (None, "none")
            rates.setdefault(system, []).append(rate)
            methods.setdefault(system, []).append(how)
    merit: dict[str, dict[str, Any]] = {}
    for system, over in merit_over_repeats(rates, BASELINE).items():
        one = len(repeats) == 1
        merit[system] = {
            "rate": _rnd(over["rate"]["median"], 4),
            "method": methods[system][0] if one else f"median of {len(repeats)} repeats",
            "ratio_to_sglang": _rnd(over["ratio"]["median"]),
            "rate_per_repeat": [_rnd(r, 4) for r in over["rates"]],
            "rate_spread": [_rnd(over["rate"]["min"], 4), _rnd(over["rate"]["max"], 4)],
            "ratio_per_repeat": [_rnd(r) for r in over["ratios"]],
            "ratio_spread": [_rnd(over["ratio"]["min"]), _rnd(over["ratio"]["max"])],
            "methods": methods[system],
            "accuracy_at_merit": _accuracy_at(runs[system], slo_scale),
        }
    return merit


def _accuracy_at(
    by_rate: Mapping[float, Mapping[int, Sequence[Record]]], slo_scale: float
) -> dict[str, Any]:
    """Accuracy pooled over repeats at the highest measured rate whose median on-time share
    meets the target (the measured rate of the figure of merit); rate None when none does."""
    meeting = [
        rate
        for rate, by in by_rate.items()
        if (spread([m.attainment(recs, slo_scale) for recs in by.values()])["median"] or 0.0)
        >= m.TARGET
    ]
    if not meeting:
        return {"rate": None}
    rate = max(meeting)
    return {"rate": rate, **correct_of([r for recs in by_rate[rate].values() for r in recs])}


def summarize(
    records: Sequence[Record],
    meta: Mapping[str, Any],
    slo_scale: float,
    fixed_rate: float | None = None,
) -> dict[str, Any]:
    """The whole summary. fixed_rate: the rate of the attainment-vs-SLO-scale view (default:
    the middle measured rate)."""
    runs = _by_run(records)
    rates = sorted({float(r["rate"]) for r in records})
    fixed = fixed_rate if fixed_rate is not None else (rates[len(rates) // 2] if rates else None)
    scales = sorted({*SLO_SCALES, slo_scale})
    return {
        **meta,
        "slo_scale": slo_scale,
        "target_attainment": m.TARGET,
        "rates": rates,
        "systems": list(runs),
        "repeats": sorted({int(r.get("repeat", 0)) for r in records}),
        "runs": {
            s: {
                str(rate): pooled_stats([by[k] for k in sorted(by)], slo_scale)
                for rate, by in sorted(by_rate.items())
            }
            for s, by_rate in runs.items()
        },
        "fixed_rate": fixed,
        "attainment_vs_slo": {
            s: [[x, _at_scale(by_rate[fixed], x)] for x in scales]
            for s, by_rate in runs.items()
            if fixed in by_rate
        },
        "max_rate_at_target": _merit(runs, slo_scale),
    }


def _at_scale(by_repeat: Mapping[int, Sequence[Record]], scale: float) -> float | None:
    """The median over repeats of the on-time share at SLO scale `scale`."""
    return _rnd(spread([m.attainment(recs, scale) for recs in by_repeat.values()])["median"])
