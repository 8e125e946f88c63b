"""The online benchmark's results file: JSON lines, each program's record flushed as it ends.

Lines by `kind`: "header" (the settings; resuming with other settings is refused), "base"
(the measured base deadline, reused on resume so deadlines never shift), "program" (one per
system, rate, repeat and program) and "run" (written after a run's last program: the run is
done). A run is (system, rate, repeat); a row without `repeat` is repeat 0.
The unit of resume is a run: opening the file keeps the runs that have a "run" line and no
failed program, drops every other program line (a half-finished or failed run is redone), and
rewrites the file atomically before anything is appended, so no record is ever duplicated.
`resume` is the pure part.
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

logger = logging.getLogger(__name__)

RunKey = tuple[str, float, int]
Row = dict[str, Any]


class ResultsError(ValueError):
    """A results file that cannot be resumed (other settings)."""


def run_key(row: Mapping[str, Any]) -> RunKey:
    return str(row["system"]), float(row["rate"]), int(row.get("repeat", 0))


def read_rows(path: Path) -> list[Row]:
    """Every JSON object line of `path` ([] if absent); a torn line is skipped."""
    if not path.exists():
        return []
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        try:
            row = json.loads(line) if line.strip() else None
        except ValueError:
            logger.warning("%s:%d: skipping a torn or invalid line", path, number)
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def rows_before_append(path: Path) -> list[Row]:
    """The rows of `path` before a run appends to it (`read_rows`); a torn last line (a run
    killed mid-write) is dropped from the file too, so the next append starts on a line of
    its own. An absent file stays absent."""
    rows = read_rows(path)
    if path.exists():
        write_jsonl(path, rows)
    return rows


def resume(lines: Iterable[Mapping[str, Any]]) -> tuple[Row | None, list[Row], int]:
    """(header, rows to keep, program records dropped) for a file's rows.

    Kept: the base line and, for each finished run (a "run" line whose errors are 0), its
    "run" line and its program records (first of each index). Dropped: records of runs with no
    "run" line or with failed programs, which are run again.
    """
    rows: list[Row] = [dict(r) for r in lines]
    header = next((r for r in rows if r.get("kind") == "header"), None)
    done = {run_key(r) for r in rows if r.get("kind") == "run" and not r.get("errors")}
    kept: list[Row] = [r for r in rows if r.get("kind") == "base"][-1:]
    seen: set[tuple[str, float, int, int]] = set()
    dropped = 0
    for r in rows:
        if r.get("kind") != "program":
            continue
        ident = (*run_key(r), int(r["index"]))
        if run_key(r) in done and ident not in seen:
            seen.add(ident)
            kept.append(r)
        else:
            dropped += 1
    kept += [r for r in rows if r.get("kind") == "run" and run_key(r) in done]
    return header, kept, dropped


class BenchResults:
    """The results file of one benchmark (thread-safe appends)."""

    def __init__(self, path: Path, settings: Mapping[str, Any]) -> None:
        self.path = path
        self.settings = dict(settings)
        self._lock = threading.Lock()
        header, kept, dropped = resume(read_rows(path))
        if header is not None and header.get("settings") != self.settings:
            raise ResultsError(
                f"{path} holds a benchmark with other settings ({header.get('settings')}); "
                "use another --out or the same settings to resume"
            )
        if dropped:
            logger.info(
                "%s: %d records of unfinished or failed runs dropped; those runs are redone",
                path,
                dropped,
            )
        self.rows = [{"kind": "header", "settings": self.settings}, *kept]
        self._rewrite()

    def _rewrite(self) -> None:
        write_jsonl(self.path, self.rows)

    def _append(self, row: Mapping[str, Any]) -> None:
        with self._lock:
            with self.path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")
                f.flush()
                os.fsync(f.fileno())
            self.rows.append(dict(row))

    @property
    def base(self) -> dict[str, Any] | None:
        return next((r for r in self.rows if r.get("kind") == "base"), None)

    def set_base(
        self,
        base_s: float,
        latencies: list[float],
        source: str,
        bases: Mapping[str, float] | None = None,
    ) -> None:
        """The base deadline; bases: one per part of a mixed workload (by its label)."""
        row = {"kind": "base", "base_deadline_s": base_s, "latencies": latencies, "source": source}
        self._append({**row, "bases": dict(bases)} if bases else row)

    def done(self) -> set[RunKey]:
        with self._lock:
            return {run_key(r) for r in self.rows if r.get("kind") == "run"}

    def add_program(self, record: Mapping[str, Any]) -> None:
        self._append({"kind": "program", **record})

    def end_run(
        self,
        system: str,
        rate: float,
        programs: int,
        errors: int,
        wall_s: float,
        started: float | None = None,
        repeat: int = 0,
    ) -> None:
        """A run is done. started: when it began on the machine's monotonic clock, the clock
        of the workers' step traces (which steps were this run's)."""
        row: dict[str, Any] = {
            "kind": "run",
            "system": system,
            "rate": rate,
            "repeat": repeat,
            "programs": programs,
            "errors": errors,
            "wall_s": round(wall_s, 3),
        }
        if started is not None:
            row["started_monotonic"] = round(started, 3)
        self._append(row)

    def programs(self) -> list[dict[str, Any]]:
        """Program records of finished runs (a run in progress is left out)."""
        with self._lock:
            done = {run_key(r) for r in self.rows if r.get("kind") == "run"}
            return [r for r in self.rows if r.get("kind") == "program" and run_key(r) in done]

    def runs(self) -> list[dict[str, Any]]:
        with self._lock:
            return [r for r in self.rows if r.get("kind") == "run"]
