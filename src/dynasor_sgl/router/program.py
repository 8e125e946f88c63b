"""One registered reasoning program as the router sees it: status, requests in flight, tokens.

Owns the record of one program (`Program`): its policy, status, the requests of it in flight
(`InFlight`, by SGLang rid), its token accounting, certaindex trajectory and the one estimate
of tokens its early exit saved. The table of all programs and the operations on them are in
`dynasor_sgl.router.table`. No I/O here.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from dynasor_sgl.policy.machine import EARLY_STOPS, PolicyConfig, ProgramPolicy, StopReason
from dynasor_sgl.policy.trimming import ConfidenceTrimmer
from dynasor_sgl.protocol import RID_SEP, UNITS_KEY, reading
from dynasor_sgl.replay.selfcal_key import Assignment

PROGRAM_ID_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")  # used with fullmatch
BRANCH_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
# Stops that count as early exit in the saving estimate (a client's abort or a reaped program
# saved nothing by the policy's doing).
POLICY_STOPS = EARLY_STOPS | {StopReason.DEADLINE}


class ProgramStatus(StrEnum):
    RUNNING = "running"
    STOPPED = "stopped"  # a decision, an abort or the reaper ended it; it may still finish
    FINISHED = "finished"  # its client said it finished


@dataclass
class InFlight:
    rid: str
    branch: str
    worker: int
    max_new_tokens: int
    client_rid: str | None = None  # the rid the client sent, replaced by `rid` on the way


@dataclass
class Program:
    program_id: str
    policy: ProgramPolicy
    created: float
    deadline_s: float | None = None
    status: ProgramStatus = ProgramStatus.RUNNING
    exit_reason: str | None = None
    used: int = 0  # knob units used, as of the last report
    grant: int = 0
    inflight: dict[str, InFlight] = field(default_factory=dict)
    trimmed: set[str] = field(default_factory=set)
    branches: set[str] = field(default_factory=set)
    requests: int = 0
    worker: int | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    aborted_requests: int = 0
    stop_units_left: int = 0  # knob units a policy stop left unused
    saved_counted: bool = False  # its saving went into the metrics (once, when settled)
    tokens_at_report: int = 0  # completion_tokens at the last report (for tokens per knob unit)
    trajectory: list[dict[str, Any]] = field(default_factory=list)  # [{"used", signal: value}]
    trimmer: ConfidenceTrimmer | None = None  # set when its policy trims by confidence
    finished_at: float | None = None
    answer: str | None = None
    branch_tokens: dict[str, int] = field(default_factory=dict)  # completion tokens by branch
    calibration: Assignment | None = None  # its self-calibration (None: it does not take part)
    calibration_recorded: bool = False  # its explored run went into the book
    last_active: float = 0.0  # the last request start or end, or report (table clock)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # one report at a time
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)
    _seq: itertools.count = field(default_factory=itertools.count)

    @property
    def config(self) -> PolicyConfig:
        return self.policy.config

    @property
    def deadline_at(self) -> float | None:
        return None if self.deadline_s is None else self.created + self.deadline_s

    @property
    def remaining_units(self) -> int:
        return max(0, self.config.cap - self.used)

    @property
    def tokens_saved(self) -> int:
        """The one estimate of tokens early exit saved: the knob units a policy stop
        (threshold, posterior, deadline) left unused × the program's own completion tokens per
        unit used (every completion token it generated, aborted requests included)."""
        if not self.stop_units_left or not self.used:
            return 0
        return int(self.stop_units_left * self.completion_tokens / self.used)

    def settle(self) -> int | None:
        """Once the program has ended and its last request is back (so its token count is
        final), its saving, the first time only; None otherwise."""
        if self.status is ProgramStatus.RUNNING or self.inflight or self.saved_counted:
            return None
        self.saved_counted = True
        return self.tokens_saved

    @property
    def age_s(self) -> float:
        return (self.finished_at or self.clock()) - self.created

    def new_rid(self, branch: str) -> str:
        """`{program}::{branch}::{n}::`. The closing separator makes router rids prefix-free
        (`p::main::1::` is no prefix of `p::main::10::`; program ids and branches hold no
        ':'): SGLang aborts every request whose rid starts with the rid given
        (`Scheduler.abort_request` in sglang/srt/managers/scheduler.py), so an abort of one
        request must not name a prefix of another."""
        return f"{self.program_id}{RID_SEP}{branch}{RID_SEP}{next(self._seq)}{RID_SEP}"

    def summary(self) -> dict[str, Any]:
        return {
            "program_id": self.program_id,
            "algorithm": self.config.algorithm,
            "status": self.status,
            "exit_reason": self.exit_reason,
            "used": self.used,
            "cap": self.config.cap,
            "grant": self.grant,
            "branches": sorted(self.branches),
            "trimmed": sorted(self.trimmed),
            "inflight": len(self.inflight),
            "worker": self.worker,
            "requests": self.requests,
            "aborted_requests": self.aborted_requests,
            "tokens": {
                "prompt": self.prompt_tokens,
                "completion": self.completion_tokens,
                "cached": self.cached_tokens,
                "total": self.prompt_tokens - self.cached_tokens + self.completion_tokens,
                "saved_estimate": self.tokens_saved,
            },
            "certaindex": [reading(p[UNITS_KEY], p) for p in self.trajectory],
            "confidence": None if self.trimmer is None else self.trimmer.summary(),
            "deadline_s": self.deadline_s,
            "age_s": round(self.age_s, 3),
            "answer": self.answer,
            "calibration": None if self.calibration is None else self.calibration.summary(),
        }
