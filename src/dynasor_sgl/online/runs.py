"""The programs one benchmark runs: the workload it loaded, warm-ups, the base deadlines and
one open-loop run of one system at one rate in one repeat.

`Bench` is the state the steps share (settings, the loaded workload parts, difficulty, the
results file, notes). A run flushes the worker's prefix cache, runs the seeded trace open-loop
(`online.runner`) and records every program with its system, rate, repeat, workload part and
base deadline; the run's end line marks it done. Which runs happen in which order, and on
which servers, is `online.session`'s business.
"""

from __future__ import annotations

import logging
import statistics
import time
import uuid
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from tqdm import tqdm

from dynasor_sgl.eval.datasets import Item, load_dataset
from dynasor_sgl.online.config import BenchConfig
from dynasor_sgl.online.mixes import SINGLE, Part, parts_of, slot
from dynasor_sgl.online.results import BenchResults
from dynasor_sgl.online.runner import program_fields, run_open_loop
from dynasor_sgl.online.servers import flush_cache, router_for
from dynasor_sgl.online.systems import RUN_TO_CAP, SYSTEMS, System, policy_for
from dynasor_sgl.online.workload import Arrival, deadline_s, mixed_workload

logger = logging.getLogger(__name__)

WARM_UP_PROGRAMS = 3


class BenchError(RuntimeError):
    """A benchmark that cannot go on (base deadline not measurable, ...)."""


@dataclass(frozen=True)
class Loaded:
    """A workload part with its program and questions loaded."""

    part: Part
    spec: Any  # the ProgramSpec
    items: list[Item]


def load_parts(cfg: BenchConfig) -> list[Loaded]:
    """The workload's parts with their programs (a registered name or `module:ATTRIBUTE`;
    else ValueError) and questions. The single part passes `max_tokens` to a program that
    takes it, and `cfg.params` on top."""
    from dynasor_sgl.lang.registry import load_program

    if cfg.workload == SINGLE:
        spec = load_program(cfg.program)
        own = {"max_tokens": cfg.max_tokens} if "max_tokens" in spec.function.arg_names else {}
        parts = [cfg.single_part({**own, **cfg.params})]
    else:
        parts = list(parts_of(cfg.workload, cfg.single_part({})))
    return [
        Loaded(
            p, load_program(p.program), load_dataset(p.dataset, limit=cfg.programs, seed=cfg.seed)
        )
        for p in parts
    ]


@dataclass
class Bench:
    """The state one benchmark shares between its steps."""

    cfg: BenchConfig
    parts: list[Loaded]
    difficulty: dict[str, int]
    results: BenchResults
    notes: list[str]

    def base_for(self, part: int) -> float:
        """The base deadline (s) of the workload's part `part`."""
        base = self.results.base
        assert base is not None, "the base deadline is set before any run"
        bases = base.get("bases") or {}
        return float(bases.get(self.parts[part].part.label, base["base_deadline_s"]))

    def arrivals(self, rate: float) -> list[Arrival]:
        items = [loaded.items for loaded in self.parts]
        return mixed_workload(items, self.cfg.programs, rate, self.cfg.seed, self.difficulty)


def warm_up(bench: Bench, worker_url: str) -> None:
    """A few programs at once straight on the worker, results discarded: a fresh CPU worker is
    slow on its first batches, which would otherwise fall on whichever system runs first."""
    _warm(bench, WARM_UP_PROGRAMS, f"warming up {worker_url}", None, worker=worker_url)
    flush_cache(worker_url)
    logger.info("warmed up %s with %d programs", worker_url, WARM_UP_PROGRAMS)


def warm_router(bench: Bench, system: System, router_url: str) -> None:
    """One program through a fresh router, discarded: a router's first program ran 2-5x slower
    than later ones (start-up) and pushed others past their deadlines."""
    _warm(bench, 1, f"warming up the {system.name} router", system, router=router_url)


def _warm(bench: Bench, count: int, what: str, system: System | None, **where: Any) -> None:
    from dynasor_sgl.lang import run_program

    counts = tuple(len(loaded.items) for loaded in bench.parts)

    def one(i: int) -> Any:
        part, k = slot(i, counts)
        loaded = bench.parts[part]
        user = loaded.part.user_policy()
        policy = {**user, **RUN_TO_CAP} if system is None else policy_for(system, user)
        return run_program(
            loaded.spec,
            loaded.items[k].question,
            params=dict(loaded.part.params),
            policy=policy,
            **where,
        )

    with ThreadPoolExecutor(count) as pool:
        results = list(pool.map(one, range(count)))
    failed = [r.error for r in results if not r.ok]
    if failed:
        raise BenchError(f"{what}: a program failed: {failed[0]}")


def measure_base(bench: Bench, worker_url: str, priority: bool) -> None:
    """The base deadline of each part: median latency of a few programs run one at a time at
    cap on the dynasor system, on an otherwise idle worker."""
    from dynasor_sgl.lang import run_program

    cfg = bench.cfg
    bases: dict[str, float] = {}
    every: list[float] = []
    with router_for(
        SYSTEMS["dynasor"],
        worker_url,
        cfg.out / "logs",
        priority=priority,
        max_inflight=cfg.max_inflight,
    ) as router_url:
        for loaded in bench.parts:
            latencies = []
            policy = {**loaded.part.user_policy(), **RUN_TO_CAP}
            for i in tqdm(
                range(cfg.calibration_programs),
                desc=f"base deadline {loaded.part.label}",
                unit="prog",
            ):
                item = loaded.items[i % len(loaded.items)]
                result = run_program(
                    loaded.spec,
                    item.question,
                    router=router_url,
                    policy=policy,
                    params=dict(loaded.part.params),
                )
                if not result.ok:
                    raise BenchError(
                        f"measuring the base deadline: a program failed: {result.error}"
                    )
                latencies.append(result.elapsed_s)
            bases[loaded.part.label] = round(statistics.median(latencies), 3)
            every += latencies
    source = f"median of {cfg.calibration_programs} uncontended programs at cap on dynasor"
    logger.info("base deadlines %s (%s: %s)", bases, source, every)
    first = next(iter(bases.values()))
    bench.results.set_base(first, every, source, bases if len(bases) > 1 else None)


def _execute(
    bench: Bench, system: System, worker_url: str, router_url: str | None, run_id: str
) -> Any:
    """The open loop's `execute` for one run: the program of the arrival's part, told its
    deadline."""
    from dynasor_sgl.lang import run_program

    cfg = bench.cfg

    def execute(arrival: Arrival, lag: float) -> Mapping[str, Any]:
        loaded = bench.parts[arrival.part]
        base = bench.base_for(arrival.part)
        deadline = deadline_s(cfg.slo_scale, arrival.difficulty, base)
        common: dict[str, Any] = {
            "policy": policy_for(system, loaded.part.user_policy()),
            "params": dict(loaded.part.params),
            "program_id": f"{run_id}-{arrival.index}",
        }
        if system.direct:
            result = run_program(loaded.spec, arrival.item.question, worker=worker_url, **common)
        else:
            assert router_url is not None, "a router system runs behind its router"
            result = run_program(
                loaded.spec,
                arrival.item.question,
                router=router_url,
                deadline_s=max(0.001, deadline - lag),
                **common,
            )
        return {
            "program": loaded.part.label,
            "base_deadline_s": base,
            "deadline_s": round(deadline, 3),
            **program_fields(result, arrival.item.answer),
        }

    return execute


def run_one(
    bench: Bench, system: System, rate: float, repeat: int, worker_url: str, router_url: str | None
) -> None:
    """One open-loop run of `system` at `rate` (programs/s) in repeat `repeat`, recorded."""
    arrivals = bench.arrivals(rate)
    flush_cache(worker_url)
    run_id = f"{system.name}-{rate:g}-r{repeat}-{uuid.uuid4().hex[:6]}"
    execute = _execute(bench, system, worker_url, router_url, run_id)
    label = {"system": system.name, "rate": float(rate), "repeat": repeat}
    errors = 0
    bar = tqdm(total=len(arrivals), desc=f"{system.name} @ {rate:g}/s #{repeat + 1}", unit="prog")

    def on_record(record: dict[str, Any]) -> None:
        nonlocal errors
        errors += record.get("status") != "ok"
        bench.results.add_program(record)
        bar.set_postfix(errors=errors, refresh=False)
        bar.update(1)

    started = time.monotonic()
    try:
        wall = run_open_loop(arrivals, execute, label, on_record)
    finally:
        bar.close()
    bench.results.end_run(system.name, float(rate), len(arrivals), errors, wall, started, repeat)
