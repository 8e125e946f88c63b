"""The online benchmark's summary (a JSON-ready dict), its Markdown and its closing line.

Built from program records with the pure functions of `online.metrics`: per system and rate,
attainment at the chosen SLO scale, P50/P90 latency, tokens, accuracy and queueing delay;
attainment against SLO scale at a fixed rate; and the figure of merit, the highest rate at which
≥ 90% of programs meet their deadline, with its ratio to SGLang alone. No I/O.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from dynasor_sgl.online import metrics as m

SLO_SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0)
BASELINE = "sglang"
Record = Mapping[str, Any]


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


def _by_run(records: Sequence[Record]) -> dict[str, dict[float, list[Record]]]:
    runs: dict[str, dict[float, list[Record]]] = {}
    for r in records:
        runs.setdefault(str(r["system"]), {}).setdefault(float(r["rate"]), []).append(r)
    return runs


def _merit(
    runs: Mapping[str, Mapping[float, Sequence[Record]]], slo_scale: float
) -> dict[str, dict[str, Any]]:
    merit: dict[str, dict[str, Any]] = {}
    for system, by_rate in runs.items():
        points = [(rate, m.attainment(recs, slo_scale) or 0.0) for rate, recs in by_rate.items()]
        rate, how = m.max_rate(points)
        merit[system] = {"rate": _rnd(rate, 4), "method": how}
    base = merit.get(BASELINE, {}).get("rate")
    for entry in merit.values():
        entry["ratio_to_sglang"] = _rnd(m.ratio(entry["rate"], base))
    return merit


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
        "runs": {
            s: {str(rate): run_stats(recs, slo_scale) for rate, recs in sorted(by.items())}
            for s, by in runs.items()
        },
        "fixed_rate": fixed,
        "attainment_vs_slo": {
            s: [[x, _rnd(m.attainment(by.get(fixed, []), x))] for x in scales]
            for s, by in runs.items()
            if fixed in by
        },
        "max_rate_at_target": _merit(runs, slo_scale),
    }


def _fmt(x: Any, pct: bool = False) -> str:
    if x is None:
        return "–"
    return f"{100 * x:.0f}%" if pct else f"{x:g}"


def markdown(summary: Mapping[str, Any]) -> str:
    """The summary as a Markdown report."""
    s = summary
    lines = [
        f"# Online serving benchmark: {s.get('program')} on {s.get('dataset')}",
        "",
        f"Poisson arrivals at {', '.join(f'{r:g}' for r in s['rates'])} programs/s; "
        f"deadline = SLO scale × difficulty × base deadline {_fmt(s.get('base_deadline_s'))} s "
        f"({s.get('base_source')}). Figure of merit: the highest rate with ≥ "
        f"{100 * s['target_attainment']:.0f}% of programs on time at SLO scale "
        f"{s['slo_scale']:g}.",
        "",
        "| system | max rate (programs/s) | × sglang | how |",
        "|---|---|---|---|",
    ]
    for system, e in s["max_rate_at_target"].items():
        lines.append(
            f"| {system} | {_fmt(e['rate'])} | {_fmt(e['ratio_to_sglang'])} | {e['method']} |"
        )
    lines += _per_run(s["runs"])
    lines += ["", f"## On time against SLO scale at {_fmt(s['fixed_rate'])} programs/s", ""]
    lines += [
        f"- {system}: " + ", ".join(f"{x:g}× {_fmt(a, True)}" for x, a in points)
        for system, points in s["attainment_vs_slo"].items()
    ]
    return "\n".join(lines + _notes(s))


def _per_run(runs: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The per-run table: each system at each rate."""
    lines = [
        "",
        "## Per run",
        "",
        "| system | rate | on time | P50 s | P90 s | tokens/program | accuracy | "
        "wait s | errors | exits |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for system, by_rate in runs.items():
        for rate, r in by_rate.items():
            exits = ", ".join(f"{k} {v}" for k, v in sorted(r["exit_reasons"].items()))
            lines.append(
                f"| {system} | {rate} | {_fmt(r['attainment'], True)} | {_fmt(r['p50_s'])} | "
                f"{_fmt(r['p90_s'])} | {_fmt(r['mean_tokens'])} | {_fmt(r['accuracy'], True)} | "
                f"{_fmt(r['mean_wait_s'])} | {r['errors']} | {exits} |"
            )
    return lines


def _notes(s: Mapping[str, Any]) -> list[str]:
    """The notes (the summary's own and one per run with failed programs) and the legend."""
    failed = (
        f"{run}: some programs failed; re-run to redo it" for run in s.get("runs_with_errors") or []
    )
    extra = [*(s.get("notes") or []), *failed]
    lines = ["", "## Notes", "", *(f"- {note}" for note in extra)] if extra else []
    return [
        *lines,
        "",
        "Wait: mean seconds a request spent in front of the worker (the router's "
        "admission queue and transport); SGLang's own waiting queue is inside the "
        "worker and not separated. Accuracy counts a failed program as wrong.",
        "",
    ]


def one_line(summary: Mapping[str, Any]) -> str:
    """The closing line: each system's max rate at the target, with its ratio to sglang."""
    parts = []
    for system, e in summary["max_rate_at_target"].items():
        ratio = f" ({e['ratio_to_sglang']:g}× sglang)" if e["ratio_to_sglang"] else ""
        rate = "none" if e["rate"] is None else f"{e['rate']:g}/s"
        parts.append(f"{system} {rate}{ratio}")
    target = f"{100 * summary['target_attainment']:.0f}%"
    return f"max rate with ≥{target} on time at SLO {summary['slo_scale']:g}×: " + "; ".join(parts)
