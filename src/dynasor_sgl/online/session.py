"""One `dynasor-sgl bench online` from start to reports.

Plans which systems run on which worker (one worker per flavour, started in turn, or the
user's worker for all), warms each worker up, measures the base deadline once (kept in the
results file), runs each pending (system, rate) open-loop on a flushed prefix cache with a
progress bar, and writes summary.json, summary.md and the PNGs into the output folder. Every
process it starts is stopped on the way out, Ctrl-C included.
"""

from __future__ import annotations

import json
import logging
import statistics
import time
import uuid
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass
from typing import Any

from tqdm import tqdm

from dynasor_sgl.eval.datasets import Item, load_dataset
from dynasor_sgl.online import plots
from dynasor_sgl.online.config import BenchConfig
from dynasor_sgl.online.report import markdown, summarize
from dynasor_sgl.online.results import BenchResults
from dynasor_sgl.online.runner import program_fields, run_open_loop
from dynasor_sgl.online.servers import (
    flush_cache,
    has_priority_scheduling,
    own_worker,
    router_for,
)
from dynasor_sgl.online.systems import (
    RUN_TO_CAP,
    SYSTEMS,
    WORKER_FLAVOURS,
    Flavour,
    System,
    policy_for,
    unsupported,
)
from dynasor_sgl.online.workload import Arrival, deadline_s, load_difficulty, workload

logger = logging.getLogger(__name__)

WARM_UP_PROGRAMS = 3


class BenchError(RuntimeError):
    """A benchmark that cannot go on (base deadline not measurable, ...)."""


@dataclass
class Bench:
    """The state one benchmark shares between its steps."""

    cfg: BenchConfig
    spec: Any  # the ProgramSpec
    items: list[Item]
    difficulty: dict[str, int]
    results: BenchResults
    notes: list[str]

    @property
    def base_s(self) -> float:
        base = self.results.base
        assert base is not None, "the base deadline is set before any run"
        return float(base["base_deadline_s"])

    def params(self) -> dict[str, Any]:
        own = (
            {"max_tokens": self.cfg.max_tokens}
            if "max_tokens" in self.spec.function.arg_names
            else {}
        )
        return {**own, **self.cfg.params}


def plan(cfg: BenchConfig, notes: list[str]) -> list[tuple[Flavour | None, list[System]]]:
    """(worker flavour, systems) in run order; None: the user's worker. Skips are noted."""
    systems = []
    for name in cfg.systems:
        why = unsupported(SYSTEMS[name])
        if why:
            notes.append(f"{name} skipped: {why}")
        elif name == "sglang-lpm" and cfg.worker_url:
            notes.append("sglang-lpm skipped: it needs its own worker (not with --worker-url)")
        else:
            systems.append(SYSTEMS[name])
    if cfg.worker_url:
        return [(None, systems)] if systems else []
    groups = [(f, [s for s in systems if s.worker == f]) for f in WORKER_FLAVOURS]
    return [(f, group) for f, group in groups if group]


def run_bench(cfg: BenchConfig) -> dict[str, Any]:
    """Run every pending run of `cfg`, then write the reports; the summary."""
    from dynasor_sgl.programs import get_program

    notes: list[str] = []
    items = load_dataset(cfg.dataset, limit=cfg.programs, seed=cfg.seed)
    difficulty = load_difficulty(cfg.difficulty) if cfg.difficulty else {}
    results = BenchResults(cfg.out / "results.jsonl", cfg.settings())
    bench = Bench(cfg, get_program(cfg.program), items, difficulty, results, notes)
    if bench.results.base is None and cfg.base_deadline is not None:
        bench.results.set_base(cfg.base_deadline, [], "given (--base-deadline)")
    groups = plan(cfg, notes)
    for note in notes:
        logger.warning("%s", note)
    for flavour, systems in groups:
        if bench.results.base is None or _pending(bench, systems):
            _run_group(bench, flavour, systems)
    return write_reports(bench)


def _pending(bench: Bench, systems: list[System]) -> list[tuple[System, float]]:
    done = bench.results.done()
    return [(s, r) for s in systems for r in bench.cfg.rates if (s.name, float(r)) not in done]


def _run_group(bench: Bench, flavour: Flavour | None, systems: list[System]) -> None:
    cfg = bench.cfg
    with ExitStack() as stack:
        if flavour is None:
            assert cfg.worker_url is not None
            url = cfg.worker_url.rstrip("/")
        else:
            url = stack.enter_context(own_worker(flavour, cfg.out / "logs", cfg.model_path))
        priority = has_priority_scheduling(url)
        if not priority and any(not s.direct for s in systems):
            bench.notes.append(
                f"{url} runs without --enable-priority-scheduling: the routers "
                "order their own queue only (no --worker-priority)"
            )
            logger.warning("%s", bench.notes[-1])
        _warm_up(bench, url)
        if bench.results.base is None:
            _measure_base(bench, url, priority)
        for system in systems:
            rates = [r for s, r in _pending(bench, [system])]
            if not rates:
                continue
            router = (
                nullcontext(None)
                if system.direct
                else router_for(
                    system, url, cfg.out / "logs", priority=priority, max_inflight=cfg.max_inflight
                )
            )
            with router as router_url:
                if router_url is not None:
                    _warm_router(bench, system, router_url)
                for rate in rates:
                    _run_one(bench, system, rate, url, router_url)


def _warm_up(bench: Bench, worker_url: str) -> None:
    """A few programs at once straight on the worker, results discarded: a fresh CPU worker is
    slow on its first batches, which would otherwise fall on whichever system runs first."""
    policy = {**bench.cfg.user_policy(), **RUN_TO_CAP}
    _warm(bench, WARM_UP_PROGRAMS, f"warming up {worker_url}", policy=policy, worker=worker_url)
    flush_cache(worker_url)
    logger.info("warmed up %s with %d programs", worker_url, WARM_UP_PROGRAMS)


def _warm_router(bench: Bench, system: System, router_url: str) -> None:
    """One program through a fresh router, discarded: a router's first program ran 2-5x slower
    than later ones (start-up) and pushed others past their deadlines."""
    policy = policy_for(system, bench.cfg.user_policy())
    _warm(bench, 1, f"warming up the {system.name} router", policy=policy, router=router_url)


def _warm(bench: Bench, count: int, what: str, **where: Any) -> None:
    from dynasor_sgl.lang import run_program

    def one(item: Item) -> Any:
        return run_program(bench.spec, item.question, params=bench.params(), **where)

    with ThreadPoolExecutor(count) as pool:
        results = list(pool.map(one, bench.items[:count]))
    failed = [r.error for r in results if not r.ok]
    if failed:
        raise BenchError(f"{what}: a program failed: {failed[0]}")


def _measure_base(bench: Bench, worker_url: str, priority: bool) -> None:
    """The base deadline: median latency of a few programs run one at a time at cap on the
    dynasor system, on an otherwise idle worker."""
    from dynasor_sgl.lang import run_program

    cfg = bench.cfg
    system = SYSTEMS["dynasor"]
    policy = {**cfg.user_policy(), **RUN_TO_CAP}
    latencies = []
    with router_for(
        system, worker_url, cfg.out / "logs", priority=priority, max_inflight=cfg.max_inflight
    ) as router_url:
        for i in tqdm(range(cfg.calibration_programs), desc="base deadline", unit="prog"):
            item = bench.items[i % len(bench.items)]
            result = run_program(
                bench.spec, item.question, router=router_url, policy=policy, params=bench.params()
            )
            if not result.ok:
                raise BenchError(f"measuring the base deadline: a program failed: {result.error}")
            latencies.append(result.elapsed_s)
    base = statistics.median(latencies)
    source = f"median of {len(latencies)} uncontended programs at cap on dynasor"
    logger.info("base deadline %.2f s (%s: %s)", base, source, latencies)
    bench.results.set_base(round(base, 3), latencies, source)


def _execute(
    bench: Bench, system: System, worker_url: str, router_url: str | None, run_id: str
) -> Any:
    """The open loop's `execute` for one run: the program, told its deadline."""
    from dynasor_sgl.lang import run_program

    cfg = bench.cfg
    policy = policy_for(system, cfg.user_policy())

    def execute(arrival: Arrival, lag: float) -> Mapping[str, Any]:
        deadline = deadline_s(cfg.slo_scale, arrival.difficulty, bench.base_s)
        pid = f"{run_id}-{arrival.index}"
        common: dict[str, Any] = {"policy": policy, "params": bench.params(), "program_id": pid}
        if system.direct:
            result = run_program(bench.spec, arrival.item.question, worker=worker_url, **common)
        else:
            assert router_url is not None, "a router system runs behind its router"
            result = run_program(
                bench.spec,
                arrival.item.question,
                router=router_url,
                deadline_s=max(0.001, deadline - lag),
                **common,
            )
        return {"deadline_s": round(deadline, 3), **program_fields(result, arrival.item.answer)}

    return execute


def _run_one(
    bench: Bench, system: System, rate: float, worker_url: str, router_url: str | None
) -> None:
    cfg = bench.cfg
    arrivals = workload(bench.items, cfg.programs, rate, cfg.seed, bench.difficulty)
    flush_cache(worker_url)
    run_id = f"{system.name}-{rate:g}-{uuid.uuid4().hex[:6]}"
    execute = _execute(bench, system, worker_url, router_url, run_id)
    label = {"system": system.name, "rate": float(rate), "base_deadline_s": bench.base_s}
    errors = 0
    bar = tqdm(total=len(arrivals), desc=f"{system.name} @ {rate:g}/s", unit="prog")

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
    bench.results.end_run(system.name, float(rate), len(arrivals), errors, wall, started)


def write_reports(bench: Bench) -> dict[str, Any]:
    """summary.json, summary.md and the PNGs from every finished run on disk."""
    cfg = bench.cfg
    order = {name: i for i, name in enumerate(SYSTEMS)}  # the table's order, not run order
    records = sorted(
        bench.results.programs(),
        key=lambda r: (order.get(r["system"], len(order)), r["rate"], r["index"]),
    )
    base = bench.results.base or {}
    meta = {
        "program": cfg.program,
        "dataset": cfg.dataset,
        "programs_per_run": cfg.programs,
        "base_deadline_s": base.get("base_deadline_s"),
        "base_source": base.get("source"),
        "settings": cfg.settings(),
        "notes": bench.notes,
        "results": str(bench.results.path),
    }
    meta["runs_with_errors"] = [
        f"{r['system']} @ {r['rate']:g}/s" for r in bench.results.runs() if r.get("errors")
    ]
    summary = summarize(records, meta, cfg.slo_scale, cfg.fixed_rate)
    outputs = {"summary": cfg.out / "summary.json", "markdown": cfg.out / "summary.md"}
    if records:
        summary["figures"] = plots.write_all(summary, records, cfg.out)
    outputs["markdown"].write_text(markdown(summary) if records else "# No finished runs\n")
    summary["outputs"] = {k: str(v) for k, v in outputs.items()}
    outputs["summary"].write_text(json.dumps(summary, indent=2) + "\n")
    return summary
