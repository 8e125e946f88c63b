"""The simulator against a finished real online benchmark: reading the real run, what its
routers did that the results do not record, and the per-run comparison.

A real `dynasor-sgl bench online` folder holds its settings, base deadline and program
records. `compare` sets the simulated records of each (system, rate) beside the real ones:
share on time (goal: within `ATTAINMENT_POINTS`), mean latency (goal: within
`LATENCY_SHARE`), tokens, router wait, steps and exit reasons. Knows nothing about how the
simulated records were made (`bench/sim_validate.py` replays them, `sim.run` simulates).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from dynasor_sgl.online import metrics as m
from dynasor_sgl.online.results import read_rows
from dynasor_sgl.online.systems import SYSTEMS

ATTAINMENT_POINTS = 0.10
LATENCY_SHARE = 0.20

Key = tuple[str, float]


def real_bench(folder: Path) -> tuple[dict[str, Any], float, list[dict[str, Any]]]:
    """The settings, base deadline (s) and program records of the finished runs in `folder`."""
    rows = read_rows(folder / "results.jsonl")
    header = next(r for r in rows if r.get("kind") == "header")
    base = next(r for r in rows if r.get("kind") == "base")
    done = {(r["system"], r["rate"]) for r in rows if r.get("kind") == "run"}
    programs = [r for r in rows if r.get("kind") == "program" and (r["system"], r["rate"]) in done]
    return header["settings"], float(base["base_deadline_s"]), programs


def by_run(records: list[dict[str, Any]]) -> dict[Key, list[dict[str, Any]]]:
    runs: dict[Key, list[dict[str, Any]]] = {}
    for r in records:
        runs.setdefault((str(r["system"]), float(r["rate"])), []).append(r)
    return runs


def router_deadline_stop(real: list[dict[str, Any]]) -> bool:
    """Whether the real routers stopped programs at their deadlines by default. The bench
    passes `--deadline-stop` only to systems that ask for it and the results do not record
    the router's default (off before commit 17e794e, on since), so it is read from the
    records: a program of a system that did not ask exited "deadline", which only a router
    stopping by default does. (No such exit: off, the likelier reading; it may still have
    been on and never fired.)"""
    return any(
        r.get("exit_reason") == "deadline" and not SYSTEMS[str(r["system"])].deadline_stop
        for r in real
    )


def exits(records: list[dict[str, Any]]) -> dict[str, int]:
    """Programs per exit reason, most first."""
    return dict(Counter(str(r.get("exit_reason")) for r in records).most_common())


def compare(real: list[dict[str, Any]], sim: list[dict[str, Any]], slo: float) -> list[dict]:
    """One row per real (system, rate): real and simulated figures and whether they meet
    the goals (a run the simulation lacks meets none)."""
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
                "real_mean_wait_s": m.mean_wait(recs),
                "sim_mean_wait_s": m.mean_wait(mine),
                "real_mean_steps": m.mean([float(r["steps"]) for r in recs]),
                "sim_mean_steps": m.mean([float(r["steps"]) for r in mine]),
                "real_exits": exits(recs),
                "sim_exits": exits(mine),
                "attainment_within_10_points": att_ok,
                "latency_within_20_percent": lat_ok,
            }
        )
    return rows
