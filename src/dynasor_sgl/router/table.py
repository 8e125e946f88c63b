"""The program table: registered reasoning programs, their branches, tokens and decisions.

Owns the table of programs by id (registration, eviction, lookup by rid), moves each program
between states (running / stopped / finished), tracks which of its requests are in flight, and
applies the policy's decisions to it. It decides *what* to abort; the router carries the aborts
out through `forward`. One program's record is `dynasor_sgl.router.program`. No I/O here.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from dynasor_sgl.policy.machine import Action, Decision, PolicyConfig, ProgramPolicy, Report
from dynasor_sgl.policy.trimming import ConfidenceTrimmer
from dynasor_sgl.protocol import RID_SEP, UNITS_KEY
from dynasor_sgl.replay.selfcal_key import Assignment
from dynasor_sgl.router.errors import ApiError, bad_request, conflict, not_found
from dynasor_sgl.router.program import (
    BRANCH_RE,
    POLICY_STOPS,
    PROGRAM_ID_RE,
    InFlight,
    Program,
    ProgramStatus,
)

# Program, InFlight, ProgramStatus and RID_SEP are still importable from here.
__all__ = ["RID_SEP", "InFlight", "Program", "ProgramStatus", "ProgramTable"]

logger = logging.getLogger(__name__)


class ProgramTable:
    """All programs the router knows, by id. `clock` is monotonic seconds (injectable)."""

    def __init__(self, max_programs: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_programs = max_programs
        self.clock = clock
        self._programs: dict[str, Program] = {}
        # client-chosen rid -> router rid -> (program, request): how a client aborts its own
        self._client_rids: dict[str, dict[str, tuple[Program, InFlight]]] = {}

    def idle(self, ttl_s: float) -> list[Program]:
        """Running programs with nothing in flight and no activity for `ttl_s` seconds."""
        cutoff = self.clock() - ttl_s
        return [
            p
            for p in self._programs.values()
            if p.status is ProgramStatus.RUNNING and not p.inflight and p.last_active < cutoff
        ]

    def __len__(self) -> int:
        return len(self._programs)

    def active(self) -> int:
        return sum(p.status is ProgramStatus.RUNNING for p in self._programs.values())

    def all(self) -> list[Program]:
        return list(self._programs.values())

    def register(
        self,
        config: PolicyConfig,
        program_id: str | None = None,
        deadline_s: float | None = None,
        calibration: Assignment | None = None,
    ) -> Program:
        pid = program_id or uuid.uuid4().hex[:16]
        if not PROGRAM_ID_RE.fullmatch(pid):
            raise bad_request("program_id must be 1-64 characters of A-Z a-z 0-9 _ . -")
        if pid in self._programs:
            raise conflict(f"program {pid} already exists")
        self._evict()
        now = self.clock()
        prog = Program(
            pid, ProgramPolicy(config), now, deadline_s, last_active=now, clock=self.clock
        )
        prog.grant = prog.policy.initial_grant
        prog.calibration = calibration
        if config.confidence_window > 0:
            prog.trimmer = ConfidenceTrimmer(
                config.confidence_window, config.confidence_percentile, config.warmup
            )
        self._programs[pid] = prog
        logger.info("program %s registered (%s, cap %d)", pid, config.algorithm, config.cap)
        return prog

    def _evict(self) -> None:
        if len(self._programs) < self.max_programs:
            return
        done = [p for p in self._programs.values() if p.status is not ProgramStatus.RUNNING]
        if not done:
            raise ApiError(
                429, f"too many running programs (limit {self.max_programs})", "too_many_programs"
            )
        oldest = min(done, key=lambda p: p.finished_at or p.created)
        del self._programs[oldest.program_id]

    def get(self, program_id: str) -> Program:
        prog = self._programs.get(program_id)
        if prog is None:
            raise not_found(f"unknown program {program_id}")
        return prog

    def find(self, program_id: str) -> Program | None:
        return self._programs.get(program_id)

    def owner_of(self, rid: str) -> tuple[Program, str] | None:
        """The program and branch a client-chosen rid `{program}::{branch}[::...]` names."""
        parts = rid.split(RID_SEP)
        if len(parts) < 2:
            return None
        prog = self._programs.get(parts[0])
        return (prog, parts[1]) if prog is not None else None

    def by_client_rid(self, client_rid: str) -> list[tuple[Program, InFlight]]:
        """The requests in flight that their clients sent with rid `client_rid`."""
        return list(self._client_rids.get(client_rid, {}).values())

    def admit(self, prog: Program, branch: str) -> None:
        """Refuse new work for a stopped/finished program or a trimmed branch (409)."""
        if not BRANCH_RE.fullmatch(branch):
            raise bad_request("branch must be 1-64 characters of A-Z a-z 0-9 _ . -")
        if prog.status is not ProgramStatus.RUNNING:
            reason = f" ({prog.exit_reason})" if prog.exit_reason else ""
            raise conflict(
                f"program {prog.program_id} is {prog.status}{reason}; no new requests are accepted",
                "program_stopped",
            )
        if branch in prog.trimmed:
            raise conflict(
                f"branch {branch} of program {prog.program_id} was trimmed", "branch_trimmed"
            )

    def start(
        self,
        prog: Program,
        branch: str,
        worker: int,
        max_new_tokens: int,
        client_rid: str | None = None,
    ) -> InFlight:
        entry = InFlight(prog.new_rid(branch), branch, worker, max_new_tokens, client_rid)
        prog.inflight[entry.rid] = entry
        if client_rid is not None:
            self._client_rids.setdefault(client_rid, {})[entry.rid] = (prog, entry)
        prog.branches.add(branch)
        prog.requests += 1
        prog.worker = worker
        prog.last_active = self.clock()
        return entry

    def end(self, prog: Program, entry: InFlight, meta: dict[str, Any] | None) -> None:
        prog.inflight.pop(entry.rid, None)
        if entry.client_rid is not None:
            named = self._client_rids.get(entry.client_rid, {})
            named.pop(entry.rid, None)
            if not named:
                self._client_rids.pop(entry.client_rid, None)
        prog.last_active = self.clock()
        if not meta:
            return
        prog.prompt_tokens += int(meta.get("prompt_tokens") or 0)
        completion = int(meta.get("completion_tokens") or 0)
        prog.completion_tokens += completion
        prog.branch_tokens[entry.branch] = prog.branch_tokens.get(entry.branch, 0) + completion
        prog.cached_tokens += int(meta.get("cached_tokens") or 0)
        reason = meta.get("finish_reason")
        if isinstance(reason, dict) and reason.get("type") == "abort":
            prog.aborted_requests += 1

    def check_open(self, prog: Program) -> None:
        if prog.status is not ProgramStatus.RUNNING:
            raise conflict(
                f"program {prog.program_id} is {prog.status}; reports are closed", "program_stopped"
            )

    def apply(self, prog: Program, report: Report, decision: Decision) -> None:
        """Apply a policy decision to the table (not to the workers: the app aborts)."""
        prog.used = report.used
        prog.last_active = self.clock()
        if decision.values:
            prog.trajectory.append({UNITS_KEY: report.used, **decision.values})
        if decision.action is Action.STOP:
            self._stop(prog, str(decision.reason))
        else:
            prog.grant = report.used + decision.grant
            prog.trimmed.update(decision.trim)
        logger.info(
            "program %s at %d: %s %s",
            prog.program_id,
            report.used,
            decision.action,
            decision.reason or "",
        )

    def _stop(self, prog: Program, reason: str) -> None:
        prog.status, prog.exit_reason = ProgramStatus.STOPPED, reason
        prog.finished_at = self.clock()
        if reason in POLICY_STOPS:
            prog.stop_units_left = max(0, prog.config.cap - prog.used)

    def stop(self, prog: Program, reason: str) -> None:
        if prog.status is ProgramStatus.RUNNING:
            self._stop(prog, reason)

    def finish(self, prog: Program, answer: str | None) -> None:
        if prog.status is ProgramStatus.FINISHED:
            raise conflict(f"program {prog.program_id} is already finished", "program_finished")
        if prog.status is ProgramStatus.RUNNING:
            prog.exit_reason = prog.exit_reason or (
                "cap" if prog.used >= prog.config.cap else "finished"
            )
        prog.status = ProgramStatus.FINISHED
        prog.finished_at = prog.finished_at or self.clock()
        prog.answer = answer

    def rids_to_abort(self, prog: Program, branches: set[str] | None = None) -> list[InFlight]:
        """In-flight requests of the program (or of the named branches only)."""
        return [e for e in prog.inflight.values() if branches is None or e.branch in branches]
