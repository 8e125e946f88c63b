"""The results file of an evaluation: one JSON line per (question, row), never lost.

A row is what the evaluation compares ("baseline", "paper", "oracle", ...), named by the
record's "row" key; files written before it was named so call it "policy" and are read the same
(`replay.sampled.row_of`), and a resumed file is rewritten with the new key.

Each record is appended with a single write and flushed (and fsynced) as soon as it exists, so
Ctrl-C or a crash leaves every finished record on disk. Opening an existing file resumes it:
  - a torn last line (a crash mid-write) is dropped,
  - records with status "error" (e.g. a worker failure) are dropped so they are retried,
  - everything else is kept and its (question id, row) is reported as done,
by rewriting the file atomically (temp file + rename) before anything is appended. So the file
holds each (question, row) at most once. A run header line (kind "run") records the
settings; resuming with different settings is refused rather than mixed.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from dynasor_sgl.plain import write_jsonl
from dynasor_sgl.replay.sampled import row_of

logger = logging.getLogger(__name__)


class ResultsError(ValueError):
    """A results file that cannot be resumed (other settings, unreadable)."""


def key(record: Mapping[str, Any]) -> tuple[str, str]:
    return str(record["question_id"]), str(record["row"])


def _current(row: dict[str, Any]) -> dict[str, Any] | None:
    """A record with its row under "row" (read from an older file's "policy"); None if it
    names no row."""
    if "question_id" not in row:
        return None
    label = row_of(row)
    if label is None:
        return None
    out = {k: v for k, v in row.items() if k != "policy"} if "row" not in row else row
    return {**out, "row": label}


def read_records(path: str | Path) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """(run header or None, records) of a results file; torn or invalid lines are skipped."""
    header: dict[str, Any] | None = None
    records: list[dict[str, Any]] = []
    p = Path(path)
    if not p.exists():
        return None, []
    for number, line in enumerate(p.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            logger.warning("%s:%d: skipping a torn or invalid line", p, number)
            continue
        if not isinstance(row, dict):
            continue
        if row.get("kind") == "run":
            header = row
        elif (record := _current(row)) is not None:
            records.append(record)
    return header, records


class ResultsFile:
    """Append-only records with resume. Thread-safe appends."""

    def __init__(self, path: str | Path, settings: Mapping[str, Any]) -> None:
        self.path = Path(path)
        self.settings = dict(settings)
        self._lock = threading.Lock()
        header, records = read_records(self.path)
        if header is not None and header.get("settings") != self.settings:
            raise ResultsError(
                f"{self.path} holds a run with other settings ({header.get('settings')}); "
                "use another --out or the same settings to resume"
            )
        kept = {key(r): r for r in records if r.get("status") != "error"}
        self.done: dict[tuple[str, str], dict[str, Any]] = kept
        self.dropped = len(records) - len(kept)
        self._rewrite([{"kind": "run", "settings": self.settings}, *kept.values()])

    def _rewrite(self, rows: Iterable[Mapping[str, Any]]) -> None:
        write_jsonl(self.path, rows)

    def has(self, question_id: str, row: str) -> bool:
        return (question_id, row) in self.done

    def append(self, records: Iterable[Mapping[str, Any]]) -> None:
        """Append records (all of one question, say) in one write; skips ones already done."""
        unique: dict[tuple[str, str], dict[str, Any]] = {}
        for r in records:
            unique.setdefault(key(r), dict(r))  # the first of a key repeated in one call
        with self._lock:
            rows = [r for k, r in unique.items() if k not in self.done]
            if not rows:
                return
            with self.path.open("a", encoding="utf-8") as f:
                f.write("".join(json.dumps(r) + "\n" for r in rows))
                f.flush()
                os.fsync(f.fileno())
            for r in rows:
                if r.get("status") != "error":
                    self.done[key(r)] = r

    def records(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.done.values())
