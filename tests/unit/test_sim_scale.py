"""The scale study's method (`sim.scale`) on hand-computed cases: a worker's capacity, the
routers' bound at the step model's knee, programs per run, one small row whose figures hold
together, and systems with the routers' adaptive limit (the router's own limiter)."""

from __future__ import annotations

from typing import Any

import pytest

from dynasor_sgl.scheduling.limiter import InflightLimiter, LimitMode
from dynasor_sgl.sim.profile import Profile
from dynasor_sgl.sim.scale import (
    LOAD,
    capacity,
    limiter_for,
    parse_variant,
    programs_for,
    router_bound,
    scale_row,
    scale_table,
)
from dynasor_sgl.sim.synthetic import synthetic_traces
from dynasor_sgl.sim.traces import Trace, Unit


def trace(*tokens: int) -> Trace:
    return Trace("q", "sc", 10, tuple(Unit(t) for t in tokens), None, "test")


def test_capacity_is_decode_tokens_per_second_over_tokens_per_program() -> None:
    # a step of 128 requests takes 0.001 × 128 = 0.128 s: 1,000 tokens/s; programs of 400
    # and 600 tokens (mean 500) at cap: 2 programs/s
    profile = Profile("p", base_s=0.0, per_request_s=0.001, per_prefill_token_s=0.0)
    assert capacity(profile, [trace(100, 300), trace(600)]) == pytest.approx(2.0)


def test_router_bound_is_the_least_batch_within_the_fraction_of_the_limit() -> None:
    # throughput B / (0.25 + 0.125 B) tends to 1 / 0.125 = 8 tokens/s; 0.75 of it, 6, is
    # first reached at B = 6 (6 / 1.0 = 6; B = 5: 5 / 0.875 = 5.7): 0.75/0.25 × 0.25/0.125
    profile = Profile("p", base_s=0.25, per_request_s=0.125, per_prefill_token_s=0.0)
    assert router_bound(profile, fraction=0.75) == 6
    assert router_bound(profile, fraction=0.5) == 2  # 1 × 2
    small = Profile("p", 0.25, 0.125, 0.0, max_running=4)
    assert router_bound(small, fraction=0.75) == 4  # never past max_running
    free = Profile("p", 0.25, 0.0, 0.0, max_running=300)
    assert router_bound(free) == 300  # a request costs nothing: no knee
    tiny = Profile("p", 0.001, 1.0, 0.0)
    assert router_bound(tiny) == 1  # 9 × 0.001 rounds up to 1


def test_programs_per_run_grow_with_the_workers_from_a_floor() -> None:
    assert programs_for(1, 25, 300) == 300
    assert programs_for(16, 25, 300) == 400


def test_a_row_measures_every_system_at_the_load_fractions() -> None:
    profile = Profile("p", base_s=0.02, per_request_s=0.0005, per_prefill_token_s=0.00001)
    traces = synthetic_traces("sc-math", 12, seed=0)
    row = scale_row(profile, traces, 1, ["sglang", "dynasor"], 2.0)
    per_worker = capacity(profile, traces)
    assert row["programs_per_run"] == 12 and row["capacity_per_worker"] == per_worker
    for entry in row["systems"].values():
        assert [p["rate"] for p in entry["points"]] == [round(f * per_worker, 4) for f in LOAD]
    # so light a load (12 programs) that all are on time at every rate: the highest rate
    # measured is the figure, for both, and their ratio 1
    for entry in row["systems"].values():
        assert [p["attainment"] for p in entry["points"]] == [1.0] * len(LOAD)
        assert entry["max_rate"] == round(LOAD[-1] * per_worker, 4)
        assert (entry["method"], entry["ratio_to_sglang"]) == ("highest measured", 1.0)


def test_variants_name_a_system_and_its_limit() -> None:
    system, mode = parse_variant("dynasor@adaptive")
    assert (system.scheduling, mode) == ("sjf", LimitMode.ADAPTIVE)
    assert parse_variant("autellix")[0].scheduling == "plas"
    assert parse_variant("autellix")[1] is LimitMode.FIXED
    with pytest.raises(ValueError, match="nosuch"):
        parse_variant("nosuch")
    with pytest.raises(ValueError, match="sometimes"):
        parse_variant("dynasor@sometimes")
    gpu = Profile("gpu-x", 0.01, 0.0004, 0.0, max_running=200)
    limiter = limiter_for(gpu, LimitMode.ADAPTIVE)
    assert limiter is not None and (limiter.initial, limiter.max_limit) == (128, 200)
    assert limiter_for(gpu, LimitMode.FIXED) is None


def test_the_simulated_router_runs_the_routers_limiter(monkeypatch: pytest.MonkeyPatch) -> None:
    """The simulator feeds the very `InflightLimiter` the router does, and its limit moves:
    on a worker whose knee is far above the CPU default, overloaded, it climbs."""
    seen: list[int] = []
    original = InflightLimiter.on_complete

    def spy(self: InflightLimiter, *args: Any) -> int:
        seen.append(original(self, *args))
        return seen[-1]

    monkeypatch.setattr(InflightLimiter, "on_complete", spy)
    profile = Profile("cpu-p", base_s=0.05, per_request_s=0.0005, per_prefill_token_s=0.00001)
    traces = synthetic_traces("sc-math", 60, seed=0)
    row = scale_row(profile, traces, 1, ["dynasor@adaptive", "autellix@adaptive"], 2.0, bound=12)
    assert set(row["systems"]) == {"dynasor@adaptive", "autellix@adaptive"}
    assert seen and seen[0] == 12 and max(seen) > 12


def test_the_table_has_a_cell_per_system_and_worker_count() -> None:
    row = {
        "systems": {
            "sglang": {"max_rate": 2.0, "ratio_to_sglang": 1.0},
            "dynasor@adaptive": {"max_rate": 5.0, "ratio_to_sglang": 2.5},
        }
    }
    none = {"systems": {"sglang": {"max_rate": None, "ratio_to_sglang": None}}}
    text = scale_table({"mix": {"4": row, "1": none}})
    assert "| system | 1 workers | 4 workers |" in text
    assert "| dynasor@adaptive | – | 5 (2.50x) |" in text
    assert "| sglang | – | 2 (1.00x) |" in text
