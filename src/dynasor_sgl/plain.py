"""Typed dataclasses from plain data (parsed JSON): the one check every `from_dict` makes.

Owns the rule that an unknown key is an error, never silently dropped, and its message. Knows
nothing about any particular dataclass; each one's own `__post_init__` checks the values.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
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
