"""The router's costs, what a worker measured alone does not see, fitted to real runs.

Two numbers of a profile (`sim.profile.Profile`): `router_overhead_s`, the seconds a request
takes longer on its way through the router, is measured (by default the router's added p50
latency on the real worker from bench/router_overhead.py: `ROUTER_ADDED_S`);
`router_cpu_s`, the step time the router's own CPU work per admitted request takes from a
worker on the same cores, is fitted by grid search (`ROUTER_CPU_GRID`) to the real runs of
some systems only, the others held out (`calibrate`). Fitting both on parrot's two usable
runs is ill-posed: the fit slid along a ridge from (0.2 s, 0.03 s) to (0, 0.04 s) when the
grid was refined.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dynasor_sgl.online.config import BenchConfig
from dynasor_sgl.sim.profile import Profile
from dynasor_sgl.sim.rerun import TracesOf, simulate_runs
from dynasor_sgl.sim.run import RunSpec
from dynasor_sgl.sim.speed import Speeds
from dynasor_sgl.sim.validate import loss, run_label

# bench/results/router_overhead.json: real_worker_latency.dynasor-router.added_p50_ms
ROUTER_ADDED_S = 0.0026
ROUTER_CPU_GRID = tuple(round(0.005 * i, 3) for i in range(21))  # 0 .. 0.1 s per admission
MEASURED = (
    "measured: the dynasor router's added p50 latency per request in front of the real "
    "CPU worker (bench/router_overhead.py, bench/results/router_overhead.json)"
)


def with_router_costs(
    engines: Mapping[str, Profile] | None, costs: Profile
) -> dict[str, Profile] | None:
    """Each engine profile with the router costs of `costs` (None: None)."""
    if engines is None:
        return None
    overhead, cpu = costs.router_overhead_s, costs.router_cpu_s
    return {
        k: dataclasses.replace(v, router_overhead_s=overhead, router_cpu_s=cpu)
        for k, v in engines.items()
    }


def calibrate(
    spec: RunSpec,
    cfg: BenchConfig,
    traces_of: TracesOf,
    real: list[dict[str, Any]],
    systems: Sequence[str],
    skip: set[str],
    overhead: float,
    engines: Mapping[str, Profile] | None = None,
    speeds: Speeds | None = None,
    grid: Sequence[float] = ROUTER_CPU_GRID,
) -> tuple[Profile, float]:
    """`spec`'s profile with router_overhead_s = `overhead` and the router_cpu_s of `grid`
    whose simulation of the real runs of `systems` (less the `skip` runs, "system@rate") is
    closest (`sim.validate.loss`; the first of equal losses), and that loss. The other
    systems stay held out. ValueError on an empty grid."""
    keys = [(s, r) for s in systems for r in cfg.rates if run_label(s, r) not in skip]
    fit = [r for r in real if (r["system"], float(r["rate"])) in keys]
    best: tuple[float, Profile] | None = None
    for cpu in grid:
        cand = dataclasses.replace(spec.profile, router_overhead_s=overhead, router_cpu_s=cpu)
        mine = with_router_costs(engines, cand)
        cand_spec = dataclasses.replace(spec, profile=cand)
        sim = simulate_runs(cand_spec, cfg, traces_of, keys, mine, speeds)
        score = loss(fit, sim, cfg.slo_scale)
        if best is None or score < best[0]:
            best = (score, cand)
    if best is None:
        raise ValueError("calibrating the router's costs needs a grid of at least one value")
    return best[1], best[0]


def serving_profile(
    tuned: Profile,
    fit_on: Sequence[str],
    real: Path,
    traces: Path | None,
    skip: Sequence[str],
    fit_loss: float,
) -> Profile:
    """`tuned` (from `calibrate` on the real runs in `real` of the systems `fit_on`, replayed
    from the eval file `traces` or their own records, less the `skip` runs) named as a
    serving profile ("-serving" added once), each router cost's source saying where it came
    from."""
    note = (
        f"calibrated by bench/sim_validate.py on the real {','.join(fit_on)} runs of "
        f"{real} replayed from {traces or 'their own records'} (grid search, loss "
        f"{fit_loss:.3f}; runs left out: {','.join(skip) or '-'}); held out: the other systems"
    )
    source = {**tuned.source, "router_overhead_s": MEASURED, "router_cpu_s": note}
    name = tuned.name if tuned.name.endswith("-serving") else tuned.name + "-serving"
    return dataclasses.replace(tuned, name=name, source=source)
