"""Running a program over a dataset against the router, one results record per row.

A row is one of the things the evaluation compares (not a program policy). For self-consistency
the full-budget run is live ("baseline": every sample up to the cap) and the configured policy
("paper": the paper's fixed thresholds, or the run's `--policy`) and the oracle are replayed
over its samples (exact: samples are exchangeable); the "dynasor" row, the self-calibrated
policy, needs the other questions' runs and is derived when the reports are written
(`eval.selfcalibrated`), never stored. Other programs are not exchangeable, so "dynasor" (the
configured policy) and "baseline" both run live and there is no oracle. Questions run
concurrently (bounded); each question's records are appended together as soon as its runs end.
Ctrl-C aborts the programs in flight at the router and leaves every finished record on disk.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from dynasor_sgl.answers import equivalence as _answers
from dynasor_sgl.eval.datasets import Item
from dynasor_sgl.eval.results import ResultsFile
from dynasor_sgl.policy import risk
from dynasor_sgl.policy.config import PolicyConfig, current_keys
from dynasor_sgl.replay.sampled import Outcome, replay_oracle, replay_policy, sampled_run

logger = logging.getLogger(__name__)

CHECKER = "math-verify via dynasor_sgl.answers.equivalence.equivalent"
# Self-consistency's samples are exchangeable, so its policies are replayed over one
# full-budget run: any program of this algorithm whose result's details record every sample's
# answer and tokens (`answers`, `sample_tokens`, as the shipped one does).
REPLAYED_ALGORITHM = "sc"
INCOMPLETE = ("aborted", "timeout")


@dataclass(frozen=True)
class EvalSpec:
    """What to evaluate: the program, the configured policy's overrides (`policy`), the
    program's parameters, the concurrency (questions in flight), each program's timeout and
    deadline (seconds; the deadline is told to the router), and the bound the self-calibrated
    row is fitted to (disagreement with the full budget at most `epsilon` with confidence
    1 - `delta`)."""

    program: str
    algorithm: str
    policy: Mapping[str, Any] = field(default_factory=dict)
    params: Mapping[str, Any] = field(default_factory=dict)
    concurrency: int = 4
    timeout_s: float | None = None
    deadline_s: float | None = None
    epsilon: float = risk.DEFAULT_EPSILON
    delta: float = risk.DEFAULT_DELTA

    def __post_init__(self) -> None:
        risk.check_levels(self.epsilon, self.delta)

    @property
    def replayed(self) -> bool:
        """Whether the policies and the oracle are replayed over the baseline's samples (decided
        by the algorithm, not the program's name, so a user's own SC program is replayed too)."""
        return self.algorithm == REPLAYED_ALGORITHM

    def policy_config(self) -> PolicyConfig:
        """The configured policy: the "paper" row's (replayed) or the "dynasor" row's (live)."""
        return PolicyConfig.for_algorithm(self.algorithm, **self.policy)

    def baseline_policy(self) -> dict[str, Any]:
        """Every program runs to its cap: certaindex is read only at the cap."""
        cap = self.policy_config().cap
        live = {"cap": cap, "detect_at": cap, "detect_every": 0}
        if self.replayed:  # draw every sample at once
            live.update(initial=cap, pace=cap)
        return {**current_keys(self.policy), **live}

    def rows(self) -> tuple[str, ...]:
        """The rows each question's records hold in the results file."""
        extra = ("paper", "oracle") if self.replayed else ("dynasor",)
        return ("baseline", *extra)

    def reported_rows(self) -> tuple[str, ...]:
        """The rows of the reports: those stored and, replayed, the self-calibrated one."""
        return ("baseline", "dynasor", "paper", "oracle") if self.replayed else self.rows()


def _record(item: Item, row: str, mode: str, **fields: Any) -> dict[str, Any]:
    return {
        "question_id": item.id,
        "row": row,
        "mode": mode,
        "gold": item.answer,
        "checker": CHECKER,
        **fields,
    }


def _from_result(item: Item, row: str, result: Any) -> dict[str, Any]:
    # An aborted or timed-out program did not finish: an error to retry, not a wrong answer.
    ok = result.status == "ok" and result.exit_reason not in INCOMPLETE
    correct = _answers.equivalent(result.answer, item.answer) if ok else None
    return _record(
        item,
        row,
        "live",
        status="ok" if ok else "error",
        answer=result.answer,
        correct=correct,
        tokens=result.tokens,
        router_tokens=result.router_tokens,
        steps=result.steps,
        cap=result.cap,
        exit_reason=result.exit_reason,
        certaindex=result.certaindex,
        error=result.error or (None if ok else f"program {result.exit_reason}"),
        program_id=result.program_id,
        elapsed_s=result.elapsed_s,
        details=result.details,
    )


def _from_outcome(item: Item, row: str, out: Outcome, cap: int) -> dict[str, Any]:
    return _record(
        item,
        row,
        "replay",
        status="ok",
        answer=out.answer,
        correct=_answers.equivalent(out.answer, item.answer),
        tokens={"reasoning": out.tokens, "probe": 0, "reward": 0, "total": out.tokens},
        steps=out.used,
        cap=cap,
        exit_reason=out.exit_reason,
        certaindex=out.certaindex,
    )


class Evaluation:
    """One evaluation run; `run_program` is injected (the real one, or a fake in tests)."""

    def __init__(
        self,
        spec: EvalSpec,
        items: list[Item],
        results: ResultsFile,
        run_program: Callable[..., Any],
        abort: Callable[[str], Any],
    ) -> None:
        self.spec = spec
        self.items = items
        self.results = results
        self.run_program = run_program
        self.abort = abort
        self.stopping = threading.Event()
        self._active: set[str] = set()
        self._lock = threading.Lock()

    def pending(self) -> list[Item]:
        return [
            i for i in self.items if not all(self.results.has(i.id, r) for r in self.spec.rows())
        ]

    def _live(self, item: Item, overrides: Mapping[str, Any]) -> Any:
        pid = f"eval-{uuid.uuid4().hex[:12]}"
        with self._lock:
            self._active.add(pid)
        try:
            return self.run_program(
                self.spec.program,
                item.question,
                policy=dict(overrides),
                params=dict(self.spec.params),
                program_id=pid,
                timeout_s=self.spec.timeout_s,
                deadline_s=self.spec.deadline_s,
            )
        finally:
            with self._lock:
                self._active.discard(pid)

    def _live_record(self, item: Item, row: str, overrides: Mapping[str, Any]) -> dict[str, Any]:
        """The record of one live run; a run that raised (router unreachable, ...) is an error
        record for this question, retried on resume, and the evaluation goes on."""
        try:
            return _from_result(item, row, self._live(item, overrides))
        except Exception as exc:  # any failure of one question must not end the whole run
            logger.warning("question %s (%s) failed: %s", item.id, row, exc)
            return _record(item, row, "live", status="error", error=f"{type(exc).__name__}: {exc}")

    def evaluate(self, item: Item) -> list[dict[str, Any]]:
        """Run the question's missing rows; returns the records appended.

        Live runs of one question share the worker's prefix cache, and cached prefill is not
        counted. So the Dynasor run goes first: whatever the cache gives, it gives to the
        baseline, and the saving is if anything understated.
        """
        spec = self.spec
        if self.stopping.is_set():
            return []
        records: list[dict[str, Any]] = []
        live = [("baseline", spec.baseline_policy())]
        if not spec.replayed:
            live.insert(0, ("dynasor", dict(spec.policy)))
        for row, overrides in live:
            if (item.id, row) in self.results.done:
                records.append(self.results.done[(item.id, row)])
            elif not self.stopping.is_set():
                records.append(self._live_record(item, row, overrides))
        if spec.replayed and records:
            records += self._replayed(item, records[0])
        fresh = [r for r in records if not self.results.has(r["question_id"], r["row"])]
        self.results.append(fresh)
        return fresh

    def _replayed(self, item: Item, base: dict[str, Any]) -> list[dict[str, Any]]:
        if base["status"] != "ok":  # nothing to replay: mark both so they are retried too
            return [
                _record(item, r, "replay", status="error", error=base.get("error"))
                for r in ("paper", "oracle")
            ]
        run = sampled_run(base["details"], int(base["tokens"]["total"]))
        cap = int(base["cap"])
        return [
            _from_outcome(item, "paper", replay_policy(run, self.spec.policy_config()), cap),
            _from_outcome(item, "oracle", replay_oracle(run), cap),
        ]

    def run(self, on_done: Callable[[list[dict[str, Any]]], Any]) -> None:
        """Evaluate every pending question; `on_done` gets each question's new records."""
        todo = self.pending()
        with ThreadPoolExecutor(max_workers=self.spec.concurrency) as pool:
            futures: set[Future[list[dict[str, Any]]]] = set()
            try:
                for item in todo:
                    while len(futures) >= self.spec.concurrency:
                        futures = self._drain(futures, on_done)
                    futures.add(pool.submit(self.evaluate, item))
                while futures:
                    futures = self._drain(futures, on_done)
            except KeyboardInterrupt:
                self.interrupt(pool, futures)
                raise

    def _drain(
        self,
        futures: set[Future[list[dict[str, Any]]]],
        on_done: Callable[[list[dict[str, Any]]], Any],
    ) -> set[Future[Any]]:
        done, rest = wait(futures, return_when=FIRST_COMPLETED)
        for fut in done:
            on_done(fut.result())
        return rest

    def interrupt(self, pool: ThreadPoolExecutor, futures: set[Future[Any]]) -> None:
        """Stop: cancel queued questions, abort the programs in flight at the router."""
        self.stopping.set()
        for fut in futures:
            fut.cancel()
        with self._lock:
            active = list(self._active)
        for pid in active:
            try:
                self.abort(pid)
            except Exception as exc:  # best effort; the records already on disk are safe
                logger.warning("could not abort %s: %s", pid, exc)
        pool.shutdown(wait=True, cancel_futures=True)
