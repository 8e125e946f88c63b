"""How fast the engine ran in a real online benchmark, as simulator profiles: the step model
fitted to each worker's step trace, and its speed during each run.

`bench online` records a step trace per worker flavour (`logs/worker-<flavour>/steps.jsonl`,
`dynasor_sgl.launch.steptrace`). On a shared machine the client, tokenizer and router share
the cores with the engine, so a step under an online load costs more than in a speed sweep
(2026-11-30: 72 ms + 6.3 ms per decoding request against 49 + 4.2): `engines_from_run` gives
each flavour the step model fitted to the steps it ran (`sim.steps.fit_steps`). The
machine's speed also drifts (in run 5 of 2026-11-30 a decode step's fixed cost doubled for
ten minutes): `engines_per_run` scales that fit by how much slower or faster the worker's
steps ran during each run alone (`sim.steps.run_windows`, `slowdown`), or per stretch of a
run (`sim.steps.speed_schedule`). The factor also absorbs whatever a system's own processes
take from the worker's cores (its router, the policy's math-verify child). Reads files;
knows nothing about simulating or comparing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dynasor_sgl.online.results import read_rows
from dynasor_sgl.online.systems import SYSTEMS
from dynasor_sgl.sim.profile import Profile
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
from dynasor_sgl.sim.validate import run_label

Speeds = dict[str, tuple[tuple[float, float], ...]]  # run label -> engine speed schedule


@dataclass(frozen=True)
class WorkerTrace:
    """One worker flavour's step trace in a real run, read back, and its whole-trace fit."""

    flavour: str
    path: Path
    steps: list[Step]
    fit: StepFit


def worker_traces(real: Path) -> list[WorkerTrace]:
    """The step traces `bench online` recorded per worker flavour (`logs/worker-<flavour>/
    steps.jsonl`), by path, each with the step model fitted to all its steps
    (`sim.steps.fit_steps`). ValueError when there are none (the run predates them)."""
    paths = sorted(real.glob("logs/worker-*/steps.jsonl"))
    if not paths:
        raise ValueError(f"{real} has no step traces (logs/worker-*/steps.jsonl): it predates them")
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
    scaled by how much slower or faster that worker's steps ran during that run alone. One
    factor per run, not a fit of its own: at 1 program/s a run's decode steps nearly all
    hold the router's bound of 12, and a fit on them alone cannot tell the fixed cost from
    the per-request one. With `width`, each run's engine is the whole trace's fit at its own
    speed and the run's factor is one per `width` seconds instead, as schedules by run.
    ValueError when a run has no trace or its steps cannot give a factor."""
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
                raise ValueError(f"{w.path}, the steps of {key}: {exc}") from exc
            engines[key] = scaled_engine(profile, w, key, window, factor, width)
    missing = [run_label(r["system"], r["rate"]) for r in runs]
    missing = [k for k in missing if k not in engines]
    if missing:
        raise ValueError(f"{real} has no step trace for the runs {', '.join(missing)}")
    return engines, speeds


def scaled_engine(
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
