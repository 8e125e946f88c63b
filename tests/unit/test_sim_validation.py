"""The simulator's validation method on hand-computed cases: the real run's settings, the
comparison's loss, the router-cost grid search (with the simulation stubbed, so the loss of
each grid value is known), the serving profile's sources and the one-line summary.

The real runs below: slo_scale 2, difficulty 1, base deadline 1.5 s, so a program is on time
when its latency is at most 2 × 1 × 1.5 = 3 s.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import dynasor_sgl.sim.router_cost as router_cost
from dynasor_sgl.online.config import BenchConfig
from dynasor_sgl.sim.check import CheckSpec, summary
from dynasor_sgl.sim.profile import Profile
from dynasor_sgl.sim.rerun import run_engine, run_spec
from dynasor_sgl.sim.router_cost import calibrate, serving_profile, with_router_costs
from dynasor_sgl.sim.run import RunSpec
from dynasor_sgl.sim.traces import Trace
from dynasor_sgl.sim.validate import Key, bench_config, compare, loss, pinned_policy, run_label

SETTINGS = {
    "program": "self-consistency",
    "dataset": "synth:facts",
    "seed": 3,
    "programs": 2,
    "slo_scale": 2.0,
    "cap": 10,
    "max_tokens": 16,
}
BASE = Profile("cpu-x", base_s=0.1, per_request_s=0.01, per_prefill_token_s=0.001)


def rec(system: str, rate: float, latency: float, **kw: Any) -> dict[str, Any]:
    """A finished program record of `bench online` (difficulty 1, base deadline 1.5 s)."""
    base = {"status": "ok", "difficulty": 1, "base_deadline_s": 1.5, "tokens": 10, "steps": 4}
    return {"system": system, "rate": rate, "latency_s": latency, **base, **kw}


def test_pinned_policy_reads_once_unless_the_run_stored_when() -> None:
    assert pinned_policy({}) == {"detect_every": 0}
    assert pinned_policy({"policy": None}) == {"detect_every": 0}
    stored = {"policy": {"detect_every": 5, "thresholds": {}}}
    assert pinned_policy(stored) == {"detect_every": 5, "thresholds": {}}


def test_run_label_writes_the_rate_as_g() -> None:
    assert run_label("parrot", 0.25) == "parrot@0.25"
    assert run_label("sglang", 1) == "sglang@1"
    assert run_label("dynasor", 1.0) == "dynasor@1"


def test_bench_config_takes_rates_and_systems_from_the_records(tmp_path: Path) -> None:
    real = [rec("dynasor", 1.0, 2), rec("parrot", 0.5, 2), rec("dynasor", 0.5, 2)]
    cfg = bench_config(SETTINGS, 1.5, real, tmp_path)
    # rates sorted and deduplicated; systems in the order the records first name them
    assert cfg.rates == (0.5, 1.0)
    assert cfg.systems == ("dynasor", "parrot")
    assert cfg.base_deadline == 1.5 and cfg.seed == 3 and cfg.programs == 2
    assert dict(cfg.policy) == {"detect_every": 0}
    spec = run_spec(cfg, BASE, router_stop=True)
    assert spec.bases == {"sc": 1.5} and spec.workers == 1 and spec.router_deadline_stop


def test_loss_sums_squared_relative_latency_and_attainment_errors() -> None:
    # parrot@1: real 2 s (on time) and 4 s (late): mean 3, attainment 0.5. Simulated 3 s (on
    # time, 3 <= 3) and 3.6 s (late): mean 3.3, attainment 0.5: (3.3/3 - 1)² = 0.01, + 0.
    # dynasor@1: real 1 s and 5 s: mean 3, attainment 0.5. Simulated 2 s and 3 s, both on
    # time: mean 2.5, attainment 1: (2.5/3 - 1)² = 1/36, + (1 - 0.5)² = 0.25.
    real = [rec("parrot", 1, 2), rec("parrot", 1, 4), rec("dynasor", 1, 1), rec("dynasor", 1, 5)]
    sim = [rec("parrot", 1, 3), rec("parrot", 1, 3.6), rec("dynasor", 1, 2), rec("dynasor", 1, 3)]
    assert loss(real, sim, 2.0) == pytest.approx(0.01 + 1 / 36 + 0.25)
    assert loss(real, real, 2.0) == 0.0
    rows = {r["system"]: r for r in compare(real, sim, 2.0)}
    # parrot: |0.5 - 0.5| <= 0.1 and |3.3 - 3| <= 0.2 × 3; dynasor: 0.5 apart, |2.5 - 3| <= 0.6
    assert rows["parrot"]["attainment_within_10_points"]
    assert rows["parrot"]["latency_within_20_percent"]
    assert not rows["dynasor"]["attainment_within_10_points"]
    assert rows["dynasor"]["latency_within_20_percent"]


def test_loss_of_a_run_the_simulation_lacks_is_an_error() -> None:
    with pytest.raises(TypeError):
        loss([rec("parrot", 1, 2)], [], 2.0)


def test_with_router_costs_sets_both_costs_on_every_engine() -> None:
    costs = Profile("c", 0.1, 0.0, 0.0, router_overhead_s=0.0026, router_cpu_s=0.015)
    assert with_router_costs(None, costs) is None
    engines = with_router_costs({"priority": BASE}, costs)
    assert engines is not None
    engine = engines["priority"]
    assert (engine.router_overhead_s, engine.router_cpu_s) == (0.0026, 0.015)
    assert (engine.base_s, engine.name) == (BASE.base_s, BASE.name)


class FakeSimulation:
    """Stands for `simulate_runs`: each run's two programs take 2 + 20 × router_cpu_s seconds,
    so the real runs' 3 s are met at router_cpu_s = 0.05 (loss 0) and missed elsewhere."""

    def __init__(self) -> None:
        self.keys: list[list[Key]] = []

    def __call__(
        self, spec: RunSpec, cfg: BenchConfig, traces_of: Any, keys: list[Key], *rest: Any
    ) -> list[dict[str, Any]]:
        engines, _speeds = rest
        self.keys.append(list(keys))
        for engine in (engines or {}).values():
            assert engine.router_cpu_s == spec.profile.router_cpu_s  # the candidate's costs
        latency = 2 + 20 * spec.profile.router_cpu_s
        return [rec(s, r, latency) for s, r in keys for _ in range(2)]


def no_traces(key: Key) -> list[Trace]:
    return []


def fit_setup(tmp_path: Path) -> tuple[list[dict[str, Any]], BenchConfig]:
    real = [rec(s, r, 3.0) for s in ("parrot", "dynasor") for r in (0.5, 1.0) for _ in range(2)]
    return real, bench_config(SETTINGS, 1.5, real, tmp_path)


def test_calibrate_picks_the_grid_value_that_reproduces_the_fit_runs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake = FakeSimulation()
    monkeypatch.setattr(router_cost, "simulate_runs", fake)
    real, cfg = fit_setup(tmp_path)
    spec = run_spec(cfg, BASE, False)
    engines = {"priority": BASE}
    skip = {"parrot@0.5"}
    tuned, fit_loss = calibrate(spec, cfg, no_traces, real, ["parrot"], skip, 0.0026, engines)
    # 2 + 20 × 0.05 = 3 s, as real, all on time: loss 0 (0.045 gives 2.9 s: (2.9/3 - 1)² > 0)
    assert tuned.router_cpu_s == 0.05 and fit_loss == 0.0
    assert tuned.router_overhead_s == 0.0026 and tuned.base_s == BASE.base_s
    # one simulation per grid value, of parrot's runs less the skipped one
    assert len(fake.keys) == len(router_cost.ROUTER_CPU_GRID) == 21
    assert all(keys == [("parrot", 1.0)] for keys in fake.keys)


def test_calibrate_keeps_the_first_of_equal_losses_and_refuses_an_empty_grid(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # every program takes 3 s whatever the router costs: every grid value has loss 0
    def same(spec: RunSpec, cfg: BenchConfig, traces_of: Any, keys: list[Key], *rest: Any) -> list:
        return [rec(s, r, 3.0) for s, r in keys for _ in range(2)]

    monkeypatch.setattr(router_cost, "simulate_runs", same)
    real, cfg = fit_setup(tmp_path)
    spec = run_spec(cfg, BASE, False)
    tuned, fit_loss = calibrate(spec, cfg, no_traces, real, ["dynasor"], set(), 0.0)
    assert tuned.router_cpu_s == router_cost.ROUTER_CPU_GRID[0] == 0.0 and fit_loss == 0.0
    with pytest.raises(ValueError, match="grid"):
        calibrate(spec, cfg, no_traces, real, ["dynasor"], set(), 0.0, grid=())


def test_serving_profile_names_it_once_and_says_where_each_cost_comes_from() -> None:
    tuned = Profile("cpu-x", 0.1, 0.01, 0.001, router_cpu_s=0.015, source={"base_s": "sweep"})
    out = serving_profile(tuned, ["parrot"], Path("r6"), None, ["parrot@0.25"], 0.2604)
    assert out.name == "cpu-x-serving"
    assert out.source["base_s"] == "sweep"
    assert out.source["router_overhead_s"] == router_cost.MEASURED
    note = out.source["router_cpu_s"]
    assert "real parrot runs of r6 replayed from their own records" in note
    assert "loss 0.260; runs left out: parrot@0.25" in note
    again = serving_profile(out, ["parrot", "sglang"], Path("r6"), Path("e.jsonl"), [], 0.0)
    assert again.name == "cpu-x-serving"
    assert "parrot,sglang runs of r6 replayed from e.jsonl" in again.source["router_cpu_s"]
    assert "runs left out: -" in again.source["router_cpu_s"]


def test_summary_counts_held_out_runs_only_and_the_repeat() -> None:
    def row(role: str, att: bool, lat: bool) -> dict[str, Any]:
        return {"role": role, "attainment_within_10_points": att, "latency_within_20_percent": lat}

    rows = [row("fit", True, True), row("held out", True, False), row("held out", True, True)]
    assert summary({"rows": rows}, "p.json") == (
        "2 held-out real runs vs simulated on p.json: attainment within 10 points in 2, "
        "mean latency within 20% in 1"
    )
    repeat = {"rows": rows, "repeat_rows": rows}
    assert summary(repeat, "p.json").endswith(
        "; the repeat real run against this one: within 10 points in 3 of 3, within 20% in 2"
    )


def test_check_spec_refuses_a_bad_window_or_overhead(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="speed_window"):
        CheckSpec(tmp_path, BASE, tmp_path, speed_window=0)
    with pytest.raises(ValueError, match="router_overhead"):
        CheckSpec(tmp_path, BASE, tmp_path, router_overhead=-1)


def test_a_run_takes_its_own_engine_else_its_flavours_else_the_spec(tmp_path: Path) -> None:
    spec = run_spec(fit_setup(tmp_path)[1], BASE, False)
    own, flavour = Profile("own", 1.0, 0.0, 0.0), Profile("flavour", 2.0, 0.0, 0.0)
    engines = {"parrot@1": own, "priority": flavour}
    speeds = {"parrot@1": ((0.0, 2.0), (10.0, 1.0))}
    mine = run_engine(spec, "parrot", 1.0, engines, speeds)
    assert (mine.profile, mine.speed) == (own, ((0.0, 2.0), (10.0, 1.0)))
    # parrot at another rate and dynasor run on the priority worker; sglang on plain, not given
    assert run_engine(spec, "parrot", 0.5, engines, speeds).profile == flavour
    assert run_engine(spec, "dynasor", 1.0, engines).speed == ()
    assert run_engine(spec, "sglang", 1.0, engines) == spec
    assert run_engine(spec, "parrot", 1.0) == spec
