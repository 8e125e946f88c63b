"""The simulator checked against a real online benchmark, end to end: what to simulate it on,
the calibration of the router's costs, the simulation of every real run, the comparison and
its result document.

Every real run is simulated on the same arrival traces (`sim.rerun`), by default each
program from its own record. A real program the router stopped at its deadline is replayed
from its recorded steps on, not stopped there: the simulated router's own deadline stop
decides whether and when it ends. Which router systems stopped at deadlines the results do
not record, so it is read from the records (`sim.validate.router_deadline_stop`) unless
given. The engine is the profile's, or each worker flavour's fitted to the steps it ran in a
real run, or that fit at each run's own speed, or per stretch of it (`sim.speed`). With
systems to calibrate on, the router's costs are fitted to their runs, the others held out
(`sim.router_cost`). With a repeat (a second real run of the same settings) the two real
runs are compared by the same goals: the floor any model's agreement sits on. Reads the real
runs' files; writes nothing (bench/sim_validate.py does).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dynasor_sgl.sim.profile import Profile
from dynasor_sgl.sim.rerun import eval_traces, record_traces, run_spec, simulate_runs
from dynasor_sgl.sim.router_cost import (
    ROUTER_ADDED_S,
    calibrate,
    serving_profile,
    with_router_costs,
)
from dynasor_sgl.sim.run import RunSpec
from dynasor_sgl.sim.speed import Speeds, engines_from_run, engines_per_run
from dynasor_sgl.sim.validate import (
    ATTAINMENT_POINTS,
    LATENCY_SHARE,
    bench_config,
    by_run,
    compare,
    real_bench,
    router_deadline_stop,
)


@dataclass(frozen=True)
class CheckSpec:
    """One check of the simulator against a real run.

    real: the real `bench online` folder. profile: the engine profile to simulate on.
    out: the folder the simulated records are meant for (the simulated bench's `out`).
    traces: an eval file whose samples every run replays (None: each real program's record).
    calibrate_on: systems whose runs the router's costs are fitted to (empty: none).
    skip: runs ("system@rate") left out of that fit. router_overhead: the measured seconds a
    request takes longer through the router, set when calibrating.
    router_deadline_stop: whether the real routers stopped at deadlines by default (None:
    read from the records). engine_from: a real run folder whose workers' step traces give
    each flavour's step model (None: the profile's). per_run: each run on its worker's
    whole-trace fit of `real` at that run's speed. speed_window: as per_run, the speed
    measured per that many seconds of each run (None: one factor per run).
    repeat: a second real run of the same settings to compare against this one (None: none).
    """

    real: Path
    profile: Profile
    out: Path
    traces: Path | None = None
    calibrate_on: tuple[str, ...] = ()
    skip: tuple[str, ...] = ()
    router_overhead: float = ROUTER_ADDED_S
    router_deadline_stop: bool | None = None
    engine_from: Path | None = None
    per_run: bool = False
    speed_window: float | None = None
    repeat: Path | None = None

    def __post_init__(self) -> None:
        if self.router_overhead < 0:
            raise ValueError(f"router_overhead must be >= 0 s, got {self.router_overhead!r}")
        if self.speed_window is not None and self.speed_window <= 0:
            raise ValueError(f"speed_window must be > 0 s, got {self.speed_window!r}")


@dataclass(frozen=True)
class Check:
    """A check's result: the document (JSON-ready; its `rows` one per real run, each with
    its `role`, "fit" or "held out"), the simulated program records, and the calibrated
    serving profile (None when nothing was calibrated)."""

    doc: dict[str, Any]
    records: list[dict[str, Any]]
    calibrated: Profile | None


def engines_of(spec: CheckSpec) -> tuple[Path | None, dict[str, Profile] | None, Speeds]:
    """The real run whose step traces give the engines (None: the profile's own), the engine
    per run or worker flavour, and the speed schedule per run."""
    if spec.per_run or spec.speed_window:
        engines, speeds = engines_per_run(spec.profile, spec.real, spec.speed_window)
        return spec.real, engines, speeds
    if spec.engine_from is None:
        return None, None, {}
    return spec.engine_from, engines_from_run(spec.profile, spec.engine_from), {}


def check(spec: CheckSpec) -> Check:
    """Simulates every real run of `spec.real` as `spec` says and compares (see the module
    docstring). ValueError for a folder, trace file or step trace that cannot be read."""
    settings, base, real = real_bench(spec.real)
    cfg = bench_config(settings, base, real, spec.out)
    traces_of = eval_traces(cfg, spec.traces) if spec.traces else record_traces(cfg, real)
    stop = spec.router_deadline_stop
    stop = router_deadline_stop(real) if stop is None else stop
    run = run_spec(cfg, spec.profile, stop)
    engine_run, engines, speeds = engines_of(spec)
    fit_on, fit_loss, calibrated = list(spec.calibrate_on), None, None
    if fit_on:
        skip, overhead = set(spec.skip), spec.router_overhead
        args = (run, cfg, traces_of, real, fit_on, skip, overhead, engines, speeds)
        tuned, fit_loss = calibrate(*args)
        calibrated = serving_profile(tuned, fit_on, spec.real, spec.traces, spec.skip, fit_loss)
        run = dataclasses.replace(run, profile=calibrated)
        engines = with_router_costs(engines, calibrated)
    sim = simulate_runs(run, cfg, traces_of, sorted(by_run(real)), engines, speeds)
    rows = compare(real, sim, cfg.slo_scale)
    for row in rows:
        row["role"] = "fit" if row["system"] in fit_on else "held out"
    doc = {
        "bench": "sim_validation",
        "real": str(spec.real),
        "traces": str(spec.traces) if spec.traces else "each real program's own record",
        "policy": dict(cfg.policy),
        "router_deadline_stop": stop,
        **engine_fields(run, engine_run, engines, spec.speed_window, speeds),
        "calibrated_on": fit_on,
        "fit_loss": fit_loss,
        "base_deadline_s": base,
        "slo_scale": cfg.slo_scale,
        "goals": {"attainment_points": ATTAINMENT_POINTS, "latency_share": LATENCY_SHARE},
        "rows": rows,
    }
    if spec.repeat is not None:
        doc["repeat"] = str(spec.repeat)
        doc["repeat_rows"] = compare(real, real_bench(spec.repeat)[2], cfg.slo_scale)
    return Check(doc, sim, calibrated)


def engine_fields(
    run: RunSpec,
    engine_run: Path | None,
    engines: dict[str, Profile] | None,
    width: float | None,
    speeds: Speeds,
) -> dict[str, Any]:
    """The result document's account of what the runs were simulated on."""
    return {
        "profile": run.profile.to_dict(),
        "engines_from": None if engine_run is None else str(engine_run),
        "engines": {k: v.to_dict() for k, v in (engines or {}).items()},
        "speed_window_s": width,
        "speeds": {k: [list(x) for x in v] for k, v in speeds.items()},
    }


def summary(doc: dict[str, Any], profile_name: str) -> str:
    """One line: how many held-out runs meet each goal, and how the repeat run agrees."""
    held = [r for r in doc["rows"] if r["role"] == "held out"]
    att = sum(r["attainment_within_10_points"] for r in held)
    lat = sum(r["latency_within_20_percent"] for r in held)
    line = (
        f"{len(held)} held-out real runs vs simulated on {profile_name}: attainment within "
        f"10 points in {att}, mean latency within 20% in {lat}"
    )
    again = doc.get("repeat_rows")
    if again is not None:
        line += (
            f"; the repeat real run against this one: within 10 points in "
            f"{sum(r['attainment_within_10_points'] for r in again)} of {len(again)}, "
            f"within 20% in {sum(r['latency_within_20_percent'] for r in again)}"
        )
    return line
