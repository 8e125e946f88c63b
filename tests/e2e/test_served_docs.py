"""The documentation's served examples run against the e2e cluster: every Python block of
README.md and docs/ that talks to a router (the pure ones run in tests/unit/test_docs.py), each
checked for what its comments promise."""

from __future__ import annotations

import functools

import pytest

from doc_blocks import Block, blocks, run
from dynasor_sgl import lang

pytestmark = pytest.mark.e2e

SERVED = [b for b in blocks() if b.served]


def check(block: Block, scope: dict[str, object], printed: list[str]) -> None:
    """What the block's comments say it shows."""
    if "/report" in block.code:  # five agreeing answers stop the program
        assert printed == ["stop"]
    elif "@sgl.function" in block.code:  # a program of your own, run to its policy's end
        result = scope["result"]
        assert isinstance(result, lang.ProgramResult)
        assert result.ok, result.error
        assert result.exit_reason in {"threshold", "cap"} and 5 <= result.steps <= 10
    elif "OpenAI(" in block.code:  # an early-exit chat completion
        assert printed[-1] in {"certain", "completed", "budget"}
    else:
        raise AssertionError(f"{block.name}: a served block without a check; add one here")


@pytest.mark.parametrize("block", SERVED, ids=lambda b: b.name)
def test_a_served_block_runs_against_the_router(
    block: Block,
    router_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # run_program's default router is the one `launch` serves; here it is the e2e cluster's
    monkeypatch.setattr(lang, "run_program", functools.partial(lang.run_program, router=router_url))
    scope = run(block, router_url)
    check(block, scope, capsys.readouterr().out.split())
