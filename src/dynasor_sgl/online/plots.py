"""PNG figures of the online benchmark (matplotlib, headless), one function per figure.

attainment vs rate at the chosen SLO scale (paper Fig. 8a), attainment vs SLO scale at a fixed
rate (8b), accuracy against attainment (8c: one point per rate; higher and further right is
better), P50/P90 latency per system and rate, tokens per program, and the CDF of finish-time
fairness (latency per token) at the fixed rate. With repeats, each point is the median over
repeats and the attainment and latency curves carry the range (min-max) as error bars. Reads
the summary and the program records.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.axes import Axes

from dynasor_sgl.online import metrics as m

FIGURES = (
    "attainment_vs_rate",
    "attainment_vs_slo",
    "accuracy_vs_attainment",
    "latency",
    "tokens",
    "fairness_cdf",
)


def _series(summary: Mapping[str, Any], system: str, key: str) -> tuple[list[float], list[Any]]:
    runs = summary["runs"][system]
    rates = sorted(runs, key=float)
    return [float(r) for r in rates], [runs[r][key] for r in rates]


def _errors(
    summary: Mapping[str, Any], system: str, key: str, scale: float = 1.0
) -> list[list[float]] | None:
    """Error bars (below, above the median) from each run's range over repeats; None when no
    run has a range (one repeat)."""
    runs = summary["runs"][system]
    lo, hi = [], []
    for rate in sorted(runs, key=float):
        median = runs[rate].get(key)
        pair = (runs[rate].get("spread") or {}).get(key) or [None, None]
        known = median is not None and None not in pair
        lo.append(scale * (median - pair[0]) if known else 0.0)
        hi.append(scale * (pair[1] - median) if known else 0.0)
    return [lo, hi] if any(lo) or any(hi) else None


def _save(fig: Any, ax: Axes, title: str, path: Path) -> None:
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def attainment_vs_rate(summary: Mapping[str, Any], path: Path) -> None:
    curves = {
        system: list(zip(*_series(summary, system, "attainment"), strict=True))
        for system in summary["systems"]
    }
    bars = {s: _errors(summary, s, "attainment", 100.0) for s in summary["systems"]}
    title = f"SLO attainment at SLO scale {summary['slo_scale']:g}"
    if len(summary.get("repeats") or [0]) > 1:
        title += f" (median of {len(summary['repeats'])} repeats, range)"
    _attainment(summary, curves, "arrival rate (programs/s)", title, path, bars)


def attainment_vs_slo(summary: Mapping[str, Any], path: Path) -> None:
    title = f"SLO attainment at {summary['fixed_rate']:g} programs/s"
    xlabel = "SLO scale (deadline = scale × difficulty × base)"
    _attainment(summary, summary["attainment_vs_slo"], xlabel, title, path)


def _attainment(
    summary: Mapping[str, Any],
    curves: Mapping[str, Any],
    xlabel: str,
    title: str,
    path: Path,
    bars: Mapping[str, list[list[float]] | None] | None = None,
) -> None:
    """Programs on time (%) against `xlabel`, one curve a system ((x, attainment) points, with
    error bars from `bars` where given), the target attainment dashed."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for system, points in curves.items():
        ax.errorbar(
            [p[0] for p in points],
            [100 * (p[1] or 0) for p in points],
            yerr=(bars or {}).get(system),
            fmt="o-",
            ms=4,
            capsize=3,
            label=system,
        )
    ax.axhline(100 * summary["target_attainment"], color="black", ls="--", lw=1)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("programs on time (%)")
    _save(fig, ax, title, path)


def accuracy_vs_attainment(summary: Mapping[str, Any], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for system in summary["systems"]:
        _, att = _series(summary, system, "attainment")
        _, acc = _series(summary, system, "accuracy")
        pairs = sorted((100 * (a or 0), 100 * (c or 0)) for a, c in zip(att, acc, strict=True))
        ax.plot([p[0] for p in pairs], [p[1] for p in pairs], "o-", ms=4, label=system)
    ax.set_xlabel(f"programs on time at SLO scale {summary['slo_scale']:g} (%), one point per rate")
    ax.set_ylabel("accuracy (%)")
    _save(fig, ax, "Accuracy at equal SLO attainment", path)


def latency(summary: Mapping[str, Any], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for i, system in enumerate(summary["systems"]):
        xs, p50 = _series(summary, system, "p50_s")
        _, p90 = _series(summary, system, "p90_s")
        color = f"C{i % 10}"
        for ys, key, fmt in ((p50, "p50_s", "o-"), (p90, "p90_s", "s--")):
            ax.errorbar(
                xs,
                [math.nan if y is None else y for y in ys],
                yerr=_errors(summary, system, key),
                fmt=fmt,
                ms=4,
                capsize=3,
                color=color,
                label=f"{system} {key[:3].upper()}",
            )
    ax.set_xlabel("arrival rate (programs/s)")
    ax.set_ylabel("latency from arrival (s)")
    _save(fig, ax, "Program latency", path)


def tokens(summary: Mapping[str, Any], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    systems = summary["systems"]
    rates = summary["rates"]
    width = 0.8 / max(1, len(rates))
    for j, rate in enumerate(rates):
        ys = [(summary["runs"][s].get(str(rate)) or {}).get("mean_tokens") or 0 for s in systems]
        ax.bar([i + j * width for i in range(len(systems))], ys, width, label=f"{rate:g}/s")
    ax.set_xticks(
        [i + width * (len(rates) - 1) / 2 for i in range(len(systems))],
        systems,
        rotation=20,
        fontsize=8,
    )
    ax.set_ylabel("tokens per program (mean)")
    _save(fig, ax, "Tokens per program", path)


def fairness_cdf(
    summary: Mapping[str, Any], records: Sequence[Mapping[str, Any]], path: Path
) -> None:
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    fixed = summary["fixed_rate"]
    for system in summary["systems"]:
        values = m.fairness(
            [r for r in records if r["system"] == system and float(r["rate"]) == fixed]
        )
        if values:
            xs, ys = m.cdf(values)
            ax.step(xs, ys, where="post", label=system)
    ax.set_xlabel("latency per token (s/token)")
    ax.set_ylabel("fraction of programs")
    _save(fig, ax, f"Finish-time fairness at {fixed:g} programs/s", path)


def write_all(
    summary: Mapping[str, Any], records: Sequence[Mapping[str, Any]], out: Path
) -> dict[str, str]:
    """Every figure into `out`; their paths by name."""
    paths = {name: out / f"{name}.png" for name in FIGURES}
    attainment_vs_rate(summary, paths["attainment_vs_rate"])
    attainment_vs_slo(summary, paths["attainment_vs_slo"])
    accuracy_vs_attainment(summary, paths["accuracy_vs_attainment"])
    latency(summary, paths["latency"])
    tokens(summary, paths["tokens"])
    fairness_cdf(summary, records, paths["fairness_cdf"])
    return {k: str(v) for k, v in paths.items()}
