"""A worker's step trace (`dynasor_sgl.launch.steptrace`) read back, and the step model fitted
to it.

Each line is one step the real scheduler ran. A step's seconds run from the start of its
`get_next_batch_to_run` to the start of the next one, so they hold the scheduling, the
forward and the result processing (sending tokens on, freeing finished requests), as a
simulated step does; when the scheduler went idle in between (the next step starts more than
`IDLE_GAP_S` after this one's forward ended) they end with the forward. Steps of several
workers in one file are kept apart by their `worker` field.

`fit_steps` fits the simulator's split step model by least squares (`profile.fit_step_model`
on each kind): decode steps `base_s + per_request_s·B` over B running requests; prefill
(extend) steps `prefill_base_s + per_new_request_s·n + per_prefill_token_s·P` over n requests
computing P prompt tokens (SGLang's extend runs each request's attention on its own on the
CPU backend, hence a per-request term).

`run_windows` finds which steps belong to which run of an online benchmark (by each run's
recorded start, else by the cold prefill that follows the bench's cache flush before every
run), and `slowdown` says how much longer a run's steps took than a fit says: this shared
machine's speed drifts by up to 2x over minutes, and a run is compared with its simulation on
the engine as fast as it was then. Pure except `read_steps`.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dynasor_sgl.sim.profile import Profile, fit_step_model

IDLE_GAP_S = 0.05
# StepFit's coefficients: the Profile fields of the split step model
COEFFICIENTS = ("base_s", "per_request_s", "prefill_base_s", "per_new_request_s")
PER_TOKEN = "per_prefill_token_s"


@dataclass(frozen=True)
class Step:
    """One step: "decode" or "extend", requests in it, prompt tokens it computed, seconds;
    its context, the prompt tokens it found cached, and when it started (the worker's
    monotonic clock, the same on every process of the machine)."""

    mode: str
    batch: int
    new_tokens: int
    seconds: float
    context: int = 0
    cached: int = 0
    t: float = 0.0


@dataclass(frozen=True)
class StepFit:
    """The split step model's coefficients (s) and how many steps of each kind made them."""

    base_s: float
    per_request_s: float
    prefill_base_s: float
    per_new_request_s: float
    per_prefill_token_s: float
    decode_steps: int
    extend_steps: int

    def seconds(self, step: Step) -> float:
        """What the model says `step` takes."""
        if step.mode == "decode":
            return self.base_s + self.per_request_s * step.batch
        return (
            self.prefill_base_s
            + self.per_new_request_s * step.batch
            + self.per_prefill_token_s * step.new_tokens
        )

    def scaled(self, factor: float) -> StepFit:
        """Every step `factor` times as long (the same engine on a slower or faster CPU)."""
        fields = {n: getattr(self, n) * factor for n in (*COEFFICIENTS, PER_TOKEN)}
        return dataclasses.replace(self, **fields)

    def coefficients(self) -> dict[str, float]:
        """The profile fields this fit gives (`sim.profile.Profile`)."""
        fields = {n: round(getattr(self, n), 6) for n in COEFFICIENTS}
        fields[PER_TOKEN] = round(self.per_prefill_token_s, 7)
        return fields


def steps_from_lines(lines: Iterable[Mapping[str, Any]]) -> list[Step]:
    """The steps of trace lines (any order; several workers apart), each with its seconds."""
    workers: dict[Any, list[Mapping[str, Any]]] = {}
    for line in lines:
        if line.get("mode") in ("decode", "extend"):
            workers.setdefault(line.get("worker"), []).append(line)
    steps = []
    for rows in workers.values():
        rows.sort(key=lambda r: float(r["t"]))
        for i, row in enumerate(rows):
            start, end = float(row["t"]), float(row["run_end"])
            nxt = float(rows[i + 1]["t"]) if i + 1 < len(rows) else None
            if nxt is not None and nxt - end <= IDLE_GAP_S:
                end = nxt
            steps.append(
                Step(
                    mode=str(row["mode"]),
                    batch=int(row["batch"]),
                    new_tokens=int(row.get("new_tokens", 0)),
                    seconds=end - start,
                    context=int(row.get("context", 0)),
                    cached=int(row.get("cached", 0)),
                    t=start,
                )
            )
    return steps


def read_steps(path: str | Path) -> list[Step]:
    """The steps of a trace file; a missing file or a line that is not JSON is a ValueError
    naming it."""
    try:
        text_lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise ValueError(f"step trace {path}: {exc.strerror or exc}") from exc
    lines = []
    for n, text in enumerate(text_lines, 1):
        if not text.strip():
            continue
        try:
            lines.append(json.loads(text))
        except json.JSONDecodeError as exc:
            raise ValueError(f"step trace {path}, line {n}: {exc}") from exc
    return steps_from_lines(lines)


def cold_starts(steps: Sequence[Step]) -> list[float]:
    """When each prefill that found nothing cached started, in order: the first request after
    the worker started or after its prefix cache was flushed (`bench online` flushes it before
    every run, and within a run every prompt shares at least the system prompt)."""
    return sorted(s.t for s in steps if s.mode == "extend" and s.cached == 0 and s.new_tokens)


def run_windows(
    steps: Sequence[Step], walls: Sequence[float], starts: Sequence[float | None] = ()
) -> list[tuple[float, float]]:
    """The (start, end) on the worker's clock of each of the runs a worker served, in run
    order, from their wall times: a run's recorded start where it has one (`starts`), else
    the last `len(walls)` cold starts of the trace (each run's flush is followed by its first
    program; earlier cold starts are the worker's warm-up). ValueError when the trace has too
    few cold starts or the runs so found overlap (the trace is not of these runs)."""
    if starts and all(s is not None for s in starts):
        begun = [float(s) for s in starts if s is not None]
    else:
        cold = cold_starts(steps)
        if len(cold) < len(walls):
            raise ValueError(
                f"the step trace has {len(cold)} cold prefills for {len(walls)} runs: "
                "it is not the trace of these runs"
            )
        begun = cold[len(cold) - len(walls) :]
    windows = [(b, b + float(w)) for b, w in zip(begun, walls, strict=True)]
    for (_, end), (nxt, _) in itertools.pairwise(windows):
        if end > nxt + 1.0:  # the bench's own clock read and the worker's first step
            raise ValueError(
                f"runs found in the step trace overlap (one ends at {end:.1f} s, the next "
                f"starts at {nxt:.1f} s): it is not the trace of these runs"
            )
    return windows


def in_window(steps: Sequence[Step], window: tuple[float, float]) -> list[Step]:
    """The steps that started within `window` (start, end), on the trace's clock."""
    start, end = window
    return [s for s in steps if start <= s.t <= end]


def fit_steps(steps: Sequence[Step]) -> StepFit:
    """The split step model fitted to `steps`; needs decode and extend steps (ValueError)."""
    decode = [(s.batch, 0, s.seconds) for s in steps if s.mode == "decode"]
    extend = [(s.batch, s.new_tokens, s.seconds) for s in steps if s.mode == "extend"]
    if not decode or not extend:
        raise ValueError(
            f"a step fit needs decode and extend steps ({len(decode)} decode, "
            f"{len(extend)} extend in the trace)"
        )
    base, per_request, _ = fit_step_model(decode)
    prefill_base, per_new_request, per_token = fit_step_model(extend)
    return StepFit(
        base_s=base,
        per_request_s=per_request,
        prefill_base_s=prefill_base,
        per_new_request_s=per_new_request,
        per_prefill_token_s=per_token,
        decode_steps=len(decode),
        extend_steps=len(extend),
    )


def slowdown(steps: Sequence[Step], fit: StepFit) -> float:
    """How much longer `steps` took than `fit` says, in all: their seconds over the model's
    (1.0: as fitted; 2.0: the engine ran at half speed). ValueError when there are none."""
    predicted = sum(fit.seconds(s) for s in steps)
    if not steps or predicted <= 0:
        raise ValueError("a slowdown needs steps the model gives time to")
    return sum(s.seconds for s in steps) / predicted


def speed_schedule(
    steps: Sequence[Step],
    fit: StepFit,
    window: tuple[float, float],
    width: float,
    least: int = 20,
) -> list[tuple[float, float]]:
    """The worker's speed over a run, as an engine's schedule (`sim.engine.Engine`): for each
    `width` seconds of `window`, (seconds since its start, `slowdown` of the steps in them
    against `fit`). A stretch with fewer than `least` steps (the worker mostly idle) takes
    the whole window's slowdown, which is also the schedule's only entry if the window has
    too few steps to say more."""
    start, end = window
    mine = in_window(steps, window)
    whole = slowdown(mine, fit)
    schedule = []
    at = start
    while at < end:
        part = [s for s in mine if at <= s.t < at + width]
        factor = slowdown(part, fit) if len(part) >= least else whole
        schedule.append((round(at - start, 3), factor))
        at += width
    return schedule or [(0.0, whole)]


def with_step_fit(profile: Profile, fit: StepFit, source: str) -> Profile:
    """`profile` with its step model replaced by `fit`'s, each coefficient's source `source`
    (its limits, router costs and the rest kept)."""
    fields: dict[str, Any] = dict(fit.coefficients())
    fields["source"] = {**profile.source, **{name: source for name in fit.coefficients()}}
    return dataclasses.replace(profile, **fields)
