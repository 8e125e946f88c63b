"""The online benchmark's summary (`online.report.summarize`) as Markdown, and its closing line.

With one repeat the tables read as single numbers; with several, every figure is the median
over repeats followed by its range [min–max], the figure of merit and its ratio to sglang are
also given per repeat, and accuracy is pooled over repeats with its 95% Wilson interval.
Formatting only: no numbers are computed here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def _fmt(x: Any, pct: bool = False) -> str:
    if x is None:
        return "–"
    return f"{100 * x:.0f}%" if pct else f"{x:g}"


def _range(pair: Sequence[Any] | None, pct: bool = False) -> str:
    """ " [lo–hi]", or nothing when there is no range (one repeat or lo == hi)."""
    if not pair or pair[0] is None or pair[0] == pair[1]:
        return ""
    return f" [{_fmt(pair[0], pct)}–{_fmt(pair[1], pct)}]"


def _correct(acc: Mapping[str, Any] | None) -> str:
    """ "70% (45–88%) 7/10": accuracy, its 95% interval and the counts."""
    if not acc or acc.get("accuracy") is None:
        return "–"
    lo, hi = acc["ci"]
    return (
        f"{_fmt(acc['accuracy'], True)} ({_fmt(lo, True)}–{_fmt(hi, True)}) "
        f"{acc['correct']}/{acc['total']}"
    )


def _title(s: Mapping[str, Any]) -> str:
    workload = s.get("workload")
    if workload and workload != "single":
        return f"# Online serving benchmark: the {workload} workload ({s.get('program')})"
    return f"# Online serving benchmark: {s.get('program')} on {s.get('dataset')}"


def markdown(summary: Mapping[str, Any]) -> str:
    """The summary as a Markdown report."""
    s = summary
    repeats = len(s.get("repeats") or [0])
    how = (
        f" Each system ran {repeats} times, interleaved (ABC CBA ...) on the same arrivals; "
        "every figure is the median over repeats with its range [min–max]."
        if repeats > 1
        else ""
    )
    lines = [
        _title(s),
        "",
        f"Poisson arrivals at {', '.join(f'{r:g}' for r in s['rates'])} programs/s; "
        f"deadline = SLO scale × difficulty × base deadline {_fmt(s.get('base_deadline_s'))} s "
        f"({s.get('base_source')}). Figure of merit: the highest rate with ≥ "
        f"{100 * s['target_attainment']:.0f}% of programs on time at SLO scale "
        f"{s['slo_scale']:g}.{how}",
        "",
        "| system | max rate (programs/s) | × sglang | per repeat: rate (× sglang) | "
        "accuracy at that rate (95% CI) | how |",
        "|---|---|---|---|---|---|",
    ]
    for system, e in s["max_rate_at_target"].items():
        at = e.get("accuracy_at_merit") or {}
        where = f" at {at['rate']:g}/s" if at.get("rate") is not None else ""
        per = ", ".join(
            f"{_fmt(r)} ({_fmt(x)}×)"
            for r, x in zip(
                e.get("rate_per_repeat") or [], e.get("ratio_per_repeat") or [], strict=True
            )
        )
        lines.append(
            f"| {system} | {_fmt(e['rate'])}{_range(e.get('rate_spread'))} | "
            f"{_fmt(e['ratio_to_sglang'])}{_range(e.get('ratio_spread'))} | {per} | "
            f"{_correct(at)}{where} | {e['method']} |"
        )
    lines += _per_run(s["runs"])
    lines += _per_program(s["runs"])
    lines += ["", f"## On time against SLO scale at {_fmt(s['fixed_rate'])} programs/s", ""]
    lines += [
        f"- {system}: " + ", ".join(f"{x:g}× {_fmt(a, True)}" for x, a in points)
        for system, points in s["attainment_vs_slo"].items()
    ]
    return "\n".join(lines + _notes(s))


def _per_run(runs: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The per-run table: each system at each rate (medians over repeats, with ranges)."""
    lines = [
        "",
        "## Per run",
        "",
        "| system | rate | on time | P50 s | P90 s | tokens/program | accuracy (95% CI) | "
        "wait s | errors | exits |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for system, by_rate in runs.items():
        for rate, r in by_rate.items():
            exits = ", ".join(f"{k} {v}" for k, v in sorted(r["exit_reasons"].items()))

            def cell(key: str, pct: bool = False, r: Mapping[str, Any] = r) -> str:
                return f"{_fmt(r[key], pct)}{_range((r.get('spread') or {}).get(key), pct)}"

            lines.append(
                f"| {system} | {rate} | {cell('attainment', True)} | {cell('p50_s')} | "
                f"{cell('p90_s')} | {cell('mean_tokens')} | "
                f"{_correct(r.get('accuracy_pooled'))} | {cell('mean_wait_s')} | "
                f"{r['errors']} | {exits} |"
            )
    return lines


def _per_program(runs: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Accuracy per program of a mixed workload (nothing for a single program)."""
    labels = {
        p
        for by_rate in runs.values()
        for r in by_rate.values()
        for p in r.get("accuracy_by_program") or {}
    }
    if len(labels) < 2:
        return []
    lines = ["", "## Accuracy per program (pooled over repeats, 95% CI)", ""]
    lines += ["| system | rate | " + " | ".join(sorted(labels)) + " |"]
    lines += ["|---|---|" + "---|" * len(labels)]
    for system, by_rate in runs.items():
        for rate, r in by_rate.items():
            acc = r.get("accuracy_by_program") or {}
            cells = " | ".join(_correct(acc.get(p)) for p in sorted(labels))
            lines.append(f"| {system} | {rate} | {cells} |")
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
        "worker and not separated. Accuracy counts a failed program as wrong; its interval is "
        "Wilson's, over every program of every repeat.",
        "",
    ]


def one_line(summary: Mapping[str, Any]) -> str:
    """The closing line: each system's max rate at the target (the median over repeats, with
    its range), its ratio to sglang and its accuracy at that rate."""
    parts = []
    for system, e in summary["max_rate_at_target"].items():
        ratio = f" ({e['ratio_to_sglang']:g}× sglang)" if e["ratio_to_sglang"] else ""
        rate = "none" if e["rate"] is None else f"{e['rate']:g}/s{_range(e.get('rate_spread'))}"
        at = e.get("accuracy_at_merit") or {}
        if at.get("rate") is not None:
            ratio += f", accuracy {_correct(at)} at {at['rate']:g}/s"
        parts.append(f"{system} {rate}{ratio}")
    target = f"{100 * summary['target_attainment']:.0f}%"
    repeats = len(summary.get("repeats") or [0])
    median = f" (median of {repeats} repeats)" if repeats > 1 else ""
    return (
        f"max rate with ≥{target} on time at SLO {summary['slo_scale']:g}×{median}: "
        + "; ".join(parts)
    )
