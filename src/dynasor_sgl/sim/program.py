"""A simulated reasoning program: the shipped programs' request pattern, replayed from a trace.

Self-consistency and REBASE grow in rounds like `programs/self_consistency.py`: a round of g
units forks the state (one prefill-only request of the shared prompt, as SGLang's fork does),
then sends g generations at once; when all are back it reports (answers, already clustered) and
the decision gives the next round. MCTS runs its granted iterations one after another, each two
expansions at once and then a judge request, and reports rewards. The policy is the real
`ProgramPolicy`; the cluster enforces the decision. The program's record has the fields of the
online benchmark's (`online.runner`), so its metrics, report and plots read it unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dynasor_sgl.policy.machine import Action, Decision, PolicyConfig, ProgramPolicy, Report
from dynasor_sgl.sim.cluster import Cluster
from dynasor_sgl.sim.queue import Finished, Request
from dynasor_sgl.sim.traces import Trace

logger = logging.getLogger(__name__)

JUDGE_PROMPT_TOKENS = 40  # an MCTS judge's own question appended to the path
JUDGE_TOKENS = 4  # the judge's verdict


@dataclass(eq=False)
class SimProgram:
    """One program run; `start` it on a cluster, `record()` once it has ended."""

    program_id: str
    trace: Trace
    config: PolicyConfig
    arrival: float
    max_tokens: int
    deadline_at: float | None = None
    policy: ProgramPolicy = field(init=False)
    used: int = 0
    completion_tokens: int = 0
    tokens_at_report: int = 0
    prefill_tokens: int = 0
    cached_tokens: int = 0
    requests: int = 0
    waits: list[float] = field(default_factory=list)
    outstanding: set[str] = field(default_factory=set)
    ended_at: float | None = None
    exit_reason: str | None = None
    _cluster: Cluster | None = None
    _seq: int = 0

    def __post_init__(self) -> None:
        self.policy = ProgramPolicy(self.config)

    @property
    def algorithm(self) -> str:
        return self.config.algorithm

    @property
    def cap(self) -> int:
        return self.config.cap

    def start(self, cluster: Cluster) -> None:
        self._cluster = cluster
        self._next(self.policy.initial_grant)

    # -- requests -------------------------------------------------------------------------

    def _send(self, shared: int, own: int, new: int, then: Callable[[], None]) -> None:
        assert self._cluster is not None, "started"
        rid = f"{self.program_id}::{self._seq}"
        self._seq += 1
        max_new = max(new, self.max_tokens)
        req = Request(rid, self.program_id, shared, own, new, max_new)
        req.warm_len = min(shared, self.trace.warm_tokens)
        self.outstanding.add(rid)
        self._cluster.send(self, req, lambda f: self._back(f, then))

    def _back(self, f: Finished, then: Callable[[], None]) -> None:
        assert self._cluster is not None
        req = f.request
        self.outstanding.discard(req.rid)
        self.requests += 1
        self.prefill_tokens += req.prefilled if req.admitted is not None else 0
        self.cached_tokens += req.cached
        self.completion_tokens += req.generated
        self.waits.append(self._cluster.waits.pop(req.rid, 0.0))
        if self.ended_at is None and not f.aborted:
            then()

    # -- rounds ---------------------------------------------------------------------------

    def _next(self, want: int) -> None:
        if self.algorithm == "mcts":
            self._iterate(self.used, self.used + want)
        else:
            self._send(self.trace.prompt_tokens, 0, 0, lambda: self._draw(want))

    def _draw(self, count: int) -> None:
        left = [count]

        def one_back() -> None:
            left[0] -= 1
            if left[0] == 0:
                self._report(self.used + count)

        for unit in self.trace.units[self.used : self.used + count]:
            self._send(self.trace.prompt_tokens, 0, unit.tokens, one_back)

    def _iterate(self, j: int, end: int) -> None:
        if j == end:
            self._report(end)
            return
        tokens = self.trace.units[j].tokens
        left = [2]
        path = self.trace.prompt_tokens

        def judge() -> None:
            self._send(
                path, tokens + JUDGE_PROMPT_TOKENS, JUDGE_TOKENS, lambda: self._iterate(j + 1, end)
            )

        def one_back() -> None:
            left[0] -= 1
            if left[0] == 0:
                judge()

        self._send(path, 0, tokens // 2, one_back)
        self._send(path, 0, tokens - tokens // 2, one_back)

    def _report(self, k: int) -> None:
        assert self._cluster is not None
        t = self.trace
        if self.algorithm == "mcts":
            report = Report(used=k, rewards=t.rewards(k))
        else:
            report = Report(used=k, answers=t.answers(k), clusters=t.clusters(k))
        decision = self._cluster.report(self, report)
        self.used, self.tokens_at_report = k, self.completion_tokens
        want = 0 if decision.action is Action.STOP else min(decision.grant, self.cap - k)
        if want <= 0:
            self._end(decision)
        else:
            self._next(want)

    def _end(self, decision: Decision) -> None:
        assert self._cluster is not None
        self.ended_at = self._cluster.loop.now
        self.exit_reason = str(decision.reason) if decision.reason else "cap"
        self._cluster.end(self, sorted(self.outstanding))

    # -- the record -----------------------------------------------------------------------

    def answer(self) -> int | None:
        """The program's final answer label: majority vote, or MCTS's best-reward unit."""
        units = self.trace.units[: self.used]
        if self.algorithm == "mcts" and units:
            best = max(units, key=lambda u: u.reward if u.reward is not None else -1.0)
            return best.label if best.label >= 0 else None
        return self.trace.majority(self.used)

    def record(self) -> dict[str, Any]:
        """The program's fields in the online benchmark's record schema."""
        ok = self.ended_at is not None
        answer = self.answer()
        total = self.prefill_tokens + self.completion_tokens
        tokens = {"reasoning": total, "probe": 0, "reward": 0, "total": total}
        tokens.update(prefill=self.prefill_tokens, generated=self.completion_tokens)
        tokens.update(cached=self.cached_tokens, requests=self.requests)
        return {
            "program_id": self.program_id,
            "status": "ok" if ok else "error",
            "answer": None if answer is None else str(answer),
            "gold": None if self.trace.gold is None else str(self.trace.gold),
            "correct": (answer is not None and answer == self.trace.gold) if ok else None,
            "exit_reason": self.exit_reason,
            "steps": self.used,
            "cap": self.cap,
            "tokens": total,
            "tokens_detail": tokens,
            "router_tokens": None,
            "elapsed_s": None if self.ended_at is None else round(self.ended_at - self.arrival, 4),
            "wait_s": round(sum(self.waits) / len(self.waits), 4) if self.waits else None,
            "error": None if ok else "the simulation ended before the program did",
        }
