"""The prompt format a shipped program is given: a system prompt and few-shot worked examples.

`open_chat` writes the chat a program starts from (system, then each example as a user turn
and an assistant turn, then the question) and `read_few_shot` reads the examples from a JSONL
file of {"question", "answer"} objects. Which system prompt a program uses by default is the
program's business (`programs/steps.py` holds the shipped one), not this module's.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import sglang as sgl

EXAMPLE_KEYS = ("question", "answer")


def open_chat(
    s: Any, question: str, system: str, few_shot: Sequence[Mapping[str, str]] = ()
) -> None:
    """Start `s`'s chat: the system prompt, the worked examples as user/assistant turns, the
    question, and the assistant's turn opened for the program to write in."""
    s += sgl.system(system)
    for example in few_shot:
        s += sgl.user(example["question"])
        s += sgl.assistant(example["answer"])
    s += sgl.user(question)
    s += sgl.assistant_begin()


def read_few_shot(path: str | Path) -> list[dict[str, str]]:
    """Worked examples from a JSONL file: one object per line with non-empty string "question"
    and "answer" (other keys are an error; blank lines are skipped). An unreadable or empty
    file or a bad line is a ValueError naming the file and the line, in one line."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read few-shot file {path}: {exc}") from exc
    examples = [
        _example(line, f"{path}:{number}")
        for number, line in enumerate(lines, start=1)
        if line.strip()
    ]
    if not examples:
        raise ValueError(f"few-shot file {path} has no examples")
    return examples


def _example(line: str, where: str) -> dict[str, str]:
    try:
        data = json.loads(line)
    except ValueError as exc:
        raise ValueError(f"{where}: not JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected an object with {' and '.join(EXAMPLE_KEYS)}")
    unknown = sorted(set(data) - set(EXAMPLE_KEYS))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(unknown)}; expected question, answer")
    for key in EXAMPLE_KEYS:
        value = data.get(key)
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{where}: {key!r} must be a non-empty string, got {value!r}")
    return {key: data[key] for key in EXAMPLE_KEYS}
