"""Typed dataclasses from plain data (parsed JSON): the one check every `from_dict` makes.

Owns the rule that an unknown key is an error, never silently dropped, and its message, and
reading a JSON object from a file with one error for every way that fails, and rewriting a JSONL
file so that a crash leaves the old file or the new one, never half of one. Knows
nothing about any particular dataclass; each one's own `__post_init__` checks the values.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def from_plain(cls: type[T], data: Mapping[str, Any], what: str) -> T:
    """`cls(**data)` for a dataclass `cls`; a key that is not one of its fields is a
    ValueError naming them all ("unknown {what} keys: [...]")."""
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown {what} keys: {unknown}")
    return cls(**data)


def read_json_object(path: str | Path, what: str) -> dict[str, Any]:
    """The JSON object in the file at `path`; a missing file, bad JSON or another JSON value is
    a ValueError naming `what` and the path."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read {what} {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{what} {path}: expected a JSON object")
    return data


def write_jsonl(path: Path, rows: Iterable[Mapping[str, Any]]) -> None:
    """Replace the file at `path` with one JSON line per row, atomically (a temporary file in
    the same folder, synced, then renamed over it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
