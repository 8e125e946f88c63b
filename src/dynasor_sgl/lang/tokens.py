"""The token ledger of one program run: tokens by kind (reasoning, probe, reward), counted
from each request's meta_info the same way everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

TokenKind = Literal["reasoning", "probe", "reward"]


def _token_counts(meta_info: Mapping[str, Any]) -> tuple[int, int, int]:
    """(prompt, cached, completion) tokens of a meta_info (missing -> 0), checked."""
    prompt, cached, completion = (
        int(meta_info.get(k) or 0) for k in ("prompt_tokens", "cached_tokens", "completion_tokens")
    )
    if min(prompt, cached, completion) < 0 or cached > prompt:
        raise ValueError(f"inconsistent token counts in meta_info: {dict(meta_info)!r}")
    return prompt, cached, completion


def request_tokens(meta_info: Mapping[str, Any]) -> int:
    """Tokens one request cost the engine: prompt − cached + completion (the router's sum)."""
    prompt, cached, completion = _token_counts(meta_info)
    return prompt - cached + completion


@dataclass
class TokenUsage:
    """Tokens one program run cost the engine, by purpose.

    Each request counts prefill after the prefix cache (prompt_tokens − cached_tokens) plus
    generated tokens (completion_tokens): the same `total` the router reports per program, so the
    two add up. reasoning / probe / reward: those counts by purpose; prefill, generated: the same
    tokens split by phase; cached: prompt tokens served from the cache (not in `total`).
    Mutable and not thread-safe: add from the program's own thread.
    """

    reasoning: int = 0
    probe: int = 0
    reward: int = 0
    prefill: int = 0
    generated: int = 0
    cached: int = 0
    requests: int = 0

    @property
    def total(self) -> int:
        """reasoning + probe + reward (= prefill + generated)."""
        return self.reasoning + self.probe + self.reward

    def add(self, kind: TokenKind, meta_info: Mapping[str, Any] | None) -> int:
        """Account one finished request's SGLang `meta_info`; returns the tokens it added.

        Reads prompt_tokens, cached_tokens and completion_tokens (missing -> 0). Pass the final
        meta_info of a streamed request only (each chunk repeats the running totals). None
        (a request that returned nothing) adds 0. A negative count, cached > prompt, or an
        unknown kind raises ValueError.
        """
        if kind not in ("reasoning", "probe", "reward"):
            raise ValueError(f"kind must be reasoning, probe or reward, got {kind!r}")
        if meta_info is None:
            return 0
        prompt, cached, completion = _token_counts(meta_info)
        spent = prompt - cached + completion
        setattr(self, kind, getattr(self, kind) + spent)
        self.prefill += prompt - cached
        self.generated += completion
        self.cached += cached
        self.requests += 1
        return spent

    def to_dict(self) -> dict[str, int]:
        """The `tokens` object of a program result: reasoning, probe, reward, total, and detail."""
        return {
            "reasoning": self.reasoning,
            "probe": self.probe,
            "reward": self.reward,
            "total": self.total,
            "prefill": self.prefill,
            "generated": self.generated,
            "cached": self.cached,
            "requests": self.requests,
        }
