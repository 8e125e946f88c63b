"""The simulator against a finished real online benchmark: reading the real run (its
settings as a `BenchConfig`, with the policy it ran), what its routers did that the results
do not record, and the per-run comparison and its loss.

A real `dynasor-sgl bench online` folder holds its settings, base deadline and program
records. `compare` sets the simulated records of each (system, rate) beside the real ones:
share on time (goal: within `ATTAINMENT_POINTS`), mean latency (goal: within
`LATENCY_SHARE`), tokens, router wait, steps and exit reasons; `loss` sums how far apart
they are. Knows nothing about how the simulated records were made (`sim.rerun` replays
them, `sim.check` runs the whole validation).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dynasor_sgl.online import metrics as m
from dynasor_sgl.online.config import BenchConfig
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


def pinned_policy(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The policy overrides the real runs ran with. SC's default `detect_every` became 5
    after these runs were made; a stored setting wins, else the old default (0: read once)."""
    policy = dict(settings.get("policy") or {})
    policy.setdefault("detect_every", 0)
    return policy


def bench_config(
    settings: Mapping[str, Any], base: float, real: list[dict[str, Any]], out: Path
) -> BenchConfig:
    """The real benchmark's settings, its systems and rates (as its records have them), its
    base deadline; `out` is where the simulated records go."""
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


def run_label(system: str, rate: float) -> str:
    """A run's label, "system@rate" (rate as `%g`: "parrot@0.25", "sglang@1")."""
    return f"{system}@{float(rate):g}"


def by_run(records: list[dict[str, Any]]) -> dict[Key, list[dict[str, Any]]]:
    """Records by run, (system, rate as a float), each run's in the order given."""
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


def loss(real: list[dict[str, Any]], sim: list[dict[str, Any]], slo: float) -> float:
    """How far the simulated runs are from the real ones, summed over the real runs (`compare`):
    (sim mean latency / real mean latency - 1)² + (sim attainment - real attainment)². 0 when
    every run agrees; a run the simulation lacks, or a real run with no latency, is a
    TypeError (its figures are None)."""
    total = 0.0
    for row in compare(real, sim, slo):
        rl, sl = row["real_mean_latency_s"], row["sim_mean_latency_s"]
        total += (sl / rl - 1) ** 2 + (row["sim_attainment"] - row["real_attainment"]) ** 2
    return total
