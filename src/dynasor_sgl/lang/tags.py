"""Branch tags: the name a state's requests carry to the router and the kind of their tokens.

A tag is two attributes on SGLang's `StreamExecutor`, set by `dynasor_sgl.lang.tag` inside a
program and read by the endpoint when it sends and accounts a request. Forks do not inherit
them: an untagged fork is a branch of its own, named by its SGLang id.
"""

from __future__ import annotations

from sglang.lang.interpreter import StreamExecutor

from dynasor_sgl.lang.tokens import TokenKind


def set_tag(ex: StreamExecutor, branch: str | None, kind: TokenKind | None) -> None:
    if branch is not None:
        ex.dynasor_branch = branch
    if kind is not None:
        ex.dynasor_kind = kind


def branch_of(ex: StreamExecutor) -> str:
    return getattr(ex, "dynasor_branch", None) or ex.sid


def kind_of(ex: StreamExecutor) -> TokenKind:
    kind: TokenKind = getattr(ex, "dynasor_kind", None) or "reasoning"
    return kind
