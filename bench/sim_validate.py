"""The simulator against a real online benchmark, side by side, on the same arrival traces.

Reads a finished `dynasor-sgl bench online` folder (--real) and simulates every real run
again: the same systems, rates, arrivals, deadlines and policy, each program replayed from
its own record (or, with --traces EVAL_FILE, from that eval file's samples). The method is
`dynasor_sgl.sim.check` (what each option below does, and why); this script parses the
options, runs it and writes the results. Compares per system and rate the share of programs
on time (goal: within 10 points) and the mean latency (goal: within 20%), with tokens, the
mean router wait, steps and exit reasons beside them (`sim.validate.compare`).

- --engine-from-run / --engine-from OTHER_RUN: each worker flavour's step model fitted to the
  steps it ran in this (or another) real run (`sim.speed.engines_from_run`).
- --engine-per-run / --speed-window S: that fit at each run's own speed, or per S seconds of
  each run (`sim.speed.engines_per_run`).
- --calibrate-on SYSTEMS: the router's costs fitted to those systems' runs (less --skip),
  the others held out, saved as a profile of its own (--calibrated; `sim.router_cost`).
- --repeat REAL2: a second real run of the same settings compared by the same goals.

Writes bench/results/sim_validation.json and .png (and the simulated records under
bench/results/sim_validation/records.jsonl) and prints a one-line summary.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from dynasor_sgl.sim.check import CheckSpec, check, summary
from dynasor_sgl.sim.profile import load_profile, save_profile
from dynasor_sgl.sim.router_cost import ROUTER_ADDED_S

HERE = Path(__file__).parent


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


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--real", type=Path, default=HERE / "results" / "online")
    ap.add_argument("--traces", type=Path, default=None, help="an eval file (default: records)")
    ap.add_argument("--profile", type=Path, default=HERE / "profiles" / "cpu-smollm2-135m.json")
    ap.add_argument("--calibrate-on", default="", help="systems to fit the serving overheads on")
    ap.add_argument("--skip", default="", help="runs left out of the fit, e.g. parrot@0.25")
    ap.add_argument(
        "--router-overhead", type=float, default=ROUTER_ADDED_S, help="measured s per request"
    )
    ap.add_argument(
        "--calibrated", type=Path, default=HERE / "profiles" / "cpu-smollm2-135m-serving.json"
    )
    ap.add_argument(
        "--router-deadline-stop",
        choices=("auto", "on", "off"),
        default="auto",
        help="whether the real routers stopped at deadlines by default (auto: from the records)",
    )
    ap.add_argument(
        "--engine-from-run",
        action="store_true",
        help="fit the step model to the real run's own step traces (logs/worker-*/steps.jsonl) "
        "in place of the profile's",
    )
    ap.add_argument(
        "--engine-from",
        type=Path,
        help="as --engine-from-run, from the step traces of another real run (held out)",
    )
    ap.add_argument(
        "--engine-per-run",
        action="store_true",
        help="as --engine-from-run, fitted to the steps each real run's worker ran during "
        "that run alone (the machine's speed drifts between runs)",
    )
    ap.add_argument(
        "--speed-window",
        type=float,
        default=None,
        metavar="SECONDS",
        help="as --engine-per-run, with the worker's speed measured per SECONDS of each run "
        "(the machine's speed drifts within a run too)",
    )
    ap.add_argument(
        "--repeat",
        type=Path,
        help="another real run of the same settings: how closely two real runs agree, by the "
        "same goals (the real system's own reproducibility)",
    )
    ap.add_argument("--out", type=Path, default=HERE / "results" / "sim_validation.json")
    return ap.parse_args()


def write_records(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"kind": "program", **r}) + "\n" for r in records))


def check_spec(args: argparse.Namespace) -> CheckSpec:
    """The check the arguments ask for."""
    stop = {"auto": None, "on": True, "off": False}[args.router_deadline_stop]
    return CheckSpec(
        real=args.real,
        profile=load_profile(args.profile),
        out=args.out.parent / "sim_validation",
        traces=args.traces,
        calibrate_on=tuple(s for s in args.calibrate_on.split(",") if s),
        skip=tuple(x for x in args.skip.split(",") if x),
        router_overhead=args.router_overhead,
        router_deadline_stop=stop,
        engine_from=args.engine_from or (args.real if args.engine_from_run else None),
        per_run=args.engine_per_run,
        speed_window=args.speed_window,
        repeat=args.repeat,
    )


def main() -> None:
    args = parse_args()
    try:
        result = check(check_spec(args))
    except ValueError as exc:
        raise SystemExit(str(exc)) from exc
    profile_path = args.profile
    if result.calibrated is not None:
        save_profile(result.calibrated, args.calibrated)
        profile_path = args.calibrated
    write_records(args.out.parent / "sim_validation" / "records.jsonl", result.records)
    args.out.write_text(json.dumps(result.doc, indent=2) + "\n")
    plot(result.doc["rows"], args.out.with_suffix(".png"))
    print(f"{summary(result.doc, profile_path.name)}; wrote {args.out}")


if __name__ == "__main__":
    main()
