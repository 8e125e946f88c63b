"""The Python blocks of README.md and docs/, for the tests that run them: a block that talks to
a served router (it names the default router URL) runs against the e2e cluster, the others in
the unit layer."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from dynasor_sgl.protocol import DEFAULT_ROUTER_URL

REPO = Path(__file__).resolve().parent.parent
DOCS = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.M | re.S)


@dataclass(frozen=True)
class Block:
    path: Path
    line: int
    code: str

    @property
    def served(self) -> bool:
        """Whether it needs a running router (it uses the default router, by URL or by
        `run_program`)."""
        return DEFAULT_ROUTER_URL in self.code or "run_program(" in self.code

    @property
    def name(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}"


def blocks() -> list[Block]:
    found = []
    for path in DOCS:
        text = path.read_text()
        for m in _BLOCK.finditer(text):
            found.append(Block(path, text.count("\n", 0, m.start()) + 1, m.group(1)))
    return found


def run(block: Block, router_url: str = DEFAULT_ROUTER_URL) -> dict[str, object]:
    """Executes the block as a script (`__name__ == "__main__"`), its router URL replaced;
    returns its globals."""
    code = block.code.replace(DEFAULT_ROUTER_URL, router_url)
    scope: dict[str, object] = {"__name__": "__main__"}
    exec(compile(code, block.name, "exec"), scope)
    return scope
