"""Labelled runs: a program's full-budget run as the reports it made along the way, and the
correct answer; the input of calibration. Plain data, from JSON or built by `eval`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dynasor_sgl.answers.equivalence import majority_answer
from dynasor_sgl.plain import from_plain

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReportRecord:
    """One report of a full-budget run.

    used: knob units used so far; tokens: cumulative tokens used so far (probes included).
    answers: answers so far (SC: every sample's answer; CoT: the probe answers, oldest first).
    answer: what the program would return if stopped here; None = majority of `answers`
      (set it for CoT, where it is the latest probe answer). probe_texts: raw CoT probe
      responses (for the hesitation veto). values: precomputed signals, e.g. reward.
    """

    used: int
    tokens: int
    answers: tuple[str | None, ...] = ()
    answer: str | None = None
    probe_texts: tuple[str | None, ...] = ()
    values: Mapping[str, float] = field(default_factory=dict)

    def final_answer(self) -> str | None:
        """What the program would return if stopped here: `answer`, else the majority."""
        return self.answer if self.answer is not None else majority_answer(self.answers)


@dataclass(frozen=True)
class LabelledRun:
    """A program's full-budget run: its reports in order of knob use and the correct answer."""

    program_id: str
    correct: str | None
    records: tuple[ReportRecord, ...]

    def __post_init__(self) -> None:
        used = [r.used for r in self.records]
        if not used or used != sorted(set(used)):
            raise ValueError(
                f"run {self.program_id!r}: records must be non-empty with "
                f"strictly increasing knob use, got {used}"
            )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LabelledRun:
        """From plain data: {"program_id", "correct", "records": [{"used", "tokens", ...}]}
        (a record's old key `step` is read as `used`, with a warning)."""
        unknown = set(data) - {"program_id", "correct", "records"}
        if unknown:
            raise ValueError(f"unknown run keys: {sorted(unknown)}")
        records = []
        for rec in data["records"]:
            if "step" in rec and "used" not in rec:
                logger.warning("labelled record key 'step' is deprecated; use 'used'")
                rec = {**{k: v for k, v in rec.items() if k != "step"}, "used": rec["step"]}
            rec = {
                **rec,
                "answers": tuple(rec.get("answers", ())),
                "probe_texts": tuple(rec.get("probe_texts", ())),
            }
            records.append(from_plain(ReportRecord, rec, "record"))
        return cls(str(data["program_id"]), data.get("correct"), tuple(records))
