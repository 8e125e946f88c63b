"""Speed of the pure core: clustering answers with math-verify, and one policy decision.

Seeded, warmed up, timed; writes bench/results/core_speed.json and prints a one-line summary.
    .venv/bin/python bench/core_speed.py [--iterations N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from dynasor_sgl.answers import equivalence as answers
from dynasor_sgl.answers.verifier import default_worker
from dynasor_sgl.policy import certaindex
from dynasor_sgl.policy.machine import PolicyConfig, ProgramPolicy, Report

RESULTS = Path(__file__).parent / "results" / "core_speed.json"

# 20 answers in 6 equivalence classes, written so that most pairs need math-verify.
ANSWERS = [
    r"\frac{1}{2}",
    "0.5",
    "1/2",
    r"\dfrac{2}{4}",
    r"\sqrt{4}",
    "2",
    r"\frac{4}{2}",
    "x+1",
    "1+x",
    r"x + 1",
    r"\pi",
    r"\frac{\pi}{1}",
    "3.14",
    r"2\sqrt{2}",
    r"\sqrt{8}",
    r"\frac{3}{4}",
    "0.75",
    "75\\%",
    r"\frac{1}{2}",
    "2.0",
]


def stats_us(samples_ns: list[int]) -> dict[str, float]:
    us = np.asarray(samples_ns, dtype=float) / 1000.0
    return {
        "mean_us": float(us.mean()),
        "p50_us": float(np.percentile(us, 50)),
        "p99_us": float(np.percentile(us, 99)),
        "n": len(us),
    }


def time_calls(
    fn: Callable[[], object],
    iterations: int,
    setup: Callable[[], None] | None = None,
) -> dict[str, float]:
    samples = []
    for _ in range(iterations):
        if setup is not None:
            setup()
        start = time.perf_counter_ns()
        fn()
        samples.append(time.perf_counter_ns() - start)
    return stats_us(samples)


def bench_cluster(iterations: int, rng: random.Random) -> dict[str, Any]:
    start = time.perf_counter()
    default_worker().start()
    startup_s = time.perf_counter() - start
    shuffled = list(ANSWERS)
    rng.shuffle(shuffled)
    classes = answers.cluster(shuffled)
    cold = time_calls(
        lambda: answers.cluster(shuffled), max(3, iterations // 200), setup=answers.clear_cache
    )
    answers.cluster(shuffled)
    cached = time_calls(lambda: answers.cluster(shuffled), iterations)
    return {
        "n_answers": len(ANSWERS),
        "n_classes": len(classes),
        "worker_startup_s": startup_s,
        "cold": cold,
        "cached": cached,
    }


def decision_cases(rng: random.Random) -> dict[str, tuple[PolicyConfig, Report]]:
    five = [str(rng.choice([7, 7, 7, 8])) for _ in range(5)]
    return {
        "sc_threshold_at_detect": (
            PolicyConfig.for_algorithm("sc"),
            Report(used=5, answers={f"b{i}": a for i, a in enumerate(five)}, slack=4),
        ),
        "sc_posterior_dirichlet": (
            PolicyConfig(rule="posterior", detect_every=1),
            Report(used=10, answers={f"b{i}": str(i % 3) for i in range(10)}),
        ),
        "sc_posterior_dirichlet_uncached": (
            PolicyConfig(rule="posterior", detect_every=1),
            Report(used=10, answers={f"b{i}": str(i % 3) for i in range(10)}),
        ),
        "mcts_reward": (
            PolicyConfig.for_algorithm("mcts"),
            Report(used=3, rewards={"a": 0.3, "b": 0.5, "c": 0.45}),
        ),
        "cot_probe_window3": (
            PolicyConfig.for_algorithm("cot"),
            Report(used=192, probe_answers=["12", "12", "12"], probe_texts=["12}", "12}", "12}"]),
        ),
        "between_detections": (PolicyConfig.for_algorithm("sc"), Report(used=3)),
    }


def bench_decisions(iterations: int, rng: random.Random) -> dict[str, dict[str, float]]:
    results = {}
    for name, (config, report) in decision_cases(rng).items():
        ProgramPolicy(config).decide(report)  # warm-up (and caches)
        samples = []
        for _ in range(iterations):
            if name.endswith("uncached"):
                certaindex._posterior_cached.cache_clear()
            policy = ProgramPolicy(config)  # fresh each time: a stopped policy is trivial
            start = time.perf_counter_ns()
            policy.decide(report)
            samples.append(time.perf_counter_ns() - start)
        results[name] = stats_us(samples)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--iterations", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    cluster = bench_cluster(args.iterations, rng)
    decisions = bench_decisions(args.iterations, rng)
    result = {
        "bench": "core_speed",
        "seed": args.seed,
        "iterations": args.iterations,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "cluster_20": cluster,
        "decision": decisions,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    worst = max(decisions.values(), key=lambda s: s["p99_us"])
    print(
        f"cluster 20 answers: cold {cluster['cold']['mean_us'] / 1000:.1f} ms, cached "
        f"{cluster['cached']['mean_us']:.0f} us; policy decision p50 "
        f"{np.median([s['p50_us'] for s in decisions.values()]):.1f} us, worst p99 "
        f"{worst['p99_us']:.1f} us -> {RESULTS}"
    )


if __name__ == "__main__":
    main()
