"""Engines from a real run's step traces (`sim.speed`) on a hand-made bench folder.

One `priority` worker served two runs, parrot at 0.5/s (started at 0 s on the worker's
clock, 10 s long) and parrot at 1/s (from 100 s). In each it ran the same four steps: decode
B = 1 and B = 2, prefill P = 100 and P = 200 (one request each). In the first run they took
what the model decode 0.1 + 0.01·B, prefill 0.2 + 0.001·P says (0.11, 0.12, 0.3, 0.4 s), in
the second twice that (0.22, 0.24, 0.6, 0.8 s). The least-squares fit over both runs goes
through the means at each point, so it is 1.5 × that model: decode 0.15 + 0.015·B, prefill
0.3 + 0.0015·P (one request per prefill: no per-request term, 0). Against it the first run's
steps took 0.93 s of a predicted 1.395 s (slowdown 2/3) and the second's 1.86 s (4/3).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dynasor_sgl.sim.profile import Profile
from dynasor_sgl.sim.speed import engines_from_run, engines_per_run, worker_traces

PROFILE = Profile("cpu-x", 1.0, 1.0, 1.0, router_cpu_s=0.015, source={"kv_tokens": "default"})
NOMINAL = {
    "base_s": 0.1,
    "per_request_s": 0.01,
    "prefill_base_s": 0.2,
    "per_prefill_token_s": 0.001,
}
# (mode, batch, new tokens, nominal seconds)
STEPS = [
    ("decode", 1, 0, 0.11),
    ("decode", 2, 0, 0.12),
    ("extend", 1, 100, 0.3),
    ("extend", 1, 200, 0.4),
]


def step_lines(start: float, factor: float) -> list[dict]:
    """The four steps one second apart from `start`, `factor` times the nominal seconds."""
    lines = []
    for i, (mode, batch, tokens, seconds) in enumerate(STEPS):
        t = start + i
        end = t + seconds * factor
        lines.append({"mode": mode, "batch": batch, "new_tokens": tokens, "t": t, "run_end": end})
    return lines


def bench_folder(root: Path, runs: list[tuple[str, float, float]]) -> Path:
    """A `bench online` folder with `runs` (system, rate, start) of 10 s each and the
    priority worker's step trace of the two runs above."""
    rows = [
        {"kind": "run", "system": s, "rate": r, "wall_s": 10.0, "started_monotonic": t}
        for s, r, t in runs
    ]
    root.mkdir(exist_ok=True)
    (root / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    trace = root / "logs" / "worker-priority" / "steps.jsonl"
    trace.parent.mkdir(parents=True)
    lines = step_lines(0.0, 1.0) + step_lines(100.0, 2.0)
    trace.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return root


TWO_RUNS = [("parrot", 0.5, 0.0), ("parrot", 1.0, 100.0)]


def coefficients(p: Profile) -> dict[str, float | None]:
    return {name: getattr(p, name) for name in NOMINAL}


def flat(schedule: tuple[tuple[float, float], ...]) -> list[float]:
    return [x for pair in schedule for x in pair]


def times(factor: float) -> dict[str, Any]:
    return {name: pytest.approx(value * factor) for name, value in NOMINAL.items()}


def test_the_whole_trace_fit_is_one_engine_per_worker_flavour(tmp_path: Path) -> None:
    folder = bench_folder(tmp_path, TWO_RUNS)
    (w,) = worker_traces(folder)
    assert (w.flavour, w.fit.decode_steps, w.fit.extend_steps) == ("priority", 4, 4)
    engines = engines_from_run(PROFILE, folder)
    assert list(engines) == ["priority"]
    engine = engines["priority"]
    assert coefficients(engine) == times(1.5)
    assert engine.per_new_request_s == 0.0
    # the rest of the profile is kept, and each coefficient says where it came from
    assert engine.router_cpu_s == 0.015 and engine.source["kv_tokens"] == "default"
    assert "4 decode and 4 prefill steps the worker ran" in engine.source["base_s"]


def test_each_run_gets_the_fit_at_its_own_speed(tmp_path: Path) -> None:
    engines, speeds = engines_per_run(PROFILE, bench_folder(tmp_path, TWO_RUNS))
    assert speeds == {}
    # 1.5 × 2/3 = 1: the first run ran at the nominal model; 1.5 × 4/3 = 2: the second
    assert coefficients(engines["parrot@0.5"]) == times(1.0)
    assert coefficients(engines["parrot@1"]) == times(2.0)
    assert (
        "times 0.667: the steps of the real run parrot@0.5 (10 s from 0.0 s"
        in (engines["parrot@0.5"].source["base_s"])
    )


def test_a_speed_window_carries_the_factor_instead(tmp_path: Path) -> None:
    engines, speeds = engines_per_run(PROFILE, bench_folder(tmp_path, TWO_RUNS), width=5.0)
    # the engines are the whole-trace fit; each 5 s stretch has fewer than 20 steps, so it
    # takes its run's own factor
    assert coefficients(engines["parrot@1"]) == times(1.5)
    source = engines["parrot@1"].source["base_s"]
    assert source.endswith("one factor per 5 s of the run (sim.steps.speed_schedule)")
    assert flat(speeds["parrot@0.5"]) == pytest.approx([0.0, 2 / 3, 5.0, 2 / 3])
    assert flat(speeds["parrot@1"]) == pytest.approx([0.0, 4 / 3, 5.0, 4 / 3])


def test_a_run_without_a_trace_or_a_folder_without_traces_is_an_error(tmp_path: Path) -> None:
    # sglang runs on the plain worker, which has no trace here
    runs = [*TWO_RUNS, ("sglang", 0.5, 200.0)]
    with pytest.raises(ValueError, match=r"no step trace for the runs sglang@0\.5"):
        engines_per_run(PROFILE, bench_folder(tmp_path / "a", runs))
    with pytest.raises(ValueError, match="predates them"):
        engines_from_run(PROFILE, tmp_path)
    # a run with no steps in its window: no factor to give
    late = [*TWO_RUNS, ("dynasor", 1.0, 300.0)]
    with pytest.raises(ValueError, match="the steps of dynasor@1"):
        engines_per_run(PROFILE, bench_folder(tmp_path / "b", late))
