"""Questions of scale in the simulator: how the Dynasor router's advantage over SGLang alone
changes with the number of workers and the program mix, and how fast the simulator is.

For each synthetic workload (sc-math, mcts, rebase, mix) and each worker count, every system
runs a Poisson trace at fractions of the workers' capacity at cap (the method:
`dynasor_sgl.sim.scale`); programs per run grow with the workers, so every run reaches a
steady state. The figure of merit is the online benchmark's (highest rate with >= 90% of
programs on time at the SLO scale, interpolated), with its ratio to sglang. Then one timed
run of --timed-programs programs on the largest worker count, under cProfile and without it,
says how fast the simulator is and where its time goes.
Profile: the A100 Llama-3.1-8B one by default (bench/profiles/). Systems are the online
table's plus `autellix` (PLAS, gang, to cap), each optionally `@adaptive` (the routers keep each
worker's in-flight limit with the adaptive limiter) or `@fixed` (at --bound, default the
profile's knee). Writes bench/results/sim_scale.json, sim_scale.png and sim_scale.md (the table
of highest rates on time and ratios to sglang) and prints a one-line summary. All traces are
synthetic (labelled so in the output).

    .venv/bin/python bench/sim_scale.py [--workers 1,4,16,64] [--programs-per-worker 40] \
        [--systems sglang,dynasor,dynasor@adaptive,autellix] [--bound 12] [--skip-timing]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import sys
import time
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from dynasor_sgl.online.systems import SYSTEMS
from dynasor_sgl.sim.profile import load_profile
from dynasor_sgl.sim.run import simulate
from dynasor_sgl.sim.scale import (
    LOAD,
    programs_for,
    router_bound,
    scale_row,
    scale_spec,
    scale_table,
)
from dynasor_sgl.sim.synthetic import WORKLOADS, synthetic_traces

HERE = Path(__file__).parent


def scale_rows(args: argparse.Namespace) -> dict[str, Any]:
    """Every mix on every worker count (`sim.scale.scale_row`), each run on synthetic traces."""
    out: dict[str, Any] = {}
    profile = load_profile(args.profile)
    for mix in args.mixes.split(","):
        out[mix] = {}
        for workers in (int(w) for w in args.workers.split(",")):
            n = programs_for(workers, args.programs_per_worker, args.least_programs)
            traces = synthetic_traces(mix, n, seed=0)
            systems = args.systems.split(",")
            row = scale_row(profile, traces, workers, systems, args.slo_scale, args.bound)
            out[mix][str(workers)] = row
            print(
                f"{mix} x{workers}: "
                + ", ".join(f"{s} {e['max_rate']}" for s, e in row["systems"].items()),
                flush=True,
            )
    return out


def timed(args: argparse.Namespace, workers: int) -> dict[str, Any]:
    traces = synthetic_traces("sc-math", args.timed_programs, seed=1)
    spec = scale_spec(load_profile(args.profile), workers, traces[:3], args.slo_scale)
    rate = 0.25 * workers
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    recs = simulate(traces, args.timed_programs, SYSTEMS["dynasor"], rate, spec, "timed")
    prof.disable()
    wall = time.perf_counter() - t0
    text = io.StringIO()
    pstats.Stats(prof, stream=text).sort_stats("tottime").print_stats(15)
    requests = sum(r["tokens_detail"]["requests"] for r in recs)
    return {
        "programs": args.timed_programs,
        "workers": workers,
        "rate": rate,
        "system": "dynasor",
        "requests": requests,
        "wall_s": round(wall, 2),
        "wall_s_without_profiler": None,
        "top_functions_by_own_time": text.getvalue().splitlines()[:40],
    }


def plain_timing(args: argparse.Namespace, workers: int) -> float:
    """Seconds the timed run takes without the profiler."""
    traces = synthetic_traces("sc-math", args.timed_programs, seed=1)
    spec = scale_spec(load_profile(args.profile), workers, traces[:3], args.slo_scale)
    t0 = time.perf_counter()
    simulate(traces, args.timed_programs, SYSTEMS["dynasor"], 0.25 * workers, spec, "timed")
    return round(time.perf_counter() - t0, 2)


def plot(results: dict[str, Any], path: Path) -> None:
    mixes = list(results)
    fig, axes = plt.subplots(1, len(mixes) + 1, figsize=(4.2 * (len(mixes) + 1), 3.6))
    for ax, mix in zip(axes, mixes, strict=False):
        for workers, row in results[mix].items():
            for system, e in row["systems"].items():
                if system.partition("@")[0] not in ("sglang", "dynasor", "autellix"):
                    continue
                cap = row["capacity_per_worker"] * int(workers)
                xs = [p["rate"] / cap for p in e["points"]]
                ys = [100 * (p["attainment"] or 0) for p in e["points"]]
                ax.plot(
                    xs,
                    ys,
                    "x--" if system == "sglang" else "o-",
                    ms=3,
                    label=f"{system} x{workers}",
                )
        ax.axhline(90, color="black", lw=0.8, ls=":")
        ax.set_title(f"{mix} (synthetic)", fontsize=9)
        ax.set_xlabel("arrival rate / capacity at cap")
        ax.set_ylabel("on time (%)")
        ax.legend(fontsize=6)
    ax = axes[-1]
    for mix in mixes:
        ws = sorted(results[mix], key=int)
        systems = dict.fromkeys(s for w in ws for s in results[mix][w]["systems"])
        for system in (s for s in systems if s.partition("@")[0] != "sglang"):
            ratios = [results[mix][w]["systems"].get(system, {}).get("ratio_to_sglang") for w in ws]
            ax.plot([int(w) for w in ws], [r or 0 for r in ratios], "o-", label=f"{mix} {system}")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("workers")
    ax.set_ylabel("max rate / sglang")
    ax.set_title("advantage vs workers", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", type=Path, default=HERE / "profiles" / "gpu-a100-llama3-8b.json")
    ap.add_argument("--workers", default="1,4,16,64")
    ap.add_argument("--mixes", default=",".join([*WORKLOADS, "mix"]))
    ap.add_argument(
        "--systems",
        default="sglang,parrot,dynasor,autellix,parrot@adaptive,dynasor@adaptive,autellix@adaptive",
    )
    ap.add_argument("--bound", type=int, default=None, help="fixed bound (default: the knee)")
    ap.add_argument("--skip-timing", action="store_true", help="no timed run of the simulator")
    ap.add_argument("--programs-per-worker", type=int, default=25)
    ap.add_argument("--least-programs", type=int, default=300)
    ap.add_argument("--timed-programs", type=int, default=10000)
    ap.add_argument("--slo-scale", type=float, default=2.0)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "sim_scale.json")
    return ap.parse_args()


def main() -> None:
    args = parse_args()
    t0 = time.perf_counter()
    results = scale_rows(args)
    biggest = max(int(w) for w in args.workers.split(","))
    timing: dict[str, Any] = {"programs": 0, "wall_s_without_profiler": None, "requests": 0}
    if not args.skip_timing:
        timing = timed(args, biggest)
        timing["wall_s_without_profiler"] = plain_timing(args, biggest)
    profile = load_profile(args.profile)
    doc = {
        "bench": "sim_scale",
        "synthetic": True,
        "workloads": {k: w.describe() for k, w in WORKLOADS.items()},
        "profile": load_profile(args.profile).to_dict(),
        "router_bound": args.bound or router_bound(profile),
        "systems": args.systems.split(","),
        "slo_scale": args.slo_scale,
        "programs_per_run": f"max({args.least_programs}, {args.programs_per_worker} x workers)",
        "load_fractions_of_capacity": LOAD,
        "results": results,
        "timing": timing,
        "total_wall_s": round(time.perf_counter() - t0, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    plot(results, args.out.with_suffix(".png"))
    command = "python bench/sim_scale.py " + " ".join(sys.argv[1:])
    args.out.with_suffix(".md").write_text(
        f"Simulated ({profile.name}, synthetic traces, SLO scale {args.slo_scale}): the "
        f"highest rate with >= 90% of programs on time (programs/s) and its ratio to sglang; "
        f"fixed bound {doc['router_bound']}.\n\n    {command}\n\n" + scale_table(results)
    )
    ratios = {
        mix: {w: row["systems"].get("dynasor", {}).get("ratio_to_sglang") for w, row in by.items()}
        for mix, by in results.items()
    }
    print(
        f"{timing['programs']} programs on {biggest} workers simulated in "
        f"{timing['wall_s_without_profiler']} s ({timing['requests']} requests); dynasor/sglang "
        f"max-rate ratio by mix and workers: {ratios}; wrote {args.out}"
    )


if __name__ == "__main__":
    main()
