"""Where evaluation questions come from: local JSONL, Hugging Face datasets, built-in tasks.

A dataset is a list of `Item`s (id, question, gold answer). `load_dataset(spec)` reads
  - a path to a JSONL file (fields configurable; a malformed line or a missing field is a
    `DatasetError` naming the file and line),
  - `hf:NAME[:CONFIG[:SPLIT]]` through the `datasets` library (machines that reach the hub),
  - `synth:TASK` a seeded built-in generator (see TASKS), for machines with only the embedded
    model.
Gold answers of the GSM8K form ("... #### 42") are cut to what follows "####". No network or
SGLang here; `datasets` is imported only for `hf:`.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


class DatasetError(ValueError):
    """A dataset that cannot be read; the message names the file and line where it can."""


@dataclass(frozen=True)
class Item:
    id: str
    question: str
    answer: str


@dataclass(frozen=True)
class Fields:
    """Which JSON fields hold the question, the gold answer and the id (None: line number)."""

    question: str = "question"
    answer: str = "answer"
    id: str | None = "id"


def gold(answer: Any) -> str:
    """A gold answer as text; GSM8K's "reasoning #### 42" becomes "42"."""
    text = str(answer)
    return text.rsplit("####", 1)[1].strip() if "####" in text else text.strip()


def _item(row: Mapping[str, Any], fields: Fields, fallback_id: str, where: str) -> Item:
    for name in (fields.question, fields.answer):
        if name not in row or row[name] is None:
            raise DatasetError(f"{where}: missing field {name!r} (fields: {sorted(row)})")
    question = row[fields.question]
    if not isinstance(question, str) or not question.strip():
        raise DatasetError(f"{where}: field {fields.question!r} must be a non-empty string")
    has_id = fields.id is not None and row.get(fields.id) is not None
    qid = str(row[fields.id]) if has_id and fields.id is not None else fallback_id
    return Item(qid, question, gold(row[fields.answer]))


def read_jsonl(path: str | Path, fields: Fields = Fields()) -> list[Item]:
    """Items of a JSONL file, one JSON object per non-blank line; ids must be unique."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from exc
    items: list[Item] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise DatasetError(f"{where}: not valid JSON ({exc.args[0]})") from exc
        if not isinstance(row, dict):
            raise DatasetError(f"{where}: expected a JSON object, got {type(row).__name__}")
        items.append(_item(row, fields, str(number), where))
    return _unique(items, str(path))


def _unique(items: list[Item], source: str) -> list[Item]:
    seen: set[str] = set()
    for item in items:
        if item.id in seen:
            raise DatasetError(f"{source}: duplicate id {item.id!r}")
        seen.add(item.id)
    if not items:
        raise DatasetError(f"{source}: no questions")
    return items


def read_hf(name: str, config: str | None, split: str, fields: Fields) -> list[Item]:
    """A Hugging Face dataset split (needs the `datasets` package and the hub)."""
    try:
        import datasets
    except ImportError as exc:
        raise DatasetError("hf: datasets need `pip install datasets`") from exc
    try:
        rows: Iterable[Mapping[str, Any]] = datasets.load_dataset(name, config, split=split)
    except Exception as exc:  # the library raises many kinds; all mean "cannot load"
        raise DatasetError(f"cannot load {name} ({config}, {split}): {exc}") from exc
    source = f"hf:{name}"
    return _unique([_item(r, fields, str(i), f"{source}[{i}]") for i, r in enumerate(rows)], source)


# Built-in tasks: (rng) -> (question, answer). Chosen by measurement on the embedded 135M
# model (see bench/eval_sc.py): middling single-sample accuracy, and majority voting helps.
def _add1(rng: random.Random) -> tuple[str, str]:
    a, b = rng.randint(1, 9), rng.randint(1, 9)
    return f"What is {a} + {b}?", str(a + b)


def _add2(rng: random.Random) -> tuple[str, str]:
    a, b = rng.randint(10, 49), rng.randint(1, 9)
    return f"What is {a} + {b}?", str(a + b)


def _next(rng: random.Random) -> tuple[str, str]:
    n = rng.randint(2, 98)
    return f"What number comes right after {n}?", str(n + 1)


def _apples(rng: random.Random) -> tuple[str, str]:
    name = rng.choice(["Tom", "Ann", "Sam", "Mia", "Ben", "Lily"])
    a, b = rng.randint(1, 9), rng.randint(1, 9)
    return f"{name} has {a} apples and gets {b} more. How many apples does {name} have?", str(a + b)


# Everyday counts the small model half knows: voting over its samples recovers many of them.
_FACTS = (
    ("How many days are there in a week?", 7),
    ("How many months are there in a year?", 12),
    ("How many hours are there in a day?", 24),
    ("How many minutes are there in an hour?", 60),
    ("How many seconds are there in a minute?", 60),
    ("How many days are there in a year?", 365),
    ("How many weeks are there in a year?", 52),
    ("How many sides does a triangle have?", 3),
    ("How many sides does a square have?", 4),
    ("How many sides does a hexagon have?", 6),
    ("How many legs does a spider have?", 8),
    ("How many legs does a dog have?", 4),
    ("How many legs does a bird have?", 2),
    ("How many wheels does a bicycle have?", 2),
    ("How many wheels does a tricycle have?", 3),
    ("How many wheels does a car have?", 4),
    ("How many continents are there on Earth?", 7),
    ("How many colors are there in a rainbow?", 7),
    ("How many players are on a soccer team on the field?", 11),
    ("How many fingers are on one human hand?", 5),
    ("How many eyes does a person have?", 2),
    ("How many planets are in our solar system?", 8),
    ("How many letters are in the English alphabet?", 26),
    ("How many cents are in a dollar?", 100),
    ("How many years are in a century?", 100),
    ("How many years are in a decade?", 10),
    ("How many strings does a standard guitar have?", 6),
    ("How many hearts does a human have?", 1),
    ("How many days are in the month of February in a leap year?", 29),
    ("How many notes are in a musical octave scale (do re mi ...)?", 7),
)
_FACT_FRAMES = ("{q}", "{q} Answer with a number.", "Quick question: {q}", "Please tell me: {q}")


def _facts(rng: random.Random) -> tuple[str, str]:
    question, answer = rng.choice(_FACTS)
    return rng.choice(_FACT_FRAMES).format(q=question), str(answer)


TASKS: dict[str, Callable[[random.Random], tuple[str, str]]] = {
    "facts": _facts,
    "add1": _add1,
    "add2": _add2,
    "next": _next,
    "apples": _apples,
}


def synthetic(task: str, n: int, seed: int = 0) -> list[Item]:
    """`n` questions of a built-in task, the same for the same (task, n, seed)."""
    if task not in TASKS:
        raise DatasetError(f"unknown built-in task {task!r}; choose one of {sorted(TASKS)}")
    if n < 1:
        raise DatasetError(f"a built-in task needs n >= 1, got {n}")
    rng = random.Random(f"{task}:{seed}")
    return [Item(f"{task}-{seed}-{i}", *TASKS[task](rng)) for i in range(n)]


def load_dataset(
    spec: str, fields: Fields = Fields(), limit: int | None = None, seed: int = 0
) -> list[Item]:
    """Items of `spec` (a JSONL path, `hf:NAME[:CONFIG[:SPLIT]]` or `synth:TASK`), the first
    `limit` of them (built-in tasks generate `limit`, default 100)."""
    if limit is not None and limit < 1:
        raise DatasetError(f"limit must be >= 1, got {limit}")
    if spec.startswith("synth:"):
        return synthetic(spec[len("synth:") :], limit or 100, seed)
    if spec.startswith("hf:"):
        parts = spec[len("hf:") :].split(":")
        name, config = parts[0], (parts[1] or None) if len(parts) > 1 else None
        split = parts[2] if len(parts) > 2 else "test"
        items = read_hf(name, config, split, fields)
    else:
        items = read_jsonl(spec, fields)
    return items[:limit] if limit else items
