"""Splitting a thinking model's text into `reasoning_content` and `content`, as SGLang's
`--reasoning-parser` does on its OpenAI route: what comes before `</think>` is reasoning, what
follows is the answer. Streaming-safe: a tag cut across two pieces is held back until it is
whole. Pure; knows nothing about HTTP.
"""

from __future__ import annotations

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
REASONING, CONTENT = "reasoning_content", "content"


def _partial_tag(text: str, tag: str) -> int:
    """Length of the longest end of `text` that starts `tag` (held back: it may complete)."""
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:n]):
            return n
    return 0


class ThinkSplitter:
    """Feed pieces of text in order; get (field, text) pairs. `thinking`: the prompt already
    opened `<think>` (the model starts inside its reasoning)."""

    def __init__(self, thinking: bool) -> None:
        self.thinking = thinking
        self._held = ""

    def feed(self, text: str) -> list[tuple[str, str]]:
        self._held += text
        out: list[tuple[str, str]] = []
        while True:
            tag = THINK_CLOSE if self.thinking else THINK_OPEN
            field = REASONING if self.thinking else CONTENT
            at = self._held.find(tag)
            if at < 0:
                keep = _partial_tag(self._held, tag)
                piece, self._held = (
                    self._held[: len(self._held) - keep],
                    self._held[-keep:] if keep else "",
                )
                if piece:
                    out.append((field, piece))
                return out
            if self._held[:at]:
                out.append((field, self._held[:at]))
            self._held = self._held[at + len(tag) :]
            self.thinking = not self.thinking

    def flush(self) -> list[tuple[str, str]]:
        """What is still held back (a tag that never completed is text after all)."""
        held, self._held = self._held, ""
        return [(REASONING if self.thinking else CONTENT, held)] if held else []


def split(text: str, thinking: bool) -> tuple[str, str]:
    """(reasoning_content, content) of a whole text."""
    splitter = ThinkSplitter(thinking)
    parts = splitter.feed(text) + splitter.flush()
    reasoning = "".join(t for f, t in parts if f == REASONING)
    return reasoning, "".join(t for f, t in parts if f == CONTENT)
