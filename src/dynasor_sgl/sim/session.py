"""`dynasor-sgl bench online --simulate PROFILE`: the online benchmark in virtual time.

The same `BenchConfig` (rates, systems, programs per run, SLO scale, seed, policy overrides,
difficulty file, base deadline), the same record schema and the same summary, Markdown and
PNGs as the real benchmark (`online.report`, `online.plots`), from simulated runs: `SimConfig`
adds the engine profile, the number of workers and where the programs' traces come from. The
base deadline, unless given, is measured as the real one is (median of a few programs run
alone at cap on dynasor), per algorithm. Writes results.jsonl in one go at the end (a
simulated benchmark is redone, not resumed).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from dynasor_sgl.online import plots
from dynasor_sgl.online.config import BenchConfig
from dynasor_sgl.online.report import markdown, summarize
from dynasor_sgl.online.systems import RUN_TO_CAP, SYSTEMS
from dynasor_sgl.online.workload import load_difficulty
from dynasor_sgl.sim.profile import Profile, load_profile
from dynasor_sgl.sim.run import RunSpec, base_deadlines, simulate
from dynasor_sgl.sim.synthetic import MIXES, WORKLOADS, synthetic_traces
from dynasor_sgl.sim.traces import Trace, load_eval_traces

logger = logging.getLogger(__name__)

SYNTHETIC = "synthetic:"


@dataclass(frozen=True)
class SimConfig:
    """profile: an engine profile file (`sim.profile`). workers: simulated workers, one engine
    each. traces: "synthetic:<workload>" (`sim.synthetic`) or a `dynasor-sgl eval` results
    file whose self-consistency baseline records are replayed."""

    profile: Path
    workers: int = 1
    traces: str = SYNTHETIC + "sc-math"

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")


def load_traces(spec: str, cfg: BenchConfig) -> list[Trace]:
    """The traces of `spec`: synthetic ones (one per program, seeded by the bench's seed), or
    an eval file's, cut to the bench's cap."""
    if spec.startswith(SYNTHETIC):
        return synthetic_traces(spec.removeprefix(SYNTHETIC), cfg.programs, cfg.seed)
    traces = [t.truncated(cfg.cap) for t in load_eval_traces(spec)]
    return in_dataset_order(traces, cfg)


def in_dataset_order(traces: list[Trace], cfg: BenchConfig) -> list[Trace]:
    """Traces in the order the real benchmark asks the bench's dataset (program i asks item
    i), so both see the same question at each arrival; traces of other questions go last."""
    from dynasor_sgl.eval.datasets import load_dataset

    try:
        items = load_dataset(cfg.dataset, limit=cfg.programs, seed=cfg.seed)
    except (ValueError, OSError):  # a dataset that cannot be read: the file's order
        return traces
    rank = {item.id: k for k, item in enumerate(items)}
    return sorted(traces, key=lambda t: rank.get(t.question_id, len(rank)))


def describe_traces(spec: str) -> Any:
    """What the traces are, for the record (a synthetic workload's parameters)."""
    if not spec.startswith(SYNTHETIC):
        return {"eval_file": spec}
    name = spec.removeprefix(SYNTHETIC)
    parts = MIXES.get(name, (name,))
    return {part: WORKLOADS[part].describe() for part in parts}


def run_spec(
    cfg: BenchConfig, sim: SimConfig, profile: Profile, traces: Sequence[Trace]
) -> RunSpec:
    """Every run's shared settings, with the base deadlines measured (or given)."""
    difficulty = load_difficulty(cfg.difficulty) if cfg.difficulty else None
    spec = RunSpec(
        profile,
        sim.workers,
        cfg.seed,
        cfg.slo_scale,
        cfg.max_tokens,
        dict(cfg.policy),
        {},
        cfg.max_inflight,
        difficulty,
    )
    if cfg.base_deadline is not None:
        bases = {t.algorithm: cfg.base_deadline for t in traces}
    else:
        at_cap = dataclasses.replace(SYSTEMS["dynasor"], policy=RUN_TO_CAP)
        bases = base_deadlines(traces, at_cap, spec, cfg.calibration_programs)
    return dataclasses.replace(spec, bases=bases)


def run_sim_bench(cfg: BenchConfig, sim: SimConfig) -> dict[str, Any]:
    """Every (system, rate) run of `cfg` in the simulator; writes the reports, returns the
    summary (with `sim_seconds`, the wall time the simulation took)."""
    profile = load_profile(sim.profile)
    traces = load_traces(sim.traces, cfg)
    t0 = time.perf_counter()
    spec = run_spec(cfg, sim, profile, traces)
    systems = [SYSTEMS[name] for name in SYSTEMS if name in cfg.systems]
    records: list[dict[str, Any]] = []
    runs: list[dict[str, Any]] = []
    jobs = [(s, r) for s in systems for r in cfg.rates]
    for system, rate in tqdm(jobs, desc="simulated runs", unit="run"):
        started = time.perf_counter()
        recs = simulate(traces, cfg.programs, system, rate, spec, f"{system.name}-{rate:g}")
        records += recs
        runs.append(_run_row(system.name, rate, recs, time.perf_counter() - started))
    elapsed = time.perf_counter() - t0
    settings = {**cfg.settings(), "simulate": _sim_settings(sim, profile, traces)}
    _write_results(cfg.out / "results.jsonl", settings, spec.bases, records, runs)
    return write_sim_reports(cfg, sim, profile, spec.bases, records, elapsed)


def _sim_settings(sim: SimConfig, profile: Profile, traces: Sequence[Trace]) -> dict[str, Any]:
    return {
        "profile": profile.to_dict(),
        "profile_file": str(sim.profile),
        "workers": sim.workers,
        "traces": describe_traces(sim.traces),
        "distinct_traces": len(traces),
    }


def _run_row(system: str, rate: float, recs: list[dict[str, Any]], wall: float) -> dict[str, Any]:
    errors = sum(r["status"] != "ok" for r in recs)
    row = {"kind": "run", "system": system, "rate": float(rate), "programs": len(recs)}
    return {**row, "errors": errors, "wall_s": round(wall, 3), "simulated": True}


def _write_results(
    path: Path,
    settings: Mapping[str, Any],
    bases: Mapping[str, float],
    records: list[dict[str, Any]],
    runs: list[dict[str, Any]],
) -> None:
    """The results file in the real benchmark's line kinds, written atomically."""
    base = {"kind": "base", "base_deadline_s": next(iter(bases.values())), "latencies": []}
    base |= {"source": f"simulated: median of programs alone at cap on dynasor, {dict(bases)}"}
    rows = [{"kind": "header", "settings": settings}, base]
    rows += [{"kind": "program", **r} for r in records] + runs
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write("".join(json.dumps(r) + "\n" for r in rows))
    os.replace(tmp, path)


def write_sim_reports(
    cfg: BenchConfig,
    sim: SimConfig,
    profile: Profile,
    bases: Mapping[str, float],
    records: list[dict[str, Any]],
    elapsed: float,
) -> dict[str, Any]:
    """summary.json, summary.md and the PNGs, as the real benchmark writes them."""
    notes = [
        f"SIMULATED on profile {profile.name} ({sim.profile}) with {sim.workers} worker(s); "
        f"traces {sim.traces}; base deadline per algorithm {dict(bases)}",
    ]
    if sim.traces.startswith(SYNTHETIC):
        notes.append(f"synthetic traces, parameters: {describe_traces(sim.traces)}")
    meta = {
        "program": "simulated " + "/".join(sorted({str(r["algorithm"]) for r in records})),
        "dataset": sim.traces,
        "programs_per_run": cfg.programs,
        "base_deadline_s": next(iter(bases.values())),
        "base_source": "simulated, median of programs alone at cap on dynasor",
        "settings": {**cfg.settings(), "workers": sim.workers, "profile": str(sim.profile)},
        "notes": notes,
        "results": str(cfg.out / "results.jsonl"),
        "runs_with_errors": sorted(
            {f"{r['system']} @ {r['rate']:g}/s" for r in records if r["status"] != "ok"}
        ),
        "simulated": True,
        "sim_seconds": round(elapsed, 2),
    }
    summary = summarize(records, meta, cfg.slo_scale, cfg.fixed_rate)
    out = cfg.out
    summary["figures"] = plots.write_all(summary, records, out)
    (out / "summary.md").write_text(markdown(summary))
    summary["outputs"] = {"summary": str(out / "summary.json"), "markdown": str(out / "summary.md")}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
