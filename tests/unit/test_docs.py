"""The documentation a newcomer reads runs: every Python block of README.md and docs/ that
needs no server runs here (the served ones in tests/e2e/test_served_docs.py); the README stays
a short path whose links lead somewhere."""

from __future__ import annotations

import re

import pytest

from doc_blocks import DOCS, REPO, Block, blocks, run

PURE = [b for b in blocks() if not b.served]


def test_the_docs_have_blocks_of_both_kinds() -> None:
    assert PURE and any(b.served for b in blocks())


@pytest.mark.parametrize("block", PURE, ids=lambda b: b.name)
def test_a_pure_block_runs(block: Block, capsys: pytest.CaptureFixture[str]) -> None:
    run(block)
    capsys.readouterr()


def test_the_certaindex_example_prints_what_its_comments_say(
    capsys: pytest.CaptureFixture[str],
) -> None:
    (block,) = [b for b in PURE if "entropy_certaindex" in b.code]
    run(block)
    assert capsys.readouterr().out.split() == ["0.689", "continue", "5"]


def test_the_readme_is_a_short_path() -> None:
    assert len((REPO / "README.md").read_text().splitlines()) <= 300


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_leads_to_a_file(path: object) -> None:
    assert hasattr(path, "read_text")
    text = path.read_text()  # type: ignore[attr-defined]
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    missing = [
        t
        for t in targets
        if not t.startswith(("http://", "https://")) and not (path.parent / t).exists()  # type: ignore[attr-defined]
    ]
    assert missing == []
