"""One program run's context: its id, policy, decisions, certaindex trajectory and token ledger.

A program reaches it with `context(s)` from inside its `@sgl.function`. `ProgramContext.report`
is the multi-branch primitive: it sends the branches' answers and/or rewards (or CoT probe
answers) to a reporter and returns the decision as a `Verdict`. The reporter is the router
(`RouterReporter`, decisions enforced there) or, for runs straight against an SGLang worker,
the same pure policy in this process (`LocalReporter`: nothing is enforced, the program obeys
its own verdicts). Thread-safe: forks run on their own threads and account tokens concurrently.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from dynasor_sgl.lang.client import RouterClient
from dynasor_sgl.lang.tokens import TokenKind, TokenUsage
from dynasor_sgl.policy.machine import PolicyConfig, ProgramPolicy, Report
from dynasor_sgl.protocol import reading

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Verdict:
    """The decision for one report.

    action: "continue", "stop", "trim" or "expand". grant: knob units the program may use before
    its next report (0 on stop). expand: the part of `grant` beyond the normal pace. trim: branch
    names to drop. reason: why it stopped ("threshold", "posterior", "cap", ...). values: the
    certaindex signals read at this report (empty between detection points).
    """

    action: str
    grant: int = 0
    expand: int = 0
    trim: tuple[str, ...] = ()
    reason: str | None = None
    values: Mapping[str, float] = field(default_factory=dict)

    @property
    def stop(self) -> bool:
        return self.action == "stop"

    def allowed(self, used: int, cap: int) -> int:
        """Knob units the program may use before its next report: the grant, never past the
        cap (`used` units spent so far); 0 once stopped. The one copy of this rule."""
        return 0 if self.stop else max(0, min(self.grant, cap - used))

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Verdict:
        return cls(
            action=str(data["action"]),
            grant=int(data.get("grant") or 0),
            expand=int(data.get("expand") or 0),
            trim=tuple(data.get("trim") or ()),
            reason=data.get("reason"),
            values={k: float(v) for k, v in (data.get("values") or {}).items()},
        )


class Reporter(Protocol):
    """Where reports go and decisions come from."""

    def report(self, body: Mapping[str, Any]) -> Verdict: ...


class RewardSource(Protocol):
    """Scores states in [0, 1]; states are scored concurrently where the source can. The
    sources live in `dynasor_sgl.lang.reward`; a context is given one when it is built."""

    def score(self, states: Sequence[Any]) -> list[float]: ...


Observer = Callable[["ProgramContext"], None]


class RouterReporter:
    """Decisions from the router, which also enforces them (aborts, 409s)."""

    def __init__(self, client: RouterClient, program_id: str) -> None:
        self.client = client
        self.program_id = program_id

    def report(self, body: Mapping[str, Any]) -> Verdict:
        return Verdict.from_json(self.client.report(self.program_id, body))


class LocalReporter:
    """Decisions of the same pure policy, computed here: for runs without a router."""

    def __init__(self, config: PolicyConfig) -> None:
        self.policy = ProgramPolicy(config)
        self._lock = threading.Lock()  # forks may report from their own threads

    def report(self, body: Mapping[str, Any]) -> Verdict:
        with self._lock:
            d = self.policy.decide(Report(**{k: v for k, v in body.items() if v is not None}))
        reason = None if d.reason is None else str(d.reason)
        return Verdict(str(d.action), d.grant, d.expand, d.trim, reason, dict(d.values))


class ProgramContext:
    """The state of one program run shared by the program, its backend and the run helper.

    program_id / config: as registered. reward: the reward source (see `dynasor_sgl.lang.reward`).
    usage: tokens by kind (reasoning, probe, reward).
    trajectory: [{"used", signal: value, ...}] for each report that read certaindex (and, for
    one release, "step": the same units, deprecated; `protocol.reading`). steps: the
    knob units used at the last report. last: the last verdict. answer / exit_reason /
    details: what the program declared with `finish`. waits: per answered request, the seconds
    it spent outside the worker (wall time minus the worker's own `e2e_latency`): the router's
    admission queue and the transport; empty when the worker does not report `e2e_latency`.
    observer: called with the context after each report and each accounted request (e.g. a
    progress display; it runs on the reporting thread and must be quick and never raise).
    """

    def __init__(
        self,
        program_id: str,
        config: PolicyConfig,
        reporter: Reporter,
        reward: RewardSource | None = None,
        observer: Observer | None = None,
    ) -> None:
        self.program_id = program_id
        self.config = config
        self.reporter = reporter
        self.usage = TokenUsage()
        self.trajectory: list[dict[str, Any]] = []
        self.steps = 0
        self.last: Verdict | None = None
        self.answer: str | None = None
        self.exit_reason: str | None = None
        self.details: dict[str, Any] = {}
        self.errors: list[tuple[str, BaseException]] = []
        self.waits: list[float] = []
        self.reward = reward
        self.observer = observer
        self._lock = threading.Lock()
        self._inflight = 0
        self._idle = threading.Condition(self._lock)

    @property
    def stopped(self) -> bool:
        """True once a decision stopped the program; later reports are not sent."""
        return self.last is not None and self.last.stop

    def report(
        self,
        used: int,
        *,
        answers: Mapping[str, str | None] | None = None,
        rewards: Mapping[str, float] | None = None,
        probe_answers: Sequence[str | None] | None = None,
        probe_texts: Sequence[str | None] | None = None,
        top_logprobs: Sequence[Sequence[float]] | None = None,
        values: Mapping[str, float] | None = None,
    ) -> Verdict:
        """Report progress (`used` = knob units used so far) and certaindex inputs; the decision.

        answers / rewards are keyed by branch name (the names given to `tag`), so a trim decision
        names branches the program knows. Once stopped, returns the stop verdict again.
        """
        if self.last is not None and self.last.stop:
            return self.last
        body: dict[str, Any] = {"used": int(used)}
        for key, value in (("answers", answers), ("rewards", rewards), ("values", values)):
            if value:
                body[key] = dict(value)
        for key, seq in (
            ("probe_answers", probe_answers),
            ("probe_texts", probe_texts),
            ("top_logprobs", top_logprobs),
        ):
            if seq:
                body[key] = list(seq)
        verdict = self.reporter.report(body)
        self.steps = int(used)
        self.last = verdict
        if verdict.values:
            self.trajectory.append(reading(int(used), verdict.values))
        logger.debug(
            "program %s at %d: %s %s", self.program_id, used, verdict.action, verdict.reason or ""
        )
        self._observe()
        return verdict

    def finish(
        self,
        answer: str | None,
        exit_reason: str | None = None,
        steps: int | None = None,
        **details: Any,
    ) -> None:
        """Declare the program's final answer; exit_reason when no stop decision ended it (e.g.
        "completed" when the model finished on its own); steps: knob units used, when more than
        the last report says; details go into the result as-is (JSON-serializable)."""
        self.answer = answer
        if exit_reason is not None:
            self.exit_reason = exit_reason
        if steps is not None:
            self.steps = int(steps)
        self.details.update(details)

    def account(self, kind: TokenKind, meta_info: Mapping[str, Any] | None) -> None:
        with self._lock:
            self.usage.add(kind, meta_info)
        self._observe()

    def _observe(self) -> None:
        if self.observer is not None:
            self.observer(self)

    def note_wait(self, wall_s: float, meta_info: Mapping[str, Any] | None) -> None:
        """Record a request's time outside the worker, when the worker reported its own."""
        e2e = (meta_info or {}).get("e2e_latency")
        if isinstance(e2e, int | float):
            with self._lock:
                self.waits.append(max(0.0, wall_s - float(e2e)))

    def record_error(self, branch: str, exc: BaseException) -> None:
        with self._lock:
            self.errors.append((branch, exc))

    def request_started(self) -> None:
        with self._lock:
            self._inflight += 1

    def request_ended(self) -> None:
        with self._idle:
            self._inflight -= 1
            self._idle.notify_all()

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until no request of this program is in flight (their tokens are accounted)."""
        with self._idle:
            return self._idle.wait_for(lambda: self._inflight == 0, timeout_s)
