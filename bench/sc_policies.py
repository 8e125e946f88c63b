"""Every self-consistency policy on held-out questions: which saves tokens at the full budget's
accuracy, and which curve is above the fixed-cap curve.

Reads `dynasor-sgl eval` results of self-consistency (full-budget baseline runs that recorded
every sample's answer, tokens and token confidences, `record_topk`) and replays, over the same
samples, each family of policies at every setting in its grid:
  - fixed cap (the even-budget baseline with fewer samples);
  - the paper's threshold rule, read once at 5;
  - the threshold rule read after every sample from a first reading d;
  - the majority-posterior rule (Adaptive-Consistency), read after every sample from d;
  - confidence weighting (DeepConf's weighted vote) at every cap;
  - confidence trimming (DeepConf online: warm-up, group window, η), all samples drawn;
  - confidence trimming with the posterior stop.
Held out, 2-fold (`dynasor_sgl.replay.holdout.choose_held_out`): questions are split in halves
by a hash of their id; in each family the setting with the fewest tokens whose accuracy on one
half is within `margin` of that half's full-budget accuracy is chosen (the full budget when none
is) and measured on the other half, then the other way round (pooled). Also, over all questions,
each family's frontier against the fixed-cap curve: the accuracy gained at equal tokens (fixed-
cap accuracy linearly interpolated). Writes `<results>.policies.json` and prints a table. No
SGLang: replay only.

    .venv/bin/python bench/sc_policies.py docs/results/sc-confidence/add1.jsonl
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import product
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from dynasor_sgl.answers import equivalence as answers
from dynasor_sgl.eval.curves import gain_over_caps
from dynasor_sgl.eval.report import wilson
from dynasor_sgl.eval.results import read_records
from dynasor_sgl.policy.config import PolicyConfig
from dynasor_sgl.replay.holdout import choose_held_out
from dynasor_sgl.replay.sampled import (
    Outcome,
    SampledRun,
    full_budget_runs,
    replay_cap,
    replay_policy,
)
from dynasor_sgl.replay.trimmed import replay_trimmed, replay_weighted_cap

MARGINS = (0.0, 0.01, 0.02)
Policy = Callable[[SampledRun], Outcome]


@dataclass(frozen=True)
class Question:
    id: str
    gold: str
    run: SampledRun


def sc(**overrides: Any) -> PolicyConfig:
    return PolicyConfig.for_algorithm("sc", **overrides)


def families(cap: int, confidences: bool) -> dict[str, dict[str, Policy]]:
    """Family -> setting label -> policy (the confidence families only with `confidences`)."""
    full = sc(cap=cap, initial=cap, pace=cap, detect_at=cap, detect_every=0)
    thresholds = [round(t, 2) for t in np.arange(0.3, 1.001, 0.05)]
    firsts = (2, 3, 5)
    levels = (0.6, 0.7, 0.8, 0.9, 0.95, 0.99)
    trims = [
        {"confidence_window": w, "confidence_percentile": eta, "warmup": warm}
        for w, eta, warm in product((4, 8, 16, 32), (10.0, 30.0, 50.0, 70.0, 90.0), (3, 4, 5))
    ]
    out: dict[str, dict[str, Policy]] = {
        "fixed cap": {f"cap {k}": _cap(k) for k in range(1, cap + 1)},
        "threshold, once at 5 (paper)": {
            f"t {t}": _policy(sc(cap=cap, detect_at=5, detect_every=0, thresholds={"entropy": t}))
            for t in thresholds
        },
        "threshold, every sample": {
            f"t {t} from {d}": _policy(every(cap, d, thresholds={"entropy": t}))
            for t, d in product(thresholds, firsts)
        },
        "posterior, every sample": {
            f"c {c} from {d}": _policy(every(cap, d, rule="posterior", confidence=c))
            for c, d in product(levels, firsts)
        },
        "confidence-weighted vote": {f"cap {k}": _weighted(k) for k in range(1, cap + 1)},
        "confidence trimming": {_label(t): _trimmed(t, full) for t in trims},
        "trimming + posterior": {
            f"{_label(t)}, c {c}": _trimmed(
                t, every(cap, t["warmup"], rule="posterior", confidence=c)
            )
            for t, c in product(trims, (0.8, 0.9, 0.95))
            if t["warmup"] in (3, 5)
        },
    }
    if not confidences:
        for family in ("confidence-weighted vote", "confidence trimming", "trimming + posterior"):
            del out[family]
    return out


def every(cap: int, first: int, **overrides: Any) -> PolicyConfig:
    return sc(cap=cap, initial=first, pace=1, detect_at=first, detect_every=1, **overrides)


def _label(t: dict[str, Any]) -> str:
    return f"w {t['confidence_window']} η {t['confidence_percentile']:g} warm {t['warmup']}"


def _cap(k: int) -> Policy:
    return lambda run: replay_cap(run, k)


def _weighted(k: int) -> Policy:
    return lambda run: replay_weighted_cap(run, k)


def _policy(config: PolicyConfig) -> Policy:
    return lambda run: replay_policy(run, config)


def _trimmed(trim: dict[str, Any], config: PolicyConfig) -> Policy:
    """Trimming with the knobs `trim` over `config`'s stop."""
    trimming = dataclasses.replace(config, **trim)
    return lambda run: replay_trimmed(run, trimming)


def score(policy: Policy, questions: Sequence[Question]) -> tuple[np.ndarray, np.ndarray]:
    """Per question: correct (0/1) and tokens."""
    outs = [policy(q.run) for q in questions]
    correct = [answers.equivalent(o.answer, q.gold) for o, q in zip(outs, questions, strict=True)]
    return np.array(correct, dtype=float), np.array([o.tokens for o in outs], dtype=float)


def held_out_row(
    table: dict[str, tuple[np.ndarray, np.ndarray]],
    full: tuple[np.ndarray, np.ndarray],
    ids: Sequence[str],
    margin: float,
) -> dict[str, Any]:
    """The family through the one held-out procedure (`holdout.choose_held_out`), with a
    Wilson interval on its accuracy."""
    row = choose_held_out(table, full, ids, margin)
    return {**row, "ci95": wilson(row["correct"], len(ids))}


def points(table: dict[str, tuple[np.ndarray, np.ndarray]]) -> list[dict[str, Any]]:
    """Each setting over all questions: {"x": label, "accuracy", "mean_tokens"}."""
    return [{"x": s, "accuracy": c.mean(), "mean_tokens": t.mean()} for s, (c, t) in table.items()]


def load(path: Path) -> list[Question]:
    _, records = read_records(path)
    return [Question(r.question_id, str(r.gold), r.run) for r in full_budget_runs(records)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", type=Path)
    args = ap.parse_args()
    questions = load(args.results)
    cap = min(len(q.run.answers) for q in questions)
    ids = [q.id for q in questions]
    full = score(_cap(cap), questions)
    report: dict[str, Any] = {"questions": len(questions), "cap": cap, "families": {}}
    recorded = all(q.run.confidences is not None for q in questions)
    caps: list[dict[str, Any]] = []
    for family, settings in families(cap, recorded).items():
        table = {s: score(p, questions) for s, p in settings.items()}
        caps = caps or points(table)  # the first family is the fixed caps
        frontier = gain_over_caps(points(table), caps)
        gains = [p["gain"] for p in frontier]
        report["families"][family] = {
            "held_out": {str(m): held_out_row(table, full, ids, m) for m in MARGINS},
            "frontier": frontier,
            "min_gain": min(gains),
            "max_gain": max(gains),
        }
    n_correct = int(full[0].sum())
    report["full"] = {
        "accuracy": full[0].mean(),
        "ci95": wilson(n_correct, len(questions)),
        "mean_tokens": full[1].mean(),
    }
    out = args.results.with_name(args.results.stem + ".policies.json")
    out.write_text(json.dumps(report, indent=2))
    plot(report, out.with_suffix(".png"), args.results.stem)
    print_table(report)
    print(f"wrote {out} and {out.with_suffix('.png')}")


def plot(report: dict[str, Any], path: Path, task: str) -> None:
    """Each family's frontier over all questions: accuracy against mean tokens."""
    fig, ax = plt.subplots(figsize=(7.2, 4.8))
    for family, row in report["families"].items():
        xs = [p["mean_tokens"] for p in row["frontier"]]
        ys = [100 * p["accuracy"] for p in row["frontier"]]
        ax.plot(xs, ys, "o-" if family == "fixed cap" else ".--", ms=4, label=family)
    full = report["full"]
    ax.plot(full["mean_tokens"], 100 * full["accuracy"], "kD", label="full budget")
    ax.set_xlabel("mean tokens per question (all samples drawn, prompt included)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"self-consistency on {task}: each policy family's frontier", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def print_table(report: dict[str, Any]) -> None:
    full = report["full"]
    print(
        f"{report['questions']} questions, cap {report['cap']}: full budget "
        f"{100 * full['accuracy']:.1f}% at {full['mean_tokens']:.0f} tokens. Held out, 2-fold "
        "(accuracy / mean tokens / saved), and the most and least accuracy gained over the "
        "fixed-cap curve on the family's frontier (all questions):"
    )
    for family, row in report["families"].items():
        cells = [
            f"m{float(m):.2f} {100 * r['accuracy']:.1f}%/{r['mean_tokens']:.0f}/"
            f"{100 * r['saved']:.0f}%"
            for m, r in row["held_out"].items()
        ]
        print(
            f"  {family:30s} {'  '.join(cells)}  gain {100 * row['min_gain']:+.1f}.."
            f"{100 * row['max_gain']:+.1f} pts"
        )


if __name__ == "__main__":
    main()
