"""PNG figures of an evaluation summary (matplotlib, headless).

`accuracy_vs_tokens`: the paper's Fig. 7 view: accuracy against mean tokens per question for
the even-budget baseline at several caps, the Dynasor policy at several thresholds, the
posterior rule and, where recorded, confidence weighting and trimming (`eval.curves`), with
the evaluated rows marked. `certaindex_histogram`: the certaindex read at the
first reading (the configured policy's), for programs whose answer was right vs wrong.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def accuracy_vs_tokens(summary: Mapping[str, Any], path: str | Path) -> None:
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    curves = summary.get("curves") or {}
    series = (
        ("baseline_by_cap", "baseline (numbers: cap)", "o-"),
        ("paper_by_threshold", "paper's threshold rule (numbers: threshold)", "s-"),
        ("paper_every_sample_by_threshold", "threshold rule, read every sample", "^--"),
        ("posterior_by_confidence", "majority posterior, every sample (confidence)", "v:"),
        ("weighted_by_cap", "confidence-weighted vote (cap)", "x-."),
        ("confidence_trim_by_percentile", "confidence trimming, DeepConf online (η)", "P--"),
    )
    for key, label, style in series:
        points = curves.get(key) or []
        xs = [p["mean_tokens"] for p in points]
        ys = [100 * p["accuracy"] for p in points]
        if points:
            ax.plot(xs, ys, style, ms=4, label=label)
        for p, x, y in zip(points, xs, ys, strict=True):
            ax.annotate(
                f"{p['x']:g}", (x, y), textcoords="offset points", xytext=(3, 3), fontsize=7
            )
    for name, s in summary["rows"].items():
        ax.errorbar(
            s["mean_tokens"],
            100 * s["accuracy"],
            yerr=[[100 * (s["accuracy"] - s["ci95"][0])], [100 * (s["ci95"][1] - s["accuracy"])]],
            fmt="D",
            ms=7,
            capsize=3,
            label=f"{name} (evaluated, 95% CI)",
        )
    ax.set_xlabel("mean tokens per question (all kinds)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(
        f"{summary.get('program')} on {summary.get('dataset')}: {summary['questions']} questions",
        fontsize=10,
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def certaindex_histogram(summary: Mapping[str, Any], path: str | Path) -> None:
    values = summary.get("certaindex_at_detection") or {}
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    bins = [i / 10 for i in range(11)]
    for key, color in (("correct", "tab:green"), ("wrong", "tab:red")):
        data = values.get(key) or []
        ax.hist(data, bins=bins, alpha=0.6, color=color, label=f"{key} ({len(data)})")
    threshold = (summary.get("fixed_thresholds") or {}).get("entropy")
    if threshold is not None:
        ax.axvline(threshold, color="black", ls="--", lw=1, label=f"threshold {threshold:g}")
    ax.set_xlabel("certaindex at the first reading")
    ax.set_ylabel("questions")
    ax.set_title("Certaindex at detection: final answer correct vs wrong", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
