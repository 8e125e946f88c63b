"""Summaries of a results file: accuracy with a 95% interval, tokens, savings, curves.

Accuracy intervals are Wilson score intervals (well behaved at 0% and 100%). Savings are
relative to the even-budget baseline on the same questions: saved = 1 − mean tokens / baseline
mean tokens, and the fraction of the oracle's saving = saved / oracle's saved. Only questions
with an ok record for every policy are compared, so all policies see the same questions. For
self-consistency the curves (baseline at each cap, Dynasor at each threshold) are replayed from
the baseline's samples. Pure: no I/O (see `dynasor_sgl.eval.plots` for the figures).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from dynasor_sgl.answers import equivalence as _answers
from dynasor_sgl.eval.curves import curves, versus_caps

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
    records: Sequence[Mapping[str, Any]], policies: Sequence[str]
) -> dict[str, dict[str, Mapping[str, Any]]]:
    """question id -> policy -> ok record, for questions that have all policies ok."""
    by_q: dict[str, dict[str, Mapping[str, Any]]] = {}
    for r in records:
        if r.get("status") == "ok":
            by_q.setdefault(str(r["question_id"]), {})[str(r["policy"])] = r
    return {q: rs for q, rs in by_q.items() if all(p in rs for p in policies)}


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
        "mean_steps": sum(int(r.get("steps") or 0) for r in rows) / n if n else 0.0,
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
    records: Sequence[Mapping[str, Any]], policies: Sequence[str], meta: Mapping[str, Any]
) -> dict[str, Any]:
    """The summary JSON: per-policy stats, savings vs baseline, errors, and SC curves."""
    complete = _complete(records, policies)
    stats = {p: _stats([rs[p] for rs in complete.values()]) for p in policies}
    base = stats["baseline"]["mean_tokens"]

    def saved(policy: str) -> float | None:
        return 1 - stats[policy]["mean_tokens"] / base if base else None

    for p in policies:
        stats[p]["saved_vs_baseline"] = saved(p)
    summary: dict[str, Any] = {**meta, "questions": len(complete), "policies": stats}
    summary["errors"] = sum(r.get("status") == "error" for r in records)
    if "oracle" in stats and "dynasor" in stats:
        ds, os_ = saved("dynasor"), saved("oracle")
        summary["fraction_of_oracle_saving"] = ds / os_ if ds is not None and os_ else None
    if "dynasor" in stats:
        lo, hi = stats["baseline"]["ci95"]
        summary["dynasor_accuracy_within_baseline_ci"] = lo <= stats["dynasor"]["accuracy"] <= hi
    if meta.get("modes", {}).get("dynasor") == "replay" and complete:
        summary["curves"] = curves([rs["baseline"] for rs in complete.values()], meta)
        summary["versus_fixed_caps"] = versus_caps(summary["curves"])
        summary["certaindex_at_detection"] = detection_values(
            [rs["dynasor"] for rs in complete.values()]
        )
    return summary


def detection_values(rows: Sequence[Mapping[str, Any]]) -> dict[str, list[float]]:
    """The first certaindex value each program read, split by whether its answer was right."""
    out: dict[str, list[float]] = {"correct": [], "wrong": []}
    for r in rows:
        trajectory = r.get("certaindex") or []
        values = [v for k, v in trajectory[0].items() if k != "step"] if trajectory else []
        if values:
            out["correct" if r.get("correct") else "wrong"].append(float(values[0]))
    return out


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def markdown(summary: Mapping[str, Any]) -> str:
    """The summary as a Markdown table with a few lines of context."""
    lines = [
        f"# {summary.get('program')} on {summary.get('dataset')} "
        f"({summary['questions']} questions)",
        "",
        f"Answer checker: {summary.get('checker')}. Router: {summary.get('router')}. "
        f"Errors (retried on resume): {summary['errors']}.",
        "",
        "| policy | mode | accuracy (95% CI) | mean tokens | probe + reward tokens | mean steps "
        "| saved vs baseline | no answer (runs; samples) | exits |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    modes = summary.get("modes", {})
    for name, s in summary["policies"].items():
        lo, hi = s["ci95"]
        kinds = s["mean_tokens_by_kind"]
        exits = ", ".join(f"{k} {v}" for k, v in sorted(s["exit_reasons"].items()))
        lines.append(
            f"| {name} | {modes.get(name, '')} | {100 * s['accuracy']:.1f}% "
            f"({100 * lo:.1f}–{100 * hi:.1f}) | {s['mean_tokens']:.1f} "
            f"| {kinds['probe'] + kinds['reward']:.1f} | {s['mean_steps']:.2f} "
            f"| {_pct(s['saved_vs_baseline'])} | {s['no_answer']}; "
            f"{s['samples_without_answer']}/{s['samples']} | {exits} |"
        )
    if "fraction_of_oracle_saving" in summary:
        lines += [
            "",
            f"Fraction of the oracle's saving: {_pct(summary['fraction_of_oracle_saving'])}.",
        ]
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
