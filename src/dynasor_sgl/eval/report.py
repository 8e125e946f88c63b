"""Summaries of a results file: accuracy with a 95% interval, tokens, savings, curves.

Accuracy intervals are Wilson score intervals (well behaved at 0% and 100%). Savings are
relative to the even-budget baseline on the same questions: saved = 1 − mean tokens / baseline
mean tokens, and the fraction of the oracle's saving = saved / oracle's saved. Each row also
counts the answers that differ from the baseline's (the full budget's: what the bound of the
self-calibrated row is about). Only questions with an ok record for every row are compared, so
all rows see the same questions. For self-consistency the curves (baseline at each cap, the
threshold rule at each threshold, ...) are replayed from the baseline's samples, and each
replayed row is set beside the fixed-cap curve at its own mean tokens. Pure: no I/O (see
`dynasor_sgl.eval.plots` for the figures).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from dynasor_sgl.answers import equivalence as _answers
from dynasor_sgl.eval.curves import cap_accuracy_at, curves, versus_caps
from dynasor_sgl.protocol import UNITS_KEYS
from dynasor_sgl.replay.engine import same_answer
from dynasor_sgl.replay.sampled import row_of

Z95 = 1.959963984540054


def wilson(correct: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval for correct/n; (0, 1) when n = 0."""
    if n == 0:
        return 0.0, 1.0
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half))


def _complete(
    records: Sequence[Mapping[str, Any]], rows: Sequence[str]
) -> dict[str, dict[str, Mapping[str, Any]]]:
    """question id -> row -> ok record, for questions that have every row ok."""
    by_q: dict[str, dict[str, Mapping[str, Any]]] = {}
    for r in records:
        if r.get("status") == "ok":
            by_q.setdefault(str(r["question_id"]), {})[str(row_of(r))] = r
    return {q: rs for q, rs in by_q.items() if all(p in rs for p in rows)}


def _stats(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    n = len(rows)
    correct = sum(bool(r.get("correct")) for r in rows)
    low, high = wilson(correct, n)
    tokens = [int(r["tokens"]["total"]) for r in rows]
    kinds = {
        k: sum(int(r["tokens"].get(k, 0)) for r in rows) / n if n else 0.0
        for k in ("reasoning", "probe", "reward")
    }
    return {
        "n": n,
        "accuracy": correct / n if n else 0.0,
        "ci95": [low, high],
        "mean_tokens": sum(tokens) / n if n else 0.0,
        "mean_tokens_by_kind": kinds,
        "mean_used": sum(int(r.get("steps") or 0) for r in rows) / n if n else 0.0,
        "exit_reasons": dict(Counter(str(r.get("exit_reason")) for r in rows)),
        **_unanswered(rows),
    }


def _unanswered(rows: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """What the accuracy rests on: runs whose final answer was None, and (where a program
    records its samples' answers) samples with no extractable answer out of all samples."""
    samples = [a for r in rows for a in ((r.get("details") or {}).get("answers") or [])]
    return {
        "no_answer": sum(r.get("answer") is None for r in rows),
        "samples": len(samples),
        "samples_without_answer": sum(not _answers.normalize(a) for a in samples),
    }


def summarize(
    records: Sequence[Mapping[str, Any]], rows: Sequence[str], meta: Mapping[str, Any]
) -> dict[str, Any]:
    """The summary JSON: per-row stats, savings vs baseline, errors, and SC curves."""
    complete = _complete(records, rows)
    stats = {p: _stats([rs[p] for rs in complete.values()]) for p in rows}
    base = stats["baseline"]["mean_tokens"]

    def saved(row: str) -> float | None:
        return 1 - stats[row]["mean_tokens"] / base if base else None

    oracle = saved("oracle") if "oracle" in stats else None
    for p in rows:
        mine = saved(p)
        stats[p]["saved_vs_baseline"] = mine
        stats[p]["fraction_of_oracle_saving"] = (
            None if mine is None or not oracle else mine / oracle
        )
        stats[p]["differ_from_baseline"] = _differ(complete.values(), p)
    summary: dict[str, Any] = {**meta, "questions": len(complete), "rows": stats}
    summary["errors"] = sum(r.get("status") == "error" for r in records)
    if "oracle" in stats and "dynasor" in stats:
        summary["fraction_of_oracle_saving"] = stats["dynasor"]["fraction_of_oracle_saving"]
    if "dynasor" in stats:
        lo, hi = stats["baseline"]["ci95"]
        summary["dynasor_accuracy_within_baseline_ci"] = lo <= stats["dynasor"]["accuracy"] <= hi
    if meta.get("modes", {}).get("dynasor") == "replay" and complete:
        summary["curves"] = curves([rs["baseline"] for rs in complete.values()], meta)
        summary["versus_fixed_caps"] = versus_caps(summary["curves"])
        for p in rows:
            if p != "baseline":
                stats[p]["fixed_cap_accuracy"] = cap_accuracy_at(
                    summary["curves"]["baseline_by_cap"], stats[p]["mean_tokens"]
                )
        read = "paper" if "paper" in rows else "dynasor"
        summary["certaindex_at_detection"] = detection_values(
            [rs[read] for rs in complete.values()]
        )
    return summary


def _differ(complete: Iterable[Mapping[str, Mapping[str, Any]]], row: str) -> int:
    """How many questions' `row` answer differs from their baseline (full-budget) answer."""
    return sum(
        not same_answer(rs[row].get("answer"), rs["baseline"].get("answer")) for rs in complete
    )


def detection_values(rows: Sequence[Mapping[str, Any]]) -> dict[str, list[float]]:
    """The first certaindex value each program read, split by whether its answer was right."""
    out: dict[str, list[float]] = {"correct": [], "wrong": []}
    for r in rows:
        trajectory = r.get("certaindex") or []
        first = trajectory[0] if trajectory else {}
        values = [v for k, v in first.items() if k not in UNITS_KEYS]
        if values:
            out["correct" if r.get("correct") else "wrong"].append(float(values[0]))
    return out


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


ROW_NOTES = {
    "baseline": "full budget",
    "dynasor": "self-calibrated, held out",
    "paper": "fixed thresholds",
    "oracle": "stops where the answer settles",
}


def markdown(summary: Mapping[str, Any]) -> str:
    """The summary as a Markdown table with a few lines of context."""
    lines = [
        f"# {summary.get('program')} on {summary.get('dataset')} "
        f"({summary['questions']} questions)",
        "",
        f"Answer checker: {summary.get('checker')}. Router: {summary.get('router')}. "
        f"Errors (retried on resume): {summary['errors']}.",
        "",
        "| row | mode | accuracy (95% CI) | mean tokens | probe + reward tokens | mean knob units "
        "| saved vs baseline | of the oracle's saving | answers differing from the baseline "
        "| fixed cap at equal tokens | no answer (runs; samples) | exits |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    modes = summary.get("modes", {})
    for name, s in summary["rows"].items():
        lo, hi = s["ci95"]
        kinds = s["mean_tokens_by_kind"]
        exits = ", ".join(f"{k} {v}" for k, v in sorted(s["exit_reasons"].items()))
        cap = s.get("fixed_cap_accuracy")
        note = f" ({ROW_NOTES[name]})" if modes.get("dynasor") == "replay" else ""
        lines.append(
            f"| {name}{note} | {modes.get(name, '')} | {100 * s['accuracy']:.1f}% "
            f"({100 * lo:.1f}–{100 * hi:.1f}) | {s['mean_tokens']:.1f} "
            f"| {kinds['probe'] + kinds['reward']:.1f} | {s['mean_used']:.2f} "
            f"| {_pct(s['saved_vs_baseline'])} | {_pct(s['fraction_of_oracle_saving'])} "
            f"| {s['differ_from_baseline']}/{s['n']} | {'' if cap is None else _pct(cap)} "
            f"| {s['no_answer']}; {s['samples_without_answer']}/{s['samples']} | {exits} |"
        )
    lines += bound_lines(summary.get("bound"))
    if modes.get("dynasor") == "live":
        lines.append(
            "Both policies ran live on the same workers, Dynasor first: prefill the worker's "
            "prefix cache served from the first run is not counted to the second, so the "
            "baseline's tokens are, if anything, understated."
        )
    if "dynasor_accuracy_within_baseline_ci" in summary:
        inside = summary["dynasor_accuracy_within_baseline_ci"]
        lines.append(f"Dynasor accuracy within the baseline's 95% CI: {'yes' if inside else 'no'}.")
    return "\n".join(lines + _versus_caps_lines(summary.get("versus_fixed_caps") or {})) + "\n"


def bound_lines(bound: Mapping[str, Any] | None) -> list[str]:
    """What the self-calibrated row rests on: ε, δ, each fold's fit, disagreements observed."""
    if not bound:
        return []
    folds = "; ".join(
        f"fold {k + 1} fitted on the other's {f['programs']} runs: "
        + (
            f"certified {f['family']}, {f['candidate']}"
            if f["certified"]
            else f"nothing certified (they certify at best ε {f['certifiable_epsilon']:.3f}), "
            "full budget"
        )
        for k, f in enumerate(bound["folds"])
    )
    return [
        "",
        f"dynasor: thresholds fitted label free on the other fold's full-budget runs, "
        f"disagreement with the full budget at most ε {bound['epsilon']:g} with confidence "
        f"1 − δ {bound['delta']:g} ({folds or 'too few questions for two folds: full budget'}). "
        f"Observed: {bound['disagreements']}/{bound['n']} answers differ from the full budget.",
        "",
    ]


def _versus_caps_lines(versus: Mapping[str, Mapping[str, float]]) -> list[str]:
    """Which replayed curve is above the fixed-cap curve, and by how much (all questions)."""
    if not versus:
        return []
    lines = [
        "",
        "Against the fixed-cap curve at equal tokens (each curve's frontier; all questions, "
        "not held out):",
        "",
        "| curve | accuracy gained, least – most (points) | frontier on or above |",
        "|---|---|---|",
    ]
    for name, v in versus.items():
        lines.append(
            f"| {name} | {100 * v['min_gain']:+.1f} – {100 * v['max_gain']:+.1f} "
            f"| {100 * v['share_on_or_above']:.0f}% |"
        )
    return lines
