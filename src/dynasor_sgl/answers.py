"""Final answers: extraction from model text, normalization, equivalence and clustering.

Owns what "the answer" of a piece of generated text is and when two answers are the same.
Equivalence runs math-verify in a separate worker process (see `dynasor_sgl.verifier`) so a
pathological expression cannot hang the caller. This module imports only the standard library;
it knows nothing about certaindex, policies, SGLang or HTTP.

Extraction precedence (`extract_answer`), first rule that matches wins:
1. the last `\\boxed{...}` or `\\fbox{...}` (nested braces balanced);
2. the last "Final Answer: X" / "final answer is X";
3. the last "The answer is X" / "Answer: X";
4. the last multiple-choice letter written as "(B)";
5. the last number in the text.
"""

from __future__ import annotations

import functools
import logging
import math
import re
from collections.abc import Sequence

from dynasor_sgl.verifier import math_verify_equal

logger = logging.getLogger(__name__)

_BOX_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")
_FINAL_RE = re.compile(r"final\s+answer(?:\s*\*\*)?\s*(?:is\b|:)?", re.IGNORECASE)
_ANSWER_IS_RE = re.compile(r"the\s+answer\s+is\b|\banswer\s*:", re.IGNORECASE)
_CHOICE_RE = re.compile(r"\(([A-J])\)")
_NUMBER_RE = re.compile(r"-?\d(?:,?\d)*(?:\.\d+)?(?:/\d+)?|-?\.\d+")
_SENTENCE_END_RE = re.compile(r"\.(?:\s|$)|\n")
_TEXT_CMD_RE = re.compile(r"\\(?:text|textbf|mathrm|mbox|mathbf)\s*\{([^{}]*)\}")
_THOUSANDS_RE = re.compile(r"(?<![\d.])(\d{1,3})((?:,\d{3})+)(?![\d,])")
_ASSIGN_RE = re.compile(r"^[a-zA-Z]\s*=\s*(?=[^=])")
_PLAIN_NUMBER_RE = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?$")
_LETTER_RE = re.compile(r"^[A-J]$")
_REL_TOL = 1e-4


def _balanced(text: str, start: int) -> str | None:
    """The content from `start` up to the brace that closes an already open `{`, or None."""
    depth = 1
    for i in range(start, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[start:i]
    return None


def extract_boxed(text: str) -> str | None:
    """The content of the last closed `\\boxed{...}` or `\\fbox{...}` in `text`, or None."""
    for match in reversed(list(_BOX_RE.finditer(text))):
        content = _balanced(text, match.end())
        if content is not None:
            return content
    return None


def extract_probe_answer(response: str) -> str | None:
    """The answer in a probe response that continues an already open `\\boxed{`.

    The probe prompt ends with `\\boxed{`, so the answer is the text up to the first unmatched
    `}`. Returns None when there is no closing brace or the answer is blank, including an answer
    of nothing but braces and spaces (`{}`).
    """
    content = _balanced(response, 0)
    if content is None or not content.strip("{} \t\n"):
        return None
    return content.strip()


def _clause(text: str) -> str:
    """The first line or sentence of `text` (a period followed by space ends it, 3.5 does not)."""
    text = text.lstrip(" \t\n*:$")
    end = _SENTENCE_END_RE.search(text)
    return (text[: end.start()] if end else text).strip().strip("*$ ").strip()


def extract_answer(text: str | None) -> str | None:
    """The final answer in a piece of model output, or None if it has none.

    Precedence is documented in the module docstring: boxed, "Final Answer", "The answer is",
    "(B)", last number. The result is stripped but not normalized (see `normalize`).
    """
    if not text:
        return None
    boxed = extract_boxed(text)
    if boxed is not None:
        return boxed.strip() or None
    for pattern in (_FINAL_RE, _ANSWER_IS_RE):
        matches = list(pattern.finditer(text))
        if matches:
            clause = _clause(text[matches[-1].end() :])
            if clause:
                return clause
    choices = _CHOICE_RE.findall(text)
    if choices:
        return str(choices[-1])
    numbers = _NUMBER_RE.findall(text)
    return str(numbers[-1]) if numbers else None


def normalize(answer: str | None) -> str:
    """A canonical string form of an answer; "" for None or blank (see `_normalize`)."""
    return "" if answer is None else _normalize(answer)


@functools.lru_cache(maxsize=65536)
def _normalize(answer: str) -> str:
    """The canonical form of a non-None answer (cached; answers repeat a lot).

    Strips math delimiters (`$`, `\\(`, `\\[`), `\\text{}`-like wrappers, `\\left`/`\\right`,
    spacing commands, degree marks, a leading `x =`, a trailing period, thousands separators
    (`1,000` -> `1000`) and all whitespace; maps `\\dfrac`/`\\tfrac` to `\\frac`. Case is kept.
    """
    s = answer.strip()
    for old, new in (
        ("\\dfrac", "\\frac"),
        ("\\tfrac", "\\frac"),
        ("\\left", ""),
        ("\\right", ""),
        ("\\!", ""),
        ("\\,", ""),
        ("\\;", ""),
        ("\\:", ""),
        ("\\ ", ""),
        ("^\\circ", ""),
        ("^{\\circ}", ""),
        ("°", ""),
        ("\\$", ""),
    ):
        s = s.replace(old, new)
    for _ in range(3):
        s = _TEXT_CMD_RE.sub(r"\1", s)
    s = s.strip()
    for opener, closer in (("\\(", "\\)"), ("\\[", "\\]"), ("$", "$")):
        if s.startswith(opener) and s.endswith(closer) and len(s) >= len(opener) + len(closer):
            s = s[len(opener) : len(s) - len(closer)].strip()
    s = s.strip("$").rstrip(".").strip()
    s = _ASSIGN_RE.sub("", s) if s.count("=") == 1 else s
    s = _THOUSANDS_RE.sub(lambda m: m.group(1) + m.group(2).replace(",", ""), s)
    return "".join(s.split())


def _as_number(s: str) -> float | None:
    if not _PLAIN_NUMBER_RE.match(s):
        return None
    return float(s)


def _fast_path(a: str, b: str) -> bool | None:
    """Decides cheap cases: equal strings, two plain numbers, two option letters."""
    if a == b:
        return True
    x, y = _as_number(a), _as_number(b)
    if x is not None and y is not None:
        return math.isclose(x, y, rel_tol=_REL_TOL, abs_tol=1e-12)
    if _LETTER_RE.match(a) or _LETTER_RE.match(b):
        return False
    return None


def equivalent(a: str | None, b: str | None) -> bool:
    """Whether two extracted answers denote the same value.

    None and blank answers are never equivalent to anything, themselves included. Otherwise:
    equal normalized strings -> True; two plain numbers -> equal within relative 1e-4; an option
    letter only equals the same letter; everything else goes to math-verify (cached per
    unordered pair, with a timeout; a timeout or math-verify error counts as not equivalent).
    """
    return _equivalent_keys(normalize(a), normalize(b))


def _equivalent_keys(na: str, nb: str) -> bool:
    """`equivalent` on already normalized answers."""
    if not na or not nb:
        return False
    if na == nb:
        return True
    return _equivalent_normalized(min(na, nb), max(na, nb))


@functools.lru_cache(maxsize=65536)
def _equivalent_normalized(a: str, b: str) -> bool:
    """Equivalence of two normalized, non-empty answers with a < b (cache key is order-free)."""
    fast = _fast_path(a, b)
    if fast is not None:
        return fast
    return math_verify_equal(a, b)


def cluster(answers: Sequence[str | None]) -> list[list[int]]:
    """Indices of `answers` grouped into equivalence classes.

    Each class is sorted by index; classes are ordered largest first, ties by smallest index.
    None and blank answers (extraction found nothing) each form a singleton class: never
    agreement. Identical non-empty strings that math-verify cannot parse still agree. An answer
    joins the first existing class whose first member is `equivalent` to it; identical
    normalized strings are grouped without any equivalence call.
    """
    by_text: dict[str, list[int]] = {}
    singles: list[list[int]] = []
    for i, answer in enumerate(answers):
        key = normalize(answer)
        if key:
            by_text.setdefault(key, []).append(i)
        else:
            singles.append([i])
    groups: list[tuple[str, list[int]]] = []
    for key, members in by_text.items():
        for rep, group in groups:
            if _equivalent_keys(rep, key):
                group.extend(members)
                break
        else:
            groups.append((key, list(members)))
    classes = [sorted(group) for _, group in groups] + singles
    classes.sort(key=lambda g: (-len(g), g[0]))
    return classes


def cluster_sizes(answers: Sequence[str | None]) -> list[int]:
    """Sizes of the equivalence classes of `answers`, largest first (see `cluster`)."""
    return [len(group) for group in cluster(answers)]


def majority_answer(answers: Sequence[str | None]) -> str | None:
    """The first answer of the largest class, or None if there is no non-empty answer."""
    for group in cluster(answers):
        if normalize(answers[group[0]]):
            return answers[group[0]]
    return None


def clear_cache() -> None:
    """Forgets cached pairwise equivalence results (used by benchmarks and tests)."""
    _equivalent_normalized.cache_clear()
    _normalize.cache_clear()
