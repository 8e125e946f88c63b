"""Accuracy-vs-tokens curves of self-consistency policies, all replayed over the same
full-budget samples: the even-budget baseline at every cap, the paper's threshold rule at
every threshold (read as the run's policy reads, and read after every sample), the
majority-posterior rule (Adaptive-Consistency), and, where the run recorded token
confidences, confidence weighting at every cap and confidence trimming (DeepConf online) at
every η. Pure: no I/O (the figure is `dynasor_sgl.eval.plots`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from dynasor_sgl.answers import equivalence as _answers
from dynasor_sgl.policy.config import PolicyConfig
from dynasor_sgl.replay.calibration import frontier as _frontier
from dynasor_sgl.replay.sampled import Outcome, SampledRun, replay_cap, replay_policy, sampled_run
from dynasor_sgl.replay.trimmed import replay_trimmed, replay_weighted_cap

POSTERIOR_CONFIDENCES = (0.6, 0.7, 0.8, 0.9, 0.95)
THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
PERCENTILES = (10.0, 30.0, 50.0, 70.0, 90.0)
# Replayed trimming's group window when the run's policy has none: short enough that a
# sample of a few dozen tokens (the embedded model's) has several full groups.
REPLAY_WINDOW = 8

Point = dict[str, float]


def _point(outcomes: Sequence[Outcome], golds: Sequence[str], label: float) -> Point:
    n = len(outcomes)
    correct = sum(_answers.equivalent(o.answer, g) for o, g in zip(outcomes, golds, strict=True))
    return {"x": label, "accuracy": correct / n, "mean_tokens": sum(o.tokens for o in outcomes) / n}


def curves(baselines: Sequence[Mapping[str, Any]], meta: Mapping[str, Any]) -> dict[str, Any]:
    """The curves of the baseline records (full-budget runs) under the run's `meta` policy:
    name -> points {"x": the swept value, "accuracy", "mean_tokens"}."""
    runs = [sampled_run(r["details"], int(r["tokens"]["total"])) for r in baselines]
    golds = [str(r["gold"]) for r in baselines]
    cap = min(len(r.answers) for r in runs)
    policy = dict(meta.get("policy") or {})

    def sweep(values: Sequence[float], outcome: Callable[[SampledRun, float], Outcome]) -> list:
        return [_point([outcome(r, v) for r in runs], golds, v) for v in values]

    def config(**overrides: Any) -> PolicyConfig:
        return PolicyConfig.for_algorithm("sc", **{**policy, **overrides})

    def every(**overrides: Any) -> PolicyConfig:
        return config(detect_every=1, pace=1, **overrides)

    out = {
        "baseline_by_cap": sweep(range(1, cap + 1), lambda r, c: replay_cap(r, int(c))),
        "paper_by_threshold": sweep(
            THRESHOLDS, lambda r, t: replay_policy(r, config(thresholds={"entropy": t}))
        ),
        "paper_every_sample_by_threshold": sweep(
            THRESHOLDS, lambda r, t: replay_policy(r, every(thresholds={"entropy": t}))
        ),
        "posterior_by_confidence": sweep(
            POSTERIOR_CONFIDENCES,
            lambda r, c: replay_policy(r, every(rule="posterior", confidence=c)),
        ),
    }
    if all(r.confidences is not None for r in runs):
        out.update(_confidence_curves(runs, golds, cap, config()))
    return out


def _confidence_curves(
    runs: Sequence[SampledRun], golds: Sequence[str], cap: int, config: PolicyConfig
) -> dict[str, list[Point]]:
    """Weighting alone at every cap; trimming alone (every sample drawn, the cut ones end
    early) at every η, with the run's policy's window (REPLAY_WINDOW if it has none) and
    warm-up."""
    window = config.confidence_window or REPLAY_WINDOW
    full = dataclasses.replace(
        config, initial=cap, pace=cap, detect_at=cap, detect_every=0, confidence_window=window
    )
    weighted = [
        _point([replay_weighted_cap(r, c) for r in runs], golds, c) for c in range(1, cap + 1)
    ]
    trimmed = [
        _point(
            [replay_trimmed(r, dataclasses.replace(full, confidence_percentile=eta)) for r in runs],
            golds,
            eta,
        )
        for eta in PERCENTILES
    ]
    return {"weighted_by_cap": weighted, "confidence_trim_by_percentile": trimmed}


def frontier(points: Sequence[Point]) -> list[Point]:
    """The points no other point beats (`replay.calibration.frontier` over mean tokens)."""
    return _frontier(points, lambda p: p["accuracy"], lambda p: p["mean_tokens"])


def cap_accuracy_at(caps: Sequence[Point], mean_tokens: float) -> float:
    """The fixed-cap curve's accuracy at `mean_tokens` (linear between caps, flat past ends)."""
    ordered = sorted(caps, key=lambda p: p["mean_tokens"])
    xs, ys = [p["mean_tokens"] for p in ordered], [p["accuracy"] for p in ordered]
    return float(np.interp(mean_tokens, xs, ys))


def gain_over_caps(points: Sequence[Point], caps: Sequence[Point]) -> list[Point]:
    """Each frontier point of `points` with its accuracy minus the fixed-cap curve's at the
    same mean tokens (`gain`, `cap_accuracy_at`)."""
    return [
        {**p, "gain": p["accuracy"] - cap_accuracy_at(caps, p["mean_tokens"])}
        for p in frontier(points)
    ]


def versus_caps(all_curves: Mapping[str, Sequence[Point]]) -> dict[str, dict[str, float]]:
    """Per curve other than the baseline's: the least and most accuracy its frontier gains
    over the fixed-cap curve at equal tokens, and the share of its frontier on or above it."""
    caps = all_curves["baseline_by_cap"]
    out = {}
    for name, points in all_curves.items():
        if name == "baseline_by_cap" or not points:
            continue
        gains = [p["gain"] for p in gain_over_caps(points, caps)]
        out[name] = {
            "min_gain": min(gains),
            "max_gain": max(gains),
            "share_on_or_above": sum(g >= -1e-9 for g in gains) / len(gains),
        }
    return out
