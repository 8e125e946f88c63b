"""Final-answer extraction: what "the answer" of a piece of model text is.

Only the model's own answer counts: text after it starts a new dialogue turn ("User:",
"Question:", ...) or asks a new question (a paragraph ending in "?") is cut off first; small
models often go on to invent the next exchange. Then, first rule that matches wins:
1. the last non-empty `\\boxed{...}` or `\\fbox{...}` (nested braces balanced); an equation
   in it gives its right-hand side ("6 + 3 = 9" -> 9);
2. an answer clause: the first sentence after the last "Final Answer" / "final answer is" /
   "The (correct) answer is" / "Answer:" marker. A number that opens it is the answer
   ("11 then ..." -> 11). From it, in order: an option letter ("C", "(B)"), a
   yes/no, the value math-verify's `parse` finds ("of 8" -> 8, "8 apples" -> 8), the clause
   itself when it reads as math ("x+1"), else a short word answer;
3. without a marker: an option letter written "(B)", then the last value math-verify finds in
   the text (a bare number in brackets too: "[[15]]" -> 15), then a text of at most three
   words as a word answer ("Paris"), then a word answer after the first "is"/"be" ("The
   capital of France is Paris, which is ..." -> "Paris").
A word answer ends at a comma and is at most four words after leading filler ("of",
"that", "you", ...) is dropped; a clause of nothing but filler ("you want") is no answer
(None), never a cluster of its own; a text of no digits that opens with a yes/no reply
("Yes.") answers that. Empty boxes (`\\boxed{}`) are ignored. math-verify runs in the
verifier's child process with its timeout; when it cannot answer, the last number in the text
stands in.
"""

from __future__ import annotations

import re

from dynasor_sgl.answers.verifier import math_verify_parse

_BOX_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")
_MARKER_RE = re.compile(
    r"final\s+answer(?:\s*\*\*)?\s*(?:is\b|:)?|the\s+(?:correct\s+)?answer\s+is\b|\banswer\s*:",
    re.IGNORECASE,
)
# Where the model's own answer ends: a new dialogue turn, or a paragraph that asks a question.
_TURN_RE = re.compile(
    r"\n\s*(?:user|assistant|human|question|q|problem|instruction|system)\s*(?::|\n)",
    re.IGNORECASE,
)
_NEW_QUESTION_RE = re.compile(r"\n\s*\n[^\n]*\?\s*(?:\n|$)")
_LEADING_NUMBER_RE = re.compile(r"^(-?\d(?:,?\d)*(?:\.\d+)?)(?![\d.,]|\s*[-+*/^=%:<>])")
_YES_NO_REPLY_RE = re.compile(r"\s*(yes|no|true|false)\s*(?:[.,!;:]|$)", re.IGNORECASE)
_EMPTY_BOX_RE = re.compile(r"\\(?:boxed|fbox)\s*\{\s*\}")
_WRAPPER_RE = re.compile(r"\\(?:text|textbf|mathrm|mathbf|textit|mbox)\s*\{([^{}]*)\}")
_CHOICE_RE = re.compile(r"\(([A-J])\)")
_LETTER_RE = re.compile(r"^\(?([A-J])\)?$")
_NUMBER_RE = re.compile(r"-?\d(?:,?\d)*(?:\.\d+)?(?:/\d+)?|-?\.\d+")
_PLAIN_NUMBER_RE = re.compile(r"^-?\d(?:,?\d)*(?:\.\d+)?$")
_SENTENCE_END_RE = re.compile(r"\.(?:\s|$)|\n")
_MATH_RE = re.compile(r"[\d=+^\\/*<>]|\b[a-z]\b")
_IS_RE = re.compile(r"\b(?:is|are|was|were|equals|be)\s+", re.IGNORECASE)
_WORD_RE = re.compile(r"[^\W\d_][\w'-]*")
_ARTICLE_RE = re.compile(r"(?:the|a|an)\s", re.IGNORECASE)
_YES_NO = {"yes": "yes", "no": "no", "true": "yes", "false": "no"}
_FILLER = frozenset(
    [
        "a",
        "an",
        "the",
        "of",
        "that",
        "this",
        "these",
        "it",
        "its",
        "is",
        "are",
        "was",
        "were",
        "be",
        "being",
        "to",
        "equal",
        "equals",
        "so",
        "then",
        "just",
        "simply",
        "you",
        "your",
        "we",
        "our",
        "i",
        "my",
        "me",
        "want",
        "wanted",
        "here",
        "there",
        "which",
        "what",
        "would",
        "will",
        "approximately",
        "about",
        "around",
        "answer",
        "final",
        "thus",
        "therefore",
        "hence",
        # interjections: "hmm" alone is no answer
        "hmm",
        "hm",
        "um",
        "uh",
        "oh",
        "ah",
        "ok",
        "okay",
        "well",
        "wait",
        "sure",
    ]
)
MAX_WORDS = 4
BARE_WORDS = 3


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


def own_answer(text: str) -> str:
    """`text` up to where the model stops answering: a new dialogue turn or a new question."""
    cut = len(text)
    for pattern in (_TURN_RE, _NEW_QUESTION_RE):
        match = pattern.search(text)
        if match:
            cut = min(cut, match.start())
    return text[:cut]


def _box_value(content: str) -> str | None:
    """A box's answer: wrappers such as `\\text{...}` unwrapped, an equation's right-hand side,
    a lone yes/no among numbers ("1. no." -> "no"); None when blank."""
    while _WRAPPER_RE.search(content):
        content = _WRAPPER_RE.sub(r"\1", content)
    content = content.strip().strip(". ")
    if "=" in content:
        right = content.rsplit("=", 1)[1].strip()
        content = right or content
    words = _WORD_RE.findall(content)
    if len(words) == 1 and words[0].lower() in _YES_NO:
        return _YES_NO[words[0].lower()]
    return content or None


def extract_probe_answer(response: str) -> str | None:
    """The answer in a probe response that continues an already open `\\boxed{`.

    The probe prompt ends with `\\boxed{`, so the answer is the text up to the first unmatched
    `}`, read as a box is (`_box_value`). Returns None when there is no closing brace or the
    answer is blank, including an answer of nothing but braces and spaces (`{}`).
    """
    content = _balanced(response, 0)
    if content is None or not content.strip("{} \t\n"):
        return None
    return _box_value(content)


def _clause(text: str) -> str:
    """The first line or sentence of `text` (a period followed by space ends it, 3.5 does not)."""
    text = text.lstrip(" \t\n*:$")
    end = _SENTENCE_END_RE.search(text)
    return (text[: end.start()] if end else text).strip().strip("*$ ").strip()


def _value(text: str) -> str | None:
    """The value in `text`: a plain number as written (brackets and quotes around it dropped),
    else math-verify's (None if it finds none), else, when math-verify could not say, the last
    number."""
    bare = text.strip(" \t\n[](){}'\"*.")
    if _PLAIN_NUMBER_RE.match(bare):
        return bare
    found = math_verify_parse(text)
    if found is not None:
        return found or None
    numbers = _NUMBER_RE.findall(text)
    return str(numbers[-1]) if numbers else None


def word_answer(phrase: str) -> str | None:
    """A short word answer: up to the first comma, semicolon or colon, leading filler
    dropped, at most MAX_WORDS words; None if nothing but filler is left."""
    words = [w.strip("'") for w in _WORD_RE.findall(re.split(r"[,;:]", phrase, maxsplit=1)[0])]
    words = [w for w in words if w]
    while words and words[0].lower() in _FILLER:
        words.pop(0)
    if not words or all(w.lower() in _FILLER for w in words):
        return None
    return " ".join(words[:MAX_WORDS])


def _from_clause(clause: str) -> str | None:
    letter = _LETTER_RE.match(clause) or re.match(r"^\(?([A-J])[).](?:\s|$)", clause)
    if letter:
        return letter.group(1)
    first = _WORD_RE.match(clause)
    if first and first.group(0).lower() in _YES_NO:
        return _YES_NO[first.group(0).lower()]
    leading = _LEADING_NUMBER_RE.match(clause)
    if leading:
        return leading.group(1)
    value = _value(clause)
    if value is not None:
        return value
    if _MATH_RE.search(clause):
        return clause
    return word_answer(clause)


def _last_box(text: str) -> str | None:
    """The last box's answer (`extract_answer` has already dropped the empty boxes)."""
    content = extract_boxed(text)
    return _box_value(content) if content is not None else None


def extract_answer(text: str | None) -> str | None:
    """The final answer in a piece of model output, or None if it has none (see the module
    docstring for the rules). The result is stripped but not normalized."""
    if not text:
        return None
    text = _EMPTY_BOX_RE.sub("", own_answer(text))
    boxed = _last_box(text)
    if boxed is not None:
        return boxed
    markers = list(_MARKER_RE.finditer(text))
    if markers:
        clause = _clause(text[markers[-1].end() :])
        if clause:
            return _from_clause(clause)
    choices = _CHOICE_RE.findall(text)
    if choices:
        return str(choices[-1])
    value = _value(text) if any(c.isdigit() for c in text) else None
    if value is not None:
        return value
    reply = _YES_NO_REPLY_RE.match(text)
    if reply:
        return _YES_NO[reply.group(1).lower()]
    words = text.split()
    if 0 < len(words) <= BARE_WORDS:  # a bare short answer ("Paris", "New York City")
        return word_answer(text)
    copula = _IS_RE.search(text)
    return _copula_answer(text, copula) if copula else None


def _copula_answer(text: str, copula: re.Match[str]) -> str | None:
    """The answer of "X is Y": Y ("The capital of France is Paris"), unless Y is a
    description (it starts with an article: "Paris is the capital of France") and X names
    something in a few words of its own, which is then the answer."""
    predicate = _clause(text[copula.end() :])
    subject = _clause(text[: copula.start()].rsplit("\n", 1)[-1].rsplit(". ", 1)[-1])
    described = _ARTICLE_RE.match(predicate) is not None
    if described and subject and len(subject.split()) <= MAX_WORDS:
        named = word_answer(subject)
        if named is not None and named.split()[0][:1].isupper():
            return named
    return word_answer(predicate)
