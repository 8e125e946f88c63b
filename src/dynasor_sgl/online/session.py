"""One `dynasor-sgl bench online` from start to reports.

Loads the workload (`online.runs.load_parts`), plans the systems (`sglang-lpm` needs its own
worker, so it is skipped, with the reason, when the user's serves all), starts one worker per
flavour they need, all up front and kept for the whole bench so that runs can interleave (or
uses the user's worker for all), warms each worker up, measures the base deadlines once (kept
in the results file), then runs every pending (repeat, rate, system) in the interleaved order
of `online.repeats.schedule`, each behind a fresh router on a flushed prefix cache, and writes
summary.json, summary.md and the PNGs into the output folder. Every process it starts is
stopped on the way out, Ctrl-C included.
"""

from __future__ import annotations

import json
import logging
from contextlib import ExitStack, nullcontext
from typing import Any

from dynasor_sgl.online import plots
from dynasor_sgl.online.config import BenchConfig
from dynasor_sgl.online.repeats import schedule
from dynasor_sgl.online.report import markdown, summarize
from dynasor_sgl.online.results import BenchResults
from dynasor_sgl.online.runs import (
    Bench,
    BenchError,
    load_parts,
    measure_base,
    run_one,
    warm_router,
    warm_up,
)
from dynasor_sgl.online.servers import has_priority_scheduling, own_worker, router_for
from dynasor_sgl.online.systems import SYSTEMS, WORKER_FLAVOURS, Flavour, System
from dynasor_sgl.online.workload import load_difficulty

logger = logging.getLogger(__name__)

__all__ = ["BenchError", "plan", "run_bench", "runnable", "write_reports"]


def runnable(cfg: BenchConfig, notes: list[str]) -> list[System]:
    """The systems of `cfg` that can run here, in the table's order; each skip is noted."""
    systems = []
    for name, system in SYSTEMS.items():
        if name not in cfg.systems:
            continue
        if name == "sglang-lpm" and cfg.worker_url:
            notes.append("sglang-lpm skipped: it needs its own worker (not with --worker-url)")
        else:
            systems.append(system)
    return systems


def plan(cfg: BenchConfig, notes: list[str]) -> list[tuple[Flavour | None, list[System]]]:
    """(worker flavour, systems) in start order; None: the user's worker. Skips are noted."""
    systems = runnable(cfg, notes)
    if cfg.worker_url:
        return [(None, systems)] if systems else []
    groups = [(f, [s for s in systems if s.worker == f]) for f in WORKER_FLAVOURS]
    return [(f, group) for f, group in groups if group]


def run_bench(cfg: BenchConfig) -> dict[str, Any]:
    """Run every pending run of `cfg`, then write the reports; the summary."""
    notes: list[str] = []
    parts = load_parts(cfg)
    difficulty = load_difficulty(cfg.difficulty) if cfg.difficulty else {}
    results = BenchResults(cfg.out / "results.jsonl", cfg.settings())
    bench = Bench(cfg, parts, difficulty, results, notes)
    if bench.results.base is None and cfg.base_deadline is not None:
        bench.results.set_base(cfg.base_deadline, [], "given (--base-deadline)")
    groups = plan(cfg, notes)
    for note in notes:
        logger.warning("%s", note)
    systems = [s for _, group in groups for s in group]
    order = sorted(systems, key=lambda s: list(SYSTEMS).index(s.name))
    done = bench.results.done()
    pending = [
        (k, rate, s)
        for k, rate, s in schedule(order, cfg.rates, cfg.repeat)
        if (s.name, rate, k) not in done
    ]
    if pending or (groups and bench.results.base is None):
        _run_pending(bench, [f for f, _ in groups], pending)
    return write_reports(bench)


def _run_pending(
    bench: Bench, flavours: list[Flavour | None], pending: list[tuple[int, float, System]]
) -> None:
    cfg = bench.cfg
    with ExitStack() as stack:
        urls: dict[Flavour | None, str] = {}
        for flavour in flavours:
            if flavour is None:
                assert cfg.worker_url is not None
                urls[None] = cfg.worker_url.rstrip("/")
            else:
                urls[flavour] = stack.enter_context(
                    own_worker(flavour, cfg.out / "logs", cfg.model_path)
                )
        priority = {url: has_priority_scheduling(url) for url in urls.values()}
        for url in urls.values():
            warm_up(bench, url)
        first = next(iter(urls.values()))
        if bench.results.base is None:
            measure_base(bench, first, priority[first])
        for repeat, rate, system in pending:
            url = urls[None if None in urls else system.worker]
            _note_priority(bench, system, url, priority[url])
            router = (
                nullcontext(None)
                if system.direct
                else router_for(
                    system,
                    url,
                    cfg.out / "logs",
                    priority=priority[url],
                    max_inflight=cfg.max_inflight,
                )
            )
            with router as router_url:
                if router_url is not None:
                    warm_router(bench, system, router_url)
                run_one(bench, system, rate, repeat, url, router_url)


def _note_priority(bench: Bench, system: System, url: str, priority: bool) -> None:
    note = (
        f"{url} runs without --enable-priority-scheduling: the routers "
        "order their own queue only (no --worker-priority)"
    )
    if not priority and not system.direct and note not in bench.notes:
        bench.notes.append(note)
        logger.warning("%s", note)


def write_reports(bench: Bench) -> dict[str, Any]:
    """summary.json, summary.md and the PNGs from every finished run on disk."""
    cfg = bench.cfg
    order = {name: i for i, name in enumerate(SYSTEMS)}  # the table's order, not run order
    records = sorted(
        bench.results.programs(),
        key=lambda r: (
            order.get(r["system"], len(order)),
            r["rate"],
            r.get("repeat", 0),
            r["index"],
        ),
    )
    base = bench.results.base or {}
    meta = {
        "workload": cfg.workload,
        "program": cfg.program
        if len(bench.parts) == 1
        else ", ".join(p.part.label for p in bench.parts),
        "dataset": cfg.dataset
        if len(bench.parts) == 1
        else ", ".join(sorted({p.part.dataset for p in bench.parts})),
        "programs_per_run": cfg.programs,
        "base_deadline_s": base.get("base_deadline_s"),
        "base_deadlines_s": base.get("bases"),
        "base_source": base.get("source"),
        "settings": cfg.settings(),
        "notes": bench.notes,
        "results": str(bench.results.path),
    }
    meta["runs_with_errors"] = [
        f"{r['system']} @ {r['rate']:g}/s #{int(r.get('repeat', 0)) + 1}"
        for r in bench.results.runs()
        if r.get("errors")
    ]
    summary = summarize(records, meta, cfg.slo_scale, cfg.fixed_rate)
    outputs = {"summary": cfg.out / "summary.json", "markdown": cfg.out / "summary.md"}
    if records:
        summary["figures"] = plots.write_all(summary, records, cfg.out)
    outputs["markdown"].write_text(markdown(summary) if records else "# No finished runs\n")
    summary["outputs"] = {k: str(v) for k, v in outputs.items()}
    outputs["summary"].write_text(json.dumps(summary, indent=2) + "\n")
    return summary
