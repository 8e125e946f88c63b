"""The calibration file: the router's learned calibration kept across restarts.

Owns reading it (a missing file is an empty book; an unreadable one a ValueError naming it, so
the CLI can say so in one line before anything starts) and writing it atomically. No HTTP here:
`launch` checks the file through it without loading the router.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dynasor_sgl.plain import read_json_object, write_jsonl
from dynasor_sgl.replay.selfcal_book import CalibrationBook
from dynasor_sgl.replay.selfcal_key import BookSettings


def load_book(path: str | None, settings: BookSettings) -> CalibrationBook:
    """The book in the calibration file at `path` (refit under `settings`); an empty book when
    there is no path or no file yet; a ValueError naming the file when it is unreadable."""
    if path is None or not Path(path).exists():
        return CalibrationBook(settings)
    data = read_json_object(path, "calibration file")
    try:
        return CalibrationBook.from_json(data, settings)
    except ValueError as exc:
        raise ValueError(f"calibration file {path}: {exc}") from exc


def write_atomically(path: str, data: Mapping[str, Any]) -> None:
    """Replace the file at `path` with `data` as JSON, atomically (`plain.write_jsonl`'s
    synced temporary file renamed over it: one line, which is a JSON document)."""
    write_jsonl(Path(path), [data])
