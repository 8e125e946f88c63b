"""The simulator against a real online benchmark, side by side, on the same arrival traces.

Reads a finished `dynasor-sgl bench online` folder (its settings, base deadline and program
records), replays the same benchmark in the simulator (same programs per run, rates, seed, SLO
scale and base deadline, so the same arrivals and deadlines) with programs replayed from a
`dynasor-sgl eval` results file of the same questions and settings (cap, max_tokens,
temperature: its own samples, not the real run's), and compares per system and rate the share
of programs on time (goal: within 10 points) and the mean latency (goal: within 20%). Writes
bench/results/sim_validation.json and .png and prints a one-line summary.

With --calibrate-on SYSTEMS the profile's router_overhead_s and router_cpu_s (what a worker
measured alone does not see: the seconds a request takes longer on its way through the
router, and the step time the router's own CPU work takes from a worker on the same cores) are
fitted by grid search to the real runs of those systems only (less --skip runs) and saved as a
profile of its own (--calibrated); the other systems are held out.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from dynasor_sgl.online import metrics as m
from dynasor_sgl.online.config import BenchConfig
from dynasor_sgl.online.results import read_rows
from dynasor_sgl.online.systems import SYSTEMS
from dynasor_sgl.sim.profile import Profile, load_profile, save_profile
from dynasor_sgl.sim.run import RunSpec, simulate
from dynasor_sgl.sim.session import SimConfig, load_traces, run_sim_bench
from dynasor_sgl.sim.traces import Trace

HERE = Path(__file__).parent
ATTAINMENT_POINTS = 0.10
LATENCY_SHARE = 0.20
ROUTER_GRID = (0.0, 0.05, 0.1, 0.2, 0.3, 0.4)
ROUTER_CPU_GRID = (0.0, 0.01, 0.02, 0.03, 0.05, 0.07, 0.1)


def real_bench(folder: Path) -> tuple[dict[str, Any], float, list[dict[str, Any]]]:
    rows = read_rows(folder / "results.jsonl")
    header = next(r for r in rows if r.get("kind") == "header")
    base = next(r for r in rows if r.get("kind") == "base")
    done = {(r["system"], r["rate"]) for r in rows if r.get("kind") == "run"}
    programs = [r for r in rows if r.get("kind") == "program" and (r["system"], r["rate"]) in done]
    return header["settings"], float(base["base_deadline_s"]), programs


def by_run(records: list[dict[str, Any]]) -> dict[tuple[str, float], list[dict[str, Any]]]:
    runs: dict[tuple[str, float], list[dict[str, Any]]] = {}
    for r in records:
        runs.setdefault((str(r["system"]), float(r["rate"])), []).append(r)
    return runs


def compare(real: list[dict[str, Any]], sim: list[dict[str, Any]], slo: float) -> list[dict]:
    rows = []
    sim_runs = by_run(sim)
    for key, recs in sorted(by_run(real).items()):
        mine = sim_runs.get(key, [])
        ra, sa = m.attainment(recs, slo), m.attainment(mine, slo)
        rl, sl = m.mean(m.latencies(recs)), m.mean(m.latencies(mine))
        att_ok = ra is not None and sa is not None and abs(ra - sa) <= ATTAINMENT_POINTS
        lat_ok = rl is not None and sl is not None and abs(sl - rl) <= LATENCY_SHARE * rl
        rows.append(
            {
                "system": key[0],
                "rate": key[1],
                "real_attainment": ra,
                "sim_attainment": sa,
                "real_mean_latency_s": rl,
                "sim_mean_latency_s": sl,
                "real_mean_tokens": m.mean_tokens(recs),
                "sim_mean_tokens": m.mean_tokens(mine),
                "attainment_within_10_points": att_ok,
                "latency_within_20_percent": lat_ok,
            }
        )
    return rows


def plot(rows: list[dict], path: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, what in zip(axes, ("attainment", "mean_latency_s"), strict=True):
        for system in dict.fromkeys(r["system"] for r in rows):
            mine = [r for r in rows if r["system"] == system]
            xs = [r["rate"] for r in mine]
            line = ax.plot(xs, [r[f"real_{what}"] for r in mine], "o-", ms=3, label=system)
            ax.plot(xs, [r[f"sim_{what}"] for r in mine], "x--", ms=4, color=line[0].get_color())
        ax.set_xlabel("arrival rate (programs/s)")
        ax.set_title(f"{what}: real (o, solid) vs simulated (x, dashed)", fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def bench_config(settings: dict[str, Any], base: float, real: list[dict], out: Path) -> BenchConfig:
    """The real benchmark's settings, its systems and rates, its base deadline."""
    keep = ("program", "dataset", "seed", "programs", "slo_scale", "cap", "max_tokens")
    return BenchConfig(
        out=out,
        rates=tuple(sorted({float(r["rate"]) for r in real})),
        systems=tuple(dict.fromkeys(r["system"] for r in real)),
        base_deadline=base,
        params=settings.get("params") or {},
        policy=settings.get("policy") or {},
        **{k: settings[k] for k in keep},
    )


def loss(real: list[dict], sim: list[dict], slo: float) -> float:
    """Squared relative error of mean latency plus squared attainment error, summed by run."""
    total = 0.0
    for row in compare(real, sim, slo):
        rl, sl = row["real_mean_latency_s"], row["sim_mean_latency_s"]
        total += (sl / rl - 1) ** 2 + (row["sim_attainment"] - row["real_attainment"]) ** 2
    return total


def calibrate(
    cfg: BenchConfig,
    profile: Profile,
    traces: list[Trace],
    real: list[dict],
    systems: list[str],
    skip: set[str],
) -> tuple[Profile, float]:
    """The (router_overhead_s, router_cpu_s) of the grid whose simulation of the real runs of
    `systems` (less the `skip` runs) is closest (`loss`); the other systems stay held out."""
    keys = [(s, r) for s in systems for r in cfg.rates if f"{s}@{r:g}" not in skip]
    fit = [r for r in real if (r["system"], float(r["rate"])) in keys]
    best: tuple[float, Profile] | None = None
    for overhead, cpu in itertools.product(ROUTER_GRID, ROUTER_CPU_GRID):
        cand = dataclasses.replace(profile, router_overhead_s=overhead, router_cpu_s=cpu)
        bases = {"sc": float(cfg.base_deadline or 1.0)}
        spec = RunSpec(cand, 1, cfg.seed, cfg.slo_scale, cfg.max_tokens, dict(cfg.policy), bases)
        sim = [
            rec
            for name, rate in keys
            for rec in simulate(traces, cfg.programs, SYSTEMS[name], rate, spec, name)
        ]
        score = loss(fit, sim, cfg.slo_scale)
        if best is None or score < best[0]:
            best = (score, cand)
    assert best is not None, "the grid is not empty"
    return best[1], best[0]


def fit_profile(
    args: argparse.Namespace, cfg: BenchConfig, real: list[dict], fit_on: list[str]
) -> float:
    """Calibrates the router's costs on `fit_on` and saves the profile (--calibrated)."""
    traces = load_traces(str(args.traces), cfg)
    skip = {x for x in args.skip.split(",") if x}
    tuned, fit_loss = calibrate(cfg, load_profile(args.profile), traces, real, fit_on, skip)
    note = (
        f"calibrated by bench/sim_validate.py on the real {','.join(fit_on)} runs of "
        f"{args.real} (grid search, loss {fit_loss:.3f}; runs left out: {args.skip or '-'}); "
        "held out: the other systems"
    )
    source = {**tuned.source, "router_overhead_s": note, "router_cpu_s": note}
    tuned = dataclasses.replace(tuned, name=tuned.name + "-serving", source=source)
    save_profile(tuned, args.calibrated)
    return fit_loss


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--real", type=Path, default=HERE / "results" / "online")
    ap.add_argument("--traces", type=Path, required=True)
    ap.add_argument("--profile", type=Path, default=HERE / "profiles" / "cpu-smollm2-135m.json")
    ap.add_argument("--calibrate-on", default="", help="systems to fit the serving overheads on")
    ap.add_argument("--skip", default="", help="runs left out of the fit, e.g. parrot@0.25")
    ap.add_argument(
        "--calibrated", type=Path, default=HERE / "profiles" / "cpu-smollm2-135m-serving.json"
    )
    ap.add_argument("--out", type=Path, default=HERE / "results" / "sim_validation.json")
    return ap.parse_args()


def main() -> None:
    args = parse_args()
    settings, base, real = real_bench(args.real)
    cfg = bench_config(settings, base, real, args.out.parent / "sim_validation")
    profile_path, fit_on = args.profile, [s for s in args.calibrate_on.split(",") if s]
    fit_loss = None
    if fit_on:
        fit_loss = fit_profile(args, cfg, real, fit_on)
        profile_path = args.calibrated
    run_sim_bench(cfg, SimConfig(profile_path, 1, str(args.traces)))
    sim = [r for r in read_rows(cfg.out / "results.jsonl") if r.get("kind") == "program"]
    rows = compare(real, sim, cfg.slo_scale)
    for row in rows:
        row["role"] = "fit" if row["system"] in fit_on else "held out"
    doc = {
        "bench": "sim_validation",
        "real": str(args.real),
        "traces": str(args.traces),
        "profile": json.loads(profile_path.read_text()),
        "calibrated_on": fit_on,
        "fit_loss": fit_loss,
        "base_deadline_s": base,
        "slo_scale": cfg.slo_scale,
        "goals": {"attainment_points": ATTAINMENT_POINTS, "latency_share": LATENCY_SHARE},
        "rows": rows,
    }
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    plot(rows, args.out.with_suffix(".png"))
    held = [r for r in rows if r["role"] == "held out"]
    att = sum(r["attainment_within_10_points"] for r in held)
    lat = sum(r["latency_within_20_percent"] for r in held)
    print(
        f"{len(held)} held-out real runs vs simulated on {profile_path.name}: attainment within "
        f"10 points in {att}, mean latency within 20% in {lat}; wrote {args.out}"
    )


if __name__ == "__main__":
    main()
