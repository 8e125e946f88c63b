"""Final answers: normalization, equivalence and clustering (extraction: `extraction`).

Owns when two answers are the same. Equivalence runs math-verify in a separate worker process
(see `dynasor_sgl.answers.verifier`) so a pathological expression cannot hang the caller; when that
process cannot say (a timeout, a dead child) the pair is compared by normalized text for this
call only, counted in `undecided()`, and not cached, so a slow moment never becomes a wrong
answer for the life of the process. Knows nothing about certaindex, policies, SGLang or HTTP.
"""

from __future__ import annotations

import functools
import logging
import math
import re
import threading
from collections.abc import Sequence

from dynasor_sgl.answers.extraction import extract_answer, extract_boxed, extract_probe_answer
from dynasor_sgl.answers.verifier import math_verify_equal

logger = logging.getLogger(__name__)

__all__ = [
    "cluster",
    "cluster_sizes",
    "equivalent",
    "extract_answer",
    "extract_boxed",
    "extract_probe_answer",
    "majority_answer",
    "normalize",
    "undecided",
]

_TEXT_CMD_RE = re.compile(r"\\(?:text|textbf|mathrm|mbox|mathbf)\s*\{([^{}]*)\}")
_THOUSANDS_RE = re.compile(r"(?<![\d.])(\d{1,3})((?:,\d{3})+)(?![\d,])")
_ASSIGN_RE = re.compile(r"^[a-zA-Z]\s*=\s*(?=[^=])")
_PLAIN_NUMBER_RE = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?$")
_LETTER_RE = re.compile(r"^[A-J]$")
_REL_TOL = 1e-4
MAX_VERIFIED_CLASSES = 16  # classes `cluster` compares by math-verify; the rest stay separate
MAX_ANSWER_CHARS = 1000  # longer answers are compared as text only, and not cached
_undecided = 0
_undecided_lock = threading.Lock()


class _Undecided(Exception):
    """math-verify could not decide a pair (raised through the cache, so it is not cached)."""


def undecided() -> int:
    """How many equivalence checks math-verify could not decide (fell back to text)."""
    return _undecided


def normalize(answer: str | None) -> str:
    """A canonical string form of an answer; "" for None or blank (see `_normalize`). One over
    `MAX_ANSWER_CHARS` is normalized the same way but not kept in the cache."""
    if answer is None:
        return ""
    return _normalize(answer) if len(answer) <= MAX_ANSWER_CHARS else _normalize.__wrapped__(answer)


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


def _close(x: float, y: float) -> bool:
    return math.isclose(x, y, rel_tol=_REL_TOL, abs_tol=1e-12)


def _fast_path(a: str, b: str) -> bool | None:
    """Decides cheap cases: equal strings, two plain numbers, two option letters."""
    if a == b:
        return True
    x, y = _as_number(a), _as_number(b)
    if x is not None and y is not None:
        return _close(x, y)
    if _LETTER_RE.match(a) or _LETTER_RE.match(b):
        return False
    return None


def equivalent(a: str | None, b: str | None) -> bool:
    """Whether two extracted answers denote the same value.

    None and blank answers are never equivalent to anything, themselves included. Otherwise:
    equal normalized strings -> True; two plain numbers -> equal within relative 1e-4; an option
    letter only equals the same letter; an answer over `MAX_ANSWER_CHARS` (1,000) equals only
    its own normalized text; everything else goes to math-verify (cached per unordered pair).
    When math-verify cannot decide (timeout, error), the normalized strings differ, so the
    answer is False for this call, uncached and counted in `undecided()`.
    """
    return _equivalent_keys(normalize(a), normalize(b))


def _equivalent_keys(na: str, nb: str) -> bool:
    """`equivalent` on already normalized answers."""
    global _undecided
    if not na or not nb:
        return False
    if na == nb:
        return True
    if len(na) > MAX_ANSWER_CHARS or len(nb) > MAX_ANSWER_CHARS:
        return False  # no final answer is that long: not worth the shared verifier's time
    try:
        return _equivalent_normalized(min(na, nb), max(na, nb))
    except _Undecided:
        with _undecided_lock:
            _undecided += 1
        logger.warning("math-verify could not compare %r and %r; treated as different", na, nb)
        return False


@functools.lru_cache(maxsize=65536)
def _equivalent_normalized(a: str, b: str) -> bool:
    """Equivalence of two normalized, non-empty answers with a < b (cache key is order-free).
    Raises _Undecided (which lru_cache does not cache) when math-verify cannot say."""
    fast = _fast_path(a, b)
    if fast is not None:
        return fast
    verdict = math_verify_equal(a, b)
    if verdict is None:
        raise _Undecided(a, b)
    return verdict


def cluster(answers: Sequence[str | None]) -> list[list[int]]:
    """Indices of `answers` grouped into equivalence classes, with a bounded number of
    math-verify checks whatever the number of answers.

    Each class is sorted by index; classes are ordered largest first, ties by smallest index.
    None and blank answers (extraction found nothing) each form a singleton class: never
    agreement. Identical non-empty strings that math-verify cannot parse still agree. Cheapest
    first: equal normalized strings form one class without any check; a class of plain numbers
    joins the first earlier one within relative 1e-4 (in-process, no math-verify); then only the
    `MAX_VERIFIED_CLASSES` (16) largest classes (ties: smallest first index) are compared by
    `equivalent`, each joining the first earlier of them it equals. Classes past that bound stay
    separate: they are the rarest answers, which cannot change the largest class much. So one
    call makes at most 16·15/2 = 120 math-verify checks (each bounded by the verifier's
    timeout), where comparing every pair of 200 distinct answers took minutes behind the one
    verifier process that every program shares.
    """
    by_text: dict[str, list[int]] = {}
    singles: list[list[int]] = []
    for i, answer in enumerate(answers):
        key = normalize(answer)
        if key:
            by_text.setdefault(key, []).append(i)
        else:
            singles.append([i])
    classes = _by_number(by_text)
    ranked = sorted(range(len(classes)), key=lambda i: (-len(classes[i][1]), classes[i][1][0]))
    verified = set(ranked[:MAX_VERIFIED_CLASSES])
    groups: list[tuple[str, list[int]]] = []  # the verified classes, merged
    rest: list[list[int]] = []
    for i, (key, members) in enumerate(classes):
        if i not in verified:
            rest.append(members)
            continue
        for rep, group in groups:
            if _equivalent_keys(rep, key):
                group.extend(members)
                break
        else:
            groups.append((key, members))
    result = [sorted(group) for _, group in groups] + [sorted(m) for m in rest] + singles
    result.sort(key=lambda g: (-len(g), g[0]))
    return result


def _by_number(by_text: dict[str, list[int]]) -> list[tuple[str, list[int]]]:
    """The classes of equal normalized text (in order of first appearance), each of plain
    numbers merged into the first earlier one equal within relative 1e-4."""
    numbers: list[tuple[float, list[int]]] = []
    classes: list[tuple[str, list[int]]] = []
    for key, members in by_text.items():
        x = _as_number(key)
        same = None if x is None else next((g for y, g in numbers if _close(x, y)), None)
        if same is not None:
            same.extend(members)
            continue
        classes.append((key, list(members)))
        if x is not None:
            numbers.append((x, classes[-1][1]))
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
