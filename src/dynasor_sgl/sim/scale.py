"""Questions of scale in the simulator: a worker's capacity, the routers' bound at the step
model's knee, and each system's attainment-vs-rate curve and highest rate on time over a
number of workers.

A system is named as in the online benchmark's table (`autellix` included: Autellix's PLAS
order, gang, no early exit), optionally with the routers' in-flight limit:
`dynasor@adaptive` keeps each worker's limit with the router's adaptive limiter (started at the
device's default, `LimiterConfig.for_device`), `dynasor@fixed` (the same as `dynasor`) at the
fixed bound.

Rates are fractions (`LOAD`) of the workers' capacity at cap: one worker's decode tokens/s
at a batch of `CAPACITY_BATCH` over a program's tokens at cap (`capacity`). The figure of
merit is the online benchmark's (`online.metrics.max_rate`: the highest rate with >= 90% of
programs on time at the SLO scale, interpolated), with its ratio to sglang. The systems run
as the table defines them: no deadline stop unless a system asks for one. Knows nothing
about where the traces come from (bench/sim_scale.py uses synthetic ones) or timing.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

from dynasor_sgl.online import metrics as m
from dynasor_sgl.online.systems import RUN_TO_CAP, SYSTEMS, System
from dynasor_sgl.scheduling.limiter import LimiterConfig, LimitMode
from dynasor_sgl.sim.profile import Profile
from dynasor_sgl.sim.run import RunSpec, base_deadlines, simulate
from dynasor_sgl.sim.sweep import KNEE_FRACTION
from dynasor_sgl.sim.traces import Trace

LOAD = (0.25, 0.5, 1.0, 1.5, 2.5)
CAPACITY_BATCH = 128


def parse_variant(name: str) -> tuple[System, LimitMode]:
    """`system` or `system@adaptive|fixed`: the system and how its routers keep the limit
    (as said, else as the system says, else fixed). Unknown names: ValueError."""
    base, _, limit = name.partition("@")
    if base not in SYSTEMS:
        raise ValueError(f"unknown system {base!r}; choose from {', '.join(SYSTEMS)}")
    if limit and limit not in tuple(LimitMode):
        raise ValueError(f"unknown in-flight limit {limit!r}; choose from {', '.join(LimitMode)}")
    system = SYSTEMS[base]
    return system, LimitMode(limit or system.inflight_limit or LimitMode.FIXED)


def limiter_for(profile: Profile, mode: LimitMode) -> LimiterConfig | None:
    """The routers' limiter on `profile`'s device under `mode` (None: fixed at the bound): the
    device's defaults, its ceiling no higher than the engine's max running requests."""
    if mode is LimitMode.FIXED:
        return None
    config = LimiterConfig.for_device("gpu" if profile.name.startswith("gpu") else "cpu")
    ceiling = max(config.initial, min(config.max_limit, profile.max_running))
    return dataclasses.replace(config, max_limit=ceiling)


def capacity(profile: Profile, traces: Sequence[Trace]) -> float:
    """Programs/s one worker serves at cap: CAPACITY_BATCH / step_s(CAPACITY_BATCH, 0) decode
    tokens/s over the traces' mean tokens at cap. Needs at least one trace."""
    tokens = sum(sum(u.tokens for u in t.units) for t in traces) / len(traces)
    return CAPACITY_BATCH / profile.step_s(CAPACITY_BATCH, 0) / tokens


def programs_for(workers: int, per_worker: int, least: int) -> int:
    """Programs per run: `per_worker` for each worker, at least `least`."""
    return max(least, per_worker * workers)


def router_bound(profile: Profile, fraction: float = KNEE_FRACTION) -> int:
    """The router's in-flight bound for `profile`, its step model's knee (a sweep's measured
    one: `sim.sweep.knee`): the smallest batch B whose decode throughput B / step_s(B)
    reaches `fraction` of its limit 1 / per_request_s, i.e.
    ceil(fraction / (1 - fraction) · base_s / per_request_s), within 1 .. max_running
    (max_running when a request costs nothing). The CPU default, 12, would starve a GPU's
    batch."""
    if profile.per_request_s <= 0:
        return profile.max_running
    b = fraction / (1 - fraction) * profile.base_s / profile.per_request_s
    return max(1, min(profile.max_running, math.ceil(b)))


def scale_spec(
    profile: Profile, workers: int, traces: list[Trace], slo: float, bound: int | None = None
) -> RunSpec:
    """`workers` engines of `profile` behind routers bound at `bound` (None: its knee), with
    base deadlines measured on `traces` run to cap (seed 0, 1024 tokens a generation, no policy
    overrides)."""
    # The systems as the table defines them: no deadline stop unless a system asks for one
    # (the router's default would stop every router system's programs at their deadlines).
    bound = bound or router_bound(profile)
    spec = RunSpec(profile, workers, 0, slo, 1024, {}, {}, bound=bound, router_deadline_stop=False)
    at_cap = dataclasses.replace(SYSTEMS["dynasor"], policy=RUN_TO_CAP)
    return dataclasses.replace(spec, bases=base_deadlines(traces, at_cap, spec))


def curve(
    traces: list[Trace], spec: RunSpec, system: str, rates: Sequence[float], n: int
) -> list[dict[str, Any]]:
    """`system` (`parse_variant`) at each rate of `rates` on `n` programs: attainment, p50 and
    mean latency, mean tokens and accuracy."""
    chosen, mode = parse_variant(system)
    spec = dataclasses.replace(spec, limiter=limiter_for(spec.profile, mode))
    points = []
    for rate in rates:
        recs = simulate(traces, n, chosen, rate, spec, f"{system}-{rate:g}")
        lat = m.latencies(recs)
        points.append(
            {
                "rate": rate,
                "attainment": m.attainment(recs, spec.slo_scale),
                "p50_s": m.percentile(lat, 50),
                "mean_latency_s": m.mean(lat),
                "mean_tokens": m.mean_tokens(recs),
                "accuracy": m.accuracy(recs),
            }
        )
    return points


def scale_row(
    profile: Profile,
    traces: list[Trace],
    workers: int,
    systems: Sequence[str],
    slo: float,
    bound: int | None = None,
) -> dict[str, Any]:
    """Each system on `workers` workers at the LOAD fractions of their capacity, on all of
    `traces`: its curve, highest rate on time (and how it was found) and its ratio to
    sglang's (None where sglang is not among `systems` or reaches no rate). `bound`: the
    routers' fixed bound (None: the profile's knee)."""
    n = len(traces)
    spec = scale_spec(profile, workers, traces, slo, bound)
    per_worker = capacity(profile, traces)
    rates = [round(f * per_worker * workers, 4) for f in LOAD]
    row: dict[str, Any] = {
        "programs_per_run": n,
        "capacity_per_worker": per_worker,
        "bases": dict(spec.bases),
        "systems": {},
    }
    for system in systems:
        pts = curve(traces, spec, system, rates, n)
        best, how = m.max_rate([(p["rate"], p["attainment"] or 0.0) for p in pts])
        row["systems"][system] = {"max_rate": best, "method": how, "points": pts}
    base = row["systems"].get("sglang", {}).get("max_rate")
    for entry in row["systems"].values():
        entry["ratio_to_sglang"] = m.ratio(entry["max_rate"], base)
    return row


def scale_table(results: dict[str, dict[str, dict[str, Any]]]) -> str:
    """Markdown: per mix, one line per system, a column per worker count with its highest
    rate on time (programs/s) and its ratio to sglang's in parentheses."""
    lines: list[str] = []
    for mix, by_workers in results.items():
        counts = sorted(by_workers, key=int)
        systems = list(dict.fromkeys(s for w in counts for s in by_workers[w]["systems"]))
        lines += [f"**{mix}**", ""]
        lines.append("| system | " + " | ".join(f"{w} workers" for w in counts) + " |")
        lines.append("|---|" + "---|" * len(counts))
        for system in systems:
            cells = []
            for w in counts:
                entry = by_workers[w]["systems"].get(system)
                if entry is None or entry["max_rate"] is None:
                    cells.append("–")
                    continue
                ratio = entry["ratio_to_sglang"]
                cells.append(f"{entry['max_rate']:.3g}" + (f" ({ratio:.2f}x)" if ratio else ""))
            lines.append(f"| {system} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)
