"""The simulated router sends a granted request to the worker whose slot the grant holds, as
the router does: a program that moved while its request waited runs it on its new worker."""

from __future__ import annotations

from dataclasses import dataclass, field

from dynasor_sgl.policy.config import PolicyConfig
from dynasor_sgl.policy.machine import ProgramPolicy
from dynasor_sgl.sim.cluster import Cluster, Setup
from dynasor_sgl.sim.engine import Request
from dynasor_sgl.sim.loop import EventLoop
from dynasor_sgl.sim.profile import Profile

PROFILE = Profile("test", base_s=0.05, per_request_s=0.01, per_prefill_token_s=0.0001)


@dataclass
class Program:
    program_id: str
    used: int = 0
    completion_tokens: int = 0
    tokens_at_report: int = 0
    deadline_at: float | None = None
    policy: ProgramPolicy = field(default_factory=lambda: ProgramPolicy(PolicyConfig()))
    algorithm: str = "sc"
    cap: int = 20


def test_a_request_granted_after_its_program_moved_runs_on_the_new_worker() -> None:
    loop = EventLoop()
    cluster = Cluster(loop, PROFILE, workers=2, setup=Setup("fifo", bound=1))
    prog = Program("p")
    first = Request("p-0", "p", 0, 10, 100, 100)
    second = Request("p-1", "p", 0, 10, 100, 100)
    done: list[object] = []
    cluster.send(prog, first, done.append)  # takes worker 0's one slot
    cluster.send(prog, second, done.append)  # waits on worker 0
    loop.run(until=loop.now)  # the arrivals only: no engine step has ended yet
    assert cluster._where == {"p-0": 0} and "p-1" in cluster._waiting
    assert cluster.queue is not None
    # The program moves to worker 1 (as a spill under overload does) with its waiting
    # request; the grant that frees is on worker 1.
    grants = cluster.queue.ensure_program(1, "p", loop.now, 20, "sc")
    assert [(g.request_id, g.worker) for g in grants] == [("p-1", 1)]
    cluster._grant(grants)
    assert cluster._where == {"p-0": 0, "p-1": 1}
    assert [w.inflight for w in cluster.queue.workers.values()] == [1, 1]
