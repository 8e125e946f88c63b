"""The runs of a real online benchmark simulated again: the same systems, rates, arrivals
(seed), deadlines and policy, each run on its own programs and, where given, its own engine.

By default each simulated program replays the real program of the same run and index: its
own steps, generated tokens and prompt, and a certaindex stop exactly where it stopped
(`sim.traces.record_trace`), so what is compared is the serving model, not two samplings.
`eval_traces` replays an eval file's samples instead (same questions, other samples). Knows
nothing about how the engines were fitted (`sim.speed`, `sim.router_cost`) or how the
result is judged (`sim.validate.compare`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from dynasor_sgl.online.config import BenchConfig
from dynasor_sgl.online.systems import SYSTEMS
from dynasor_sgl.sim.profile import Profile
from dynasor_sgl.sim.run import RunSpec, simulate
from dynasor_sgl.sim.session import load_traces
from dynasor_sgl.sim.speed import Speeds
from dynasor_sgl.sim.traces import Trace, record_trace
from dynasor_sgl.sim.validate import Key, by_run, run_label

TracesOf = Callable[[Key], list[Trace]]


def record_traces(cfg: BenchConfig, real: list[dict[str, Any]]) -> TracesOf:
    """Each real run's programs as traces of their own records, in index order."""
    runs = {key: sorted(recs, key=lambda r: int(r["index"])) for key, recs in by_run(real).items()}
    return lambda key: [record_trace(r, cfg.cap, cfg.max_tokens) for r in runs[key]]


def eval_traces(cfg: BenchConfig, path: Path) -> TracesOf:
    """The same eval file's traces (same questions, other samples) for every run."""
    traces = load_traces(str(path), cfg)
    return lambda key: traces


def run_spec(cfg: BenchConfig, profile: Profile, router_stop: bool) -> RunSpec:
    """The real runs' shared settings on `profile`, one worker; `router_stop`: whether their
    routers stopped at deadlines where the system did not ask for it
    (`sim.validate.router_deadline_stop`)."""
    bases = {"sc": float(cfg.base_deadline or 1.0)}
    policy = dict(cfg.policy)
    args = (profile, 1, cfg.seed, cfg.slo_scale, cfg.max_tokens, policy, bases)
    return RunSpec(*args, router_deadline_stop=router_stop)


def run_engine(
    spec: RunSpec,
    system: str,
    rate: float,
    engines: Mapping[str, Profile] | None = None,
    speeds: Speeds | None = None,
) -> RunSpec:
    """`spec` for the run of `system` at `rate`: on its run's engine ("system@rate" in
    `engines`), else its worker flavour's, else `spec`'s own; at its run's speed schedule
    where `speeds` has one."""
    label = run_label(system, rate)
    engine = (engines or {}).get(label) or (engines or {}).get(SYSTEMS[system].worker)
    mine = spec if engine is None else dataclasses.replace(spec, profile=engine)
    speed = (speeds or {}).get(label)
    return dataclasses.replace(mine, speed=speed) if speed else mine


def simulate_runs(
    spec: RunSpec,
    cfg: BenchConfig,
    traces_of: TracesOf,
    keys: list[Key],
    engines: Mapping[str, Profile] | None = None,
    speeds: Speeds | None = None,
) -> list[dict[str, Any]]:
    """The simulated records of the real runs `keys`, each on its own traces and engine
    (`run_engine`), `cfg.programs` programs each, run ids "system-rate"."""
    out = []
    for name, rate in keys:
        mine = run_engine(spec, name, rate, engines, speeds)
        traces = traces_of((name, rate))
        out += simulate(traces, cfg.programs, SYSTEMS[name], rate, mine, f"{name}-{rate:g}")
    return out
