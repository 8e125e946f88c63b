"""The package's imports run one way: no cycle among module-level imports (imports inside
functions, which break a cycle on purpose, and TYPE_CHECKING blocks are not counted; nor is
TYPE_CHECKING used to hide one)."""

from __future__ import annotations

import ast
from pathlib import Path

import dynasor_sgl

ROOT = Path(dynasor_sgl.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in ROOT.rglob("*.py")}
    edges: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        for node in ast.parse(path.read_text()).body:  # module level only
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
            for target in targets:
                if target in modules and target != name:
                    edges[name].add(target)
                    break
    return edges


def test_no_import_cycles() -> None:
    edges = graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(edges[m]):
            if state.get(n) == 1 and not m.startswith(n + "."):  # a package's own __init__
                cycle = [*stack[stack.index(n) :], n]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m)


def test_type_checking_hides_no_import() -> None:
    uses = [p for p in ROOT.rglob("*.py") if "TYPE_CHECKING" in p.read_text()]
    assert uses == [], f"TYPE_CHECKING imports in {uses}"
