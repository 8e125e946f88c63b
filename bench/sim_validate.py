"""The simulator against a real online benchmark, side by side, on the same arrival traces.

Reads a finished `dynasor-sgl bench online` folder (its settings, base deadline and program
records) and replays every real run in the simulator: the same systems, rates, arrivals
(seed), deadlines (SLO scale, base deadline, difficulty) and policy (the stored overrides,
with SC's `detect_every` pinned to what the runs ran with: 0, read once, unless stored). By
default each simulated program replays the real program of the same run and index: its own
steps, generated tokens and prompt, and a certaindex stop exactly where it stopped
(`sim.traces.record_trace`), so what is compared is the serving model, not two samplings.
A real program the router stopped at its deadline is replayed from its recorded steps on,
not stopped there: the simulated router's own deadline stop (the router's code, on the
virtual clock) decides whether and when it ends. Which router systems stopped at deadlines
the results do not record (the router's default changed), so it is read from the records
(`sim.validate.router_deadline_stop`; --router-deadline-stop on/off overrides). With
--traces EVAL_FILE the programs replay that eval file's samples instead (same questions,
other samples). Compares per system and rate the share of programs on time (goal: within 10
points) and the mean latency (goal: within 20%), with tokens, the mean router wait, steps and
exit reasons beside them (`sim.validate.compare`). Writes bench/results/sim_validation.json
and .png (and the simulated records under bench/results/sim_validation/records.jsonl) and
prints a one-line summary.

With --engine-from-run the profile's step model (decode and prefill step costs) is fitted, per
worker flavour, to the steps that worker ran in the real run (`bench online` records a step
trace per worker, `dynasor_sgl.launch.steptrace`), and each system is simulated on its own worker's:
on this 2-core machine the client, tokenizer and router share the cores with the engine, so
a step under an online load costs more than in a speed sweep (2026-11-30: 72 ms + 6.3 ms per
decoding request against 49 + 4.2), and the comparison is then of everything but the step
costs: queues, batching, prefix sharing, admission, the policy's decisions and the routers'
scheduling. The router's CPU work is then partly in its worker's steps; what it costs beyond
them (a request waiting on the router's process) is what --calibrate-on still fits.
--engine-from OTHER_RUN takes the steps of another real run instead (held out).

With --engine-per-run each real run is simulated on its worker's whole-trace fit scaled by how
much slower or faster that worker's steps ran during that run alone (`sim.steps.run_windows`,
`slowdown`): the machine's speed drifts (in run 5 of 2026-11-30 a decode step's fixed cost
doubled for ten minutes, over the dynasor and certaindex runs, the misses that repeated), so
the comparison is of the serving model given the engine's speed at the time. The factor also
absorbs whatever a system's own processes take from the worker's cores (its router, the
policy's math-verify child): that cost is in the factor, not validated by it.

With --repeat REAL2 (a second real run of the same settings) the two real runs are compared
by the same goals too: on this shared 2-core machine a real run does not reproduce itself
within them under load, and that is the floor any model's agreement sits on.

With --calibrate-on SYSTEMS the profile's router costs, what a worker measured alone does not
see, are set and saved as a profile of its own (--calibrated): router_overhead_s, the seconds
a request takes longer on its way through the router, is measured (--router-overhead, default
the router's added p50 latency on the real worker from bench/router_overhead.py: 2.6 ms);
router_cpu_s, the step time the router's own CPU work per admitted request takes from a
worker on the same cores, is fitted by grid search to the real runs of those systems only
(less --skip runs); the other systems are held out. (Fitting both on parrot's two usable runs
is ill-posed: the fit slid along a ridge from (0.2 s, 0.03 s) to (0, 0.04 s) when the grid
was refined.)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from dynasor_sgl.online.config import BenchConfig
from dynasor_sgl.online.results import read_rows
from dynasor_sgl.online.systems import SYSTEMS
from dynasor_sgl.sim.profile import Profile, load_profile, save_profile
from dynasor_sgl.sim.run import RunSpec, simulate
from dynasor_sgl.sim.session import load_traces
from dynasor_sgl.sim.steps import (
    Step,
    StepFit,
    fit_steps,
    in_window,
    read_steps,
    run_windows,
    slowdown,
    speed_schedule,
    with_step_fit,
)
from dynasor_sgl.sim.traces import Trace, record_trace
from dynasor_sgl.sim.validate import (
    ATTAINMENT_POINTS,
    LATENCY_SHARE,
    Key,
    by_run,
    compare,
    real_bench,
    router_deadline_stop,
)

HERE = Path(__file__).parent
# bench/results/router_overhead.json: real_worker_latency.dynasor-router.added_p50_ms
ROUTER_ADDED_S = 0.0026
ROUTER_CPU_GRID = tuple(round(0.005 * i, 3) for i in range(21))  # 0 .. 0.1 s per admission


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


def pinned_policy(settings: dict[str, Any]) -> dict[str, Any]:
    """The policy overrides the real runs ran with. SC's default `detect_every` became 5
    after these runs were made; a stored setting wins, else the old default (0: read once)."""
    policy = dict(settings.get("policy") or {})
    policy.setdefault("detect_every", 0)
    return policy


def bench_config(settings: dict[str, Any], base: float, real: list[dict], out: Path) -> BenchConfig:
    """The real benchmark's settings, its systems and rates, its base deadline."""
    keep = ("program", "dataset", "seed", "programs", "slo_scale", "cap", "max_tokens")
    return BenchConfig(
        out=out,
        rates=tuple(sorted({float(r["rate"]) for r in real})),
        systems=tuple(dict.fromkeys(r["system"] for r in real)),
        base_deadline=base,
        params=settings.get("params") or {},
        policy=pinned_policy(settings),
        **{k: settings[k] for k in keep},
    )


TracesOf = Callable[[Key], list[Trace]]
Speeds = dict[str, tuple[tuple[float, float], ...]]  # run label -> engine speed schedule


def run_label(system: str, rate: float) -> str:
    """A run's label, "system@rate", as --skip names runs and per-run engines are keyed."""
    return f"{system}@{float(rate):g}"


def record_traces(cfg: BenchConfig, real: list[dict]) -> TracesOf:
    """Each real run's programs as traces of their own records, in index order."""
    runs = {key: sorted(recs, key=lambda r: int(r["index"])) for key, recs in by_run(real).items()}
    return lambda key: [record_trace(r, cfg.cap, cfg.max_tokens) for r in runs[key]]


def eval_traces(cfg: BenchConfig, path: Path) -> TracesOf:
    """The same eval file's traces (same questions, other samples) for every run."""
    traces = load_traces(str(path), cfg)
    return lambda key: traces


def run_spec(cfg: BenchConfig, profile: Profile, router_stop: bool) -> RunSpec:
    """The real runs' shared settings on `profile`; `router_stop`: whether their routers
    stopped at deadlines where the system did not ask for it (`router_deadline_stop`)."""
    bases = {"sc": float(cfg.base_deadline or 1.0)}
    policy = dict(cfg.policy)
    args = (profile, 1, cfg.seed, cfg.slo_scale, cfg.max_tokens, policy, bases)
    return RunSpec(*args, router_deadline_stop=router_stop)


def simulate_runs(
    spec: RunSpec,
    cfg: BenchConfig,
    traces_of: TracesOf,
    keys: list[Key],
    engines: Mapping[str, Profile] | None = None,
    speeds: Speeds | None = None,
) -> list[dict]:
    """The simulated records of the real runs `keys`, each on its own traces (and, given
    `engines`, on its own run's or its system's worker flavour's profile; given `speeds`, at
    its run's speed schedule)."""
    out = []
    for name, rate in keys:
        run_id = f"{name}-{rate:g}"
        system = SYSTEMS[name]
        mine = spec
        label = run_label(name, rate)
        engine = (engines or {}).get(label) or (engines or {}).get(system.worker)
        if engine is not None:
            mine = dataclasses.replace(spec, profile=engine)
        speed = (speeds or {}).get(label)
        if speed:
            mine = dataclasses.replace(mine, speed=speed)
        out += simulate(traces_of((name, rate)), cfg.programs, system, rate, mine, run_id)
    return out


def loss(real: list[dict], sim: list[dict], slo: float) -> float:
    """Squared relative error of mean latency plus squared attainment error, summed by run."""
    total = 0.0
    for row in compare(real, sim, slo):
        rl, sl = row["real_mean_latency_s"], row["sim_mean_latency_s"]
        total += (sl / rl - 1) ** 2 + (row["sim_attainment"] - row["real_attainment"]) ** 2
    return total


def calibrate(
    spec: RunSpec,
    cfg: BenchConfig,
    traces_of: TracesOf,
    real: list[dict],
    systems: list[str],
    skip: set[str],
    overhead: float,
    engines: Mapping[str, Profile] | None = None,
    speeds: Speeds | None = None,
) -> tuple[Profile, float]:
    """The router_cpu_s of the grid (with router_overhead_s = `overhead`) whose simulation of
    the real runs of `systems` (less the `skip` runs) is closest (`loss`); the other systems
    stay held out."""
    keys = [(s, r) for s in systems for r in cfg.rates if run_label(s, r) not in skip]
    fit = [r for r in real if (r["system"], float(r["rate"])) in keys]
    best: tuple[float, Profile] | None = None
    for cpu in ROUTER_CPU_GRID:
        cand = dataclasses.replace(spec.profile, router_overhead_s=overhead, router_cpu_s=cpu)
        mine = with_router_costs(engines, cand)
        cand_spec = dataclasses.replace(spec, profile=cand)
        sim = simulate_runs(cand_spec, cfg, traces_of, keys, mine, speeds)
        score = loss(fit, sim, cfg.slo_scale)
        if best is None or score < best[0]:
            best = (score, cand)
    assert best is not None, "the grid is not empty"
    return best[1], best[0]


def with_router_costs(
    engines: Mapping[str, Profile] | None, costs: Profile
) -> dict[str, Profile] | None:
    """Each engine profile with the router costs of `costs` (None: None)."""
    if engines is None:
        return None
    kept = {"router_overhead_s": costs.router_overhead_s, "router_cpu_s": costs.router_cpu_s}
    return {k: dataclasses.replace(v, **kept) for k, v in engines.items()}


def fit_profile(
    args: argparse.Namespace,
    spec: RunSpec,
    cfg: BenchConfig,
    real: list[dict],
    fit_on: list[str],
    traces_of: TracesOf,
    engines: Mapping[str, Profile] | None = None,
    speeds: Speeds | None = None,
) -> float:
    """Calibrates the router's costs on `fit_on` from `spec`'s profile and saves the result
    (--calibrated)."""
    skip = {x for x in args.skip.split(",") if x}
    overhead = args.router_overhead
    tuned, fit_loss = calibrate(spec, cfg, traces_of, real, fit_on, skip, overhead, engines, speeds)
    note = (
        f"calibrated by bench/sim_validate.py on the real {','.join(fit_on)} runs of "
        f"{args.real} replayed from {args.traces or 'their own records'} (grid search, loss "
        f"{fit_loss:.3f}; runs left out: {args.skip or '-'}); held out: the other systems"
    )
    measured = (
        "measured: the dynasor router's added p50 latency per request in front of the real "
        "CPU worker (bench/router_overhead.py, bench/results/router_overhead.json)"
    )
    source = {**tuned.source, "router_overhead_s": measured, "router_cpu_s": note}
    name = tuned.name if tuned.name.endswith("-serving") else tuned.name + "-serving"
    tuned = dataclasses.replace(tuned, name=name, source=source)
    save_profile(tuned, args.calibrated)
    return fit_loss


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


@dataclasses.dataclass(frozen=True)
class WorkerTrace:
    """One worker flavour's step trace in a real run, read back, and its whole-trace fit."""

    flavour: str
    path: Path
    steps: list[Step]
    fit: StepFit


def worker_traces(real: Path) -> list[WorkerTrace]:
    """The step traces `bench online` recorded per worker flavour (`logs/worker-<flavour>/
    steps.jsonl`), each with the step model fitted to all its steps (`sim.steps.fit_steps`)."""
    paths = sorted(real.glob("logs/worker-*/steps.jsonl"))
    if not paths:
        raise SystemExit(f"{real} has no step traces (logs/worker-*/steps.jsonl): it predates them")
    out = []
    for path in paths:
        steps = read_steps(path)
        flavour = path.parent.name.removeprefix("worker-")
        out.append(WorkerTrace(flavour, path, steps, fit_steps(steps)))
    return out


def engines_from_run(profile: Profile, real: Path) -> dict[str, Profile]:
    """Per worker flavour, `profile` with the step model fitted to the steps that flavour's
    worker ran in the real run: each system is simulated on the engine as it ran for it."""
    engines = {}
    for w in worker_traces(real):
        source = (
            f"least squares over the {w.fit.decode_steps} decode and {w.fit.extend_steps} "
            f"prefill steps the worker ran in the real run ({w.path}; sim.steps.fit_steps): the "
            "engine as it ran in the run compared with, its cores shared with the client and "
            "routers"
        )
        engines[w.flavour] = with_step_fit(profile, w.fit, source)
    return engines


def engines_per_run(
    profile: Profile, real: Path, width: float | None = None
) -> tuple[dict[str, Profile], Speeds]:
    """Per real run ("system@rate"), `profile` with the step model of its worker's whole trace
    (as --engine-from-run) scaled by how much slower or faster that worker's steps ran during
    that run alone (`sim.steps.run_windows`, `slowdown`). This machine's speed drifts: a
    decode step's fixed cost doubled for ten minutes of run 5 (2026-11-30), so each run is
    simulated on the engine as fast as it was while that run ran. One factor per run, not a
    fit of its own: at 1 program/s a run's decode steps nearly all hold the router's bound of
    12 requests, and a fit on them alone cannot tell the fixed cost from the per-request one.
    With `width`, each run's engine is the whole trace's fit at its own speed and the run's
    factor is one per `width` seconds instead (`sim.steps.speed_schedule`), as schedules
    by run."""
    runs = [r for r in read_rows(real / "results.jsonl") if r.get("kind") == "run"]
    engines: dict[str, Profile] = {}
    speeds: Speeds = {}
    for w in worker_traces(real):
        mine = [r for r in runs if SYSTEMS[str(r["system"])].worker == w.flavour]
        walls = [float(r["wall_s"]) for r in mine]
        windows = run_windows(w.steps, walls, [r.get("started_monotonic") for r in mine])
        for run, window in zip(mine, windows, strict=True):
            key = run_label(run["system"], run["rate"])
            try:
                factor = slowdown(in_window(w.steps, window), w.fit)
                if width is not None:
                    speeds[key] = tuple(speed_schedule(w.steps, w.fit, window, width))
            except ValueError as exc:
                raise SystemExit(f"{w.path}, the steps of {key}: {exc}") from exc
            engines[key] = run_engine(profile, w, key, window, factor, width)
    missing = [run_label(r["system"], r["rate"]) for r in runs]
    missing = [k for k in missing if k not in engines]
    if missing:
        raise SystemExit(f"{real} has no step trace for the runs {', '.join(missing)}")
    return engines, speeds


def run_engine(
    profile: Profile,
    w: WorkerTrace,
    key: str,
    window: tuple[float, float],
    factor: float,
    width: float | None,
) -> Profile:
    """`profile` with `w`'s whole-trace fit times the run's `factor` (1 with a speed schedule
    of `width` seconds, which carries it instead), each number's source saying so."""
    source = (
        f"least squares over the {w.fit.decode_steps} decode and {w.fit.extend_steps} prefill "
        f"steps of the whole trace ({w.path}; sim.steps.fit_steps), times {factor:.3f}: the "
        f"steps of the real run {key} ({window[1] - window[0]:.0f} s from {window[0]:.1f} s on "
        "the worker's clock; sim.steps.run_windows) took that much longer than the fit says "
        "(sim.steps.slowdown)"
    )
    if width is not None:
        source += f", one factor per {width:g} s of the run (sim.steps.speed_schedule)"
        factor = 1.0
    return with_step_fit(profile, w.fit.scaled(factor), source)


def main() -> None:
    args = parse_args()
    settings, base, real = real_bench(args.real)
    cfg = bench_config(settings, base, real, args.out.parent / "sim_validation")
    traces_of = eval_traces(cfg, args.traces) if args.traces else record_traces(cfg, real)
    profile_path, fit_on = args.profile, [s for s in args.calibrate_on.split(",") if s]
    choice = args.router_deadline_stop
    stop = router_deadline_stop(real) if choice == "auto" else choice == "on"
    spec = run_spec(cfg, load_profile(profile_path), stop)
    engine_run = args.engine_from or (args.real if args.engine_from_run else None)
    engines = engines_from_run(spec.profile, engine_run) if engine_run is not None else None
    speeds: Speeds = {}
    if args.engine_per_run or args.speed_window:
        engine_run = args.real
        engines, speeds = engines_per_run(spec.profile, args.real, args.speed_window)
    fit_loss = None
    if fit_on:
        fit_loss = fit_profile(args, spec, cfg, real, fit_on, traces_of, engines, speeds)
        profile_path = args.calibrated
        spec = dataclasses.replace(spec, profile=load_profile(profile_path))
        engines = with_router_costs(engines, spec.profile)
    sim = simulate_runs(spec, cfg, traces_of, sorted(by_run(real)), engines, speeds)
    write_records(cfg.out / "records.jsonl", sim)
    rows = compare(real, sim, cfg.slo_scale)
    for row in rows:
        row["role"] = "fit" if row["system"] in fit_on else "held out"
    doc = {
        "bench": "sim_validation",
        "real": str(args.real),
        "traces": str(args.traces) if args.traces else "each real program's own record",
        "policy": dict(cfg.policy),
        "router_deadline_stop": stop,
        "profile": spec.profile.to_dict(),
        "engines_from": None if engine_run is None else str(engine_run),
        "engines": {k: v.to_dict() for k, v in (engines or {}).items()},
        "speed_window_s": args.speed_window,
        "speeds": {k: [list(x) for x in v] for k, v in speeds.items()},
        "calibrated_on": fit_on,
        "fit_loss": fit_loss,
        "base_deadline_s": base,
        "slo_scale": cfg.slo_scale,
        "goals": {"attainment_points": ATTAINMENT_POINTS, "latency_share": LATENCY_SHARE},
        "rows": rows,
    }
    repeat = ""
    if args.repeat is not None:
        doc["repeat"] = str(args.repeat)
        doc["repeat_rows"] = compare(real, real_bench(args.repeat)[2], cfg.slo_scale)
        again = doc["repeat_rows"]
        repeat = (
            f"; the repeat real run against this one: within 10 points in "
            f"{sum(r['attainment_within_10_points'] for r in again)} of {len(again)}, "
            f"within 20% in {sum(r['latency_within_20_percent'] for r in again)}"
        )
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    plot(rows, args.out.with_suffix(".png"))
    held = [r for r in rows if r["role"] == "held out"]
    att = sum(r["attainment_within_10_points"] for r in held)
    lat = sum(r["latency_within_20_percent"] for r in held)
    print(
        f"{len(held)} held-out real runs vs simulated on {profile_path.name}: attainment within "
        f"10 points in {att}, mean latency within 20% in {lat}{repeat}; wrote {args.out}"
    )


if __name__ == "__main__":
    main()
