"""One simulated run: a system serving a Poisson trace of programs on N simulated workers.

The same arrivals (`online.workload.arrival_offsets`), deadlines (`deadline_s`), systems
(`online.systems`) and policy overrides (`policy_for`) as the real online benchmark, and the
deadline stop wherever the real router would stop: a system that asks for it, and every router
system while the router's default is on (the bench passes `--deadline-stop` only to the systems
that ask, so the others run with the router's default). Each program's record has the real
benchmark's fields plus `simulated: true`. Pure: virtual time.
"""

from __future__ import annotations

import dataclasses
import logging
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dynasor_sgl.online.systems import System, policy_for
from dynasor_sgl.online.workload import arrival_offsets, deadline_s
from dynasor_sgl.policy.machine import PolicyConfig
from dynasor_sgl.router.config import MEASURED_KNEE
from dynasor_sgl.scheduling.limiter import LimiterConfig
from dynasor_sgl.sim.cluster import Cluster, Setup
from dynasor_sgl.sim.loop import EventLoop
from dynasor_sgl.sim.profile import Profile
from dynasor_sgl.sim.program import SimProgram
from dynasor_sgl.sim.queue import QueueOrder
from dynasor_sgl.sim.traces import Trace

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunSpec:
    """What every run of a simulated benchmark shares.

    profile / workers: the engines. seed: the arrivals' seed. slo_scale: deadlines' scale.
    max_tokens: max_new_tokens of traces that do not carry their own. policy: the user's
    PolicyConfig overrides (a trace's length is its cap). bound: the routers' in-flight bound
    per worker (None: the profile's, else the router's default). bases: base deadline (s) per
    algorithm.
    difficulty: question id -> difficulty (missing: the trace's own, or 1 for eval traces).
    router_deadline_stop: whether the router of a system that does not ask for deadline
    stops (`System.deadline_stop` false) stops at deadlines anyway. The bench says
    `--no-deadline-stop` to those systems, so not; real runs recorded before it did (e.g.
    bench/results/online-warm) ran with the router's default, on (`sim.validate` reads which).
    speed: the engines' speed schedule over the run, (from s, factor) (`sim.engine.Engine`);
    empty: the profile's speed throughout.
    limiter: how the routers keep each worker's in-flight limit (None: fixed at the bound).
    """

    profile: Profile
    workers: int
    seed: int
    slo_scale: float
    max_tokens: int
    policy: Mapping[str, Any]
    bases: Mapping[str, float]
    bound: int | None = None
    difficulty: Mapping[str, int] | None = None
    router_deadline_stop: bool = False
    speed: tuple[tuple[float, float], ...] = ()
    limiter: LimiterConfig | None = None


def setup_for(
    system: System,
    bound: int | None,
    router_deadline_stop: bool = False,
    limiter: LimiterConfig | None = None,
) -> Setup:
    """How `system` serves in the simulator (its worker flavour gives the engine policy). Its
    router stops at deadlines when the system asks for it or `router_deadline_stop` says so,
    and keeps each worker's limit as `limiter` says (None: fixed at `bound`)."""
    if system.direct:
        policy = QueueOrder.LPM if system.worker == "lpm" else QueueOrder.FCFS
        return Setup(None, engine_order=policy)
    return Setup(
        system.scheduling,
        bound or MEASURED_KNEE,
        QueueOrder.PRIORITY,
        worker_priority=True,
        deadline_stop=system.deadline_stop or router_deadline_stop,
        limiter=limiter,
    )


def policy_config(trace: Trace, system: System, user: Mapping[str, Any]) -> PolicyConfig:
    overrides = policy_for(system, user)
    return PolicyConfig.for_algorithm(trace.algorithm, **{**overrides, "cap": len(trace.units)})


def difficulty_of(trace: Trace, known: Mapping[str, int] | None) -> int:
    if known is not None:
        return known.get(trace.question_id, 1)
    return trace.difficulty() if trace.source.startswith("synthetic") else 1


def simulate(
    traces: Sequence[Trace],
    n: int,
    system: System,
    rate: float,
    spec: RunSpec,
    run_id: str = "sim",
) -> list[dict[str, Any]]:
    """The records of `n` programs (trace i mod len) arriving at `rate` on `system`."""
    loop = EventLoop()
    bound = spec.bound or spec.profile.router_bound
    setup = setup_for(system, bound, spec.router_deadline_stop, spec.limiter)
    cluster = Cluster(loop, spec.profile, spec.workers, setup, spec.speed)
    configs: dict[tuple[str, int], PolicyConfig] = {}
    runs = []
    for i, offset in enumerate(arrival_offsets(n, rate, spec.seed)):
        trace = traces[i % len(traces)]
        key = (trace.algorithm, len(trace.units))
        if key not in configs:
            configs[key] = policy_config(trace, system, spec.policy)
        difficulty = difficulty_of(trace, spec.difficulty)
        deadline = deadline_s(spec.slo_scale, difficulty, spec.bases[trace.algorithm])
        prog = SimProgram(
            f"{run_id}-{i}",
            trace,
            configs[key],
            offset,
            trace.max_new or spec.max_tokens,
            None if system.direct else offset + deadline,
        )
        loop.at(offset, prog.start, cluster)
        runs.append((prog, difficulty, deadline))
    loop.run()
    label = {"system": system.name, "rate": float(rate), "simulated": True}
    return [_record(label, i, p, d, dl, spec) for i, (p, d, dl) in enumerate(runs)]


def _record(
    label: Mapping[str, Any],
    index: int,
    prog: SimProgram,
    difficulty: int,
    deadline: float,
    spec: RunSpec,
) -> dict[str, Any]:
    fields = prog.record()
    return {
        **label,
        "base_deadline_s": spec.bases[prog.algorithm],
        "index": index,
        "question_id": prog.trace.question_id,
        "algorithm": prog.algorithm,
        "arrival_s": round(prog.arrival, 4),
        "difficulty": difficulty,
        "latency_s": fields["elapsed_s"],
        "start_lag_s": 0.0,
        "deadline_s": round(deadline, 3),
        **fields,
    }


def base_deadlines(
    traces: Sequence[Trace], system: System, spec: RunSpec, programs: int = 3
) -> dict[str, float]:
    """Per algorithm, the median latency of its first `programs` traces run one at a time on
    an idle worker at cap on `system` (the real benchmark's calibration, whose programs tell
    the router no deadline: so none is stopped at one here)."""
    bases: dict[str, float] = {}
    system = dataclasses.replace(system, deadline_stop=False)
    for algorithm in dict.fromkeys(t.algorithm for t in traces):
        mine = [t for t in traces if t.algorithm == algorithm][:programs]
        latencies = []
        for t in mine:
            one = dataclasses.replace(
                spec, workers=1, bases={algorithm: 1.0}, router_deadline_stop=False
            )
            (rec,) = simulate([t], 1, system, 1.0, one, "base")
            latencies.append(float(rec["latency_s"]))
        bases[algorithm] = round(statistics.median(latencies), 3)
    return bases
