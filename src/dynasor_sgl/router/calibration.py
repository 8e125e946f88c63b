"""Self-calibration in the router: the book of `dynasor_sgl.replay.selfcal_book` around I/O.

Owns the served model's name (a key part: read once from a worker's /get_model_info), the
assignment of a registering program, the recording of an explored program when it reaches its
cap (its report's answers in sample order, its own tokens per sample), the calibration file
(loaded at start when it exists, written atomically after every change and at shutdown), the
`GET /calibration` route and the calibration gauges. The method itself is pure and lives in
`replay`: this module decides nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from dynasor_sgl.policy.machine import Action, Decision, PolicyConfig, Report
from dynasor_sgl.replay.sampled import RecordedRun, SampledRun
from dynasor_sgl.replay.selfcal_key import Assignment, Key, eligible, explore_run
from dynasor_sgl.router.calibration_file import load_book, write_atomically
from dynasor_sgl.router.config import RouterConfig
from dynasor_sgl.router.core import Router
from dynasor_sgl.router.metrics import Metrics
from dynasor_sgl.router.program import Program

logger = logging.getLogger(__name__)
UNKNOWN_MODEL = "unknown"


class Calibration:
    """The router's calibration book, its file and the served model's name."""

    def __init__(self, config: RouterConfig, router: Router) -> None:
        self.path = config.calibration_file
        self.book = load_book(self.path, config.calibration_settings())
        self.router = router
        self.model: str | None = None
        self._save_lock = asyncio.Lock()

    async def model_name(self) -> str:
        """The served model's path as a worker reports it (asked once; "unknown" while no
        worker answers)."""
        if self.model is None:
            try:
                info = await self.router.worker_info("/get_model_info")
            except Exception as exc:  # a worker away or odd: the key says "unknown" this time
                logger.warning("served model unknown for calibration: %s", exc)
                info = None
            name = info.get("model_path") if isinstance(info, dict) else None
            if not isinstance(name, str) or not name:
                return UNKNOWN_MODEL
            self.model = name
        return self.model

    async def assign(
        self, base: PolicyConfig, client_policy: Mapping[str, Any], task: str | None
    ) -> Assignment | None:
        """A registering program's assignment (None: it does not self-calibrate)."""
        if not eligible(base.algorithm, client_policy):
            return None
        key = Key(base.algorithm, await self.model_name(), task, base.cap)
        assignment = self.book.assign(key, base, client_policy)
        if assignment is not None and assignment.explored:
            logger.info("calibration %s: a program explores to its cap", key.name)
        return assignment

    async def observe(self, prog: Program, report: Report, decision: Decision) -> None:
        """Records an explored program's run once it stops at its cap (its last report holds
        every sample's answer), replayed off the event loop, then saves the book; the report
        is answered after that (the program is at its cap: nothing waits on the answer but
        its finish)."""
        done = prog.calibration
        if (
            done is None
            or not done.explored
            or prog.calibration_recorded
            or decision.action is not Action.STOP
            or report.used < prog.config.cap
            or len(report.answers) != report.used
        ):
            return
        prog.calibration_recorded = True
        run = recorded_run(prog, report)
        state = self.book.state(done.key)
        if state is None:
            return
        try:
            explored = await asyncio.to_thread(explore_run, run, done.in_force, state.families)
            self.book.record(done.key, explored)
            await self.save()
        except Exception:  # learning must never fail the program's report; logged
            logger.exception(
                "calibration %s: program %s not recorded", done.key.name, run.question_id
            )

    async def save(self) -> None:
        if self.path is None:
            return
        async with self._save_lock:
            data = self.book.to_json()
            await asyncio.to_thread(write_atomically, self.path, data)

    def export(self, metrics: Metrics) -> None:
        """Sets the calibration gauges, one series per key."""
        gauges = (
            metrics.calibration_explored,
            metrics.calibration_runs,
            metrics.calibration_threshold,
            metrics.calibration_min_programs,
            metrics.calibration_disagreement,
        )
        for gauge in gauges:
            gauge.clear()
        for state in self.book.keys.values():
            name = state.key.name
            metrics.calibration_explored.labels(name).set(state.explored)
            metrics.calibration_runs.labels(name).set(len(state.runs))
            metrics.calibration_min_programs.labels(name).set(state.needed)
            if (threshold := state.threshold()) is not None:
                metrics.calibration_threshold.labels(name).set(threshold)
            if (seen := state.disagreement()) is not None:
                metrics.calibration_disagreement.labels(name).set(seen)


def recorded_run(prog: Program, report: Report) -> RecordedRun:
    """The explored program's run: answers in the order the report lists them (the sample
    order), each sample's completion tokens, and the rest of its tokens as shared."""
    branches = list(report.answers)
    sample_tokens = tuple(prog.branch_tokens.get(b, 0) for b in branches)
    total = prog.prompt_tokens - prog.cached_tokens + prog.completion_tokens
    shared = max(0, total - sum(sample_tokens))
    answers = tuple(report.answers[b] for b in branches)
    return RecordedRun(prog.program_id, None, SampledRun(answers, sample_tokens, shared))


def add_calibration_routes(app: FastAPI, calibration: Calibration) -> None:
    @app.get("/calibration")
    async def show() -> JSONResponse:
        """Per calibration key: programs explored, runs kept, the rule in force, the bound."""
        return JSONResponse({**calibration.book.view(), "file": calibration.path})
