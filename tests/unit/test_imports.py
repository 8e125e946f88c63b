"""The package's imports run one way: no cycle among imports, those inside functions included
(an import inside a function is still a dependency; it only moves the failure to run time), the
shipped programs (installed as `dynasor_sgl.programs`) included, and TYPE_CHECKING not used to
hide one. The layers below the programs never import what is built on them."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import dynasor_sgl

ROOT = Path(dynasor_sgl.__file__).parent
PROGRAMS = ROOT.parent.parent / "programs"  # the top-level folder, installed in the package


def module_name(path: Path) -> str:
    if path.is_relative_to(PROGRAMS):
        parts = ("dynasor_sgl", "programs", *path.relative_to(PROGRAMS).with_suffix("").parts)
    else:
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(node: ast.AST, package: str) -> list[str]:
    """Candidate module names one import statement names, most specific first."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:  # relative: resolve against the importing module's package
            up = package.split(".")[: len(package.split(".")) - node.level + 1]
            base = ".".join([*up, base] if base else up)
        return [f"{base}.{a.name}" for a in node.names] + [base]
    return []


def graph() -> dict[str, set[str]]:
    paths = [*ROOT.rglob("*.py"), *PROGRAMS.rglob("*.py")]
    modules = {module_name(p): p for p in paths}
    edges: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text())):  # function-level imports too
            for target in imported(node, package):
                if target in modules and target != name and not name.startswith(target + "."):
                    edges[name].add(target)
                    break
    return edges


def test_the_graph_sees_function_level_and_relative_imports() -> None:
    edges = graph()
    assert "dynasor_sgl.programs.steps" in edges["dynasor_sgl.programs.mcts"]  # `from .steps`
    assert "dynasor_sgl.router.server" in edges["dynasor_sgl.cli.main"]  # inside a function


def test_no_import_cycles() -> None:
    edges = graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(edges[m]):
            if state.get(n) == 1:
                cycle = [*stack[stack.index(n) :], n]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m)


# What each foundation may never import: the packages built on it.
ABOVE = {
    "answers": {"policy", "search", "lang", "programs", "router", "replay", "eval", "online"},
    "search": {"policy", "lang", "programs", "router", "replay", "eval", "online", "cli"},
    "policy": {"lang", "programs", "router", "scheduling", "replay", "eval", "online", "cli"},
    "scheduling": {"lang", "programs", "router", "eval", "online", "sim", "cli"},
    "lang": {"programs", "router", "launch", "eval", "online", "sim", "cli"},
    "router": {"lang", "programs", "launch", "eval", "online", "sim", "cli"},
}


@pytest.mark.parametrize("package", sorted(ABOVE))
def test_a_foundation_imports_nothing_built_on_it(package: str) -> None:
    def part(module: str) -> str:
        return module.split(".")[1] if module.count(".") else ""

    wrong = sorted(
        f"{m} -> {n}"
        for m, targets in graph().items()
        if part(m) == package
        for n in targets
        if part(n) in ABOVE[package]
    )
    assert wrong == []


def test_type_checking_hides_no_import() -> None:
    paths = [*ROOT.rglob("*.py"), *PROGRAMS.rglob("*.py")]
    uses = [p for p in paths if "TYPE_CHECKING" in p.read_text()]
    assert uses == [], f"TYPE_CHECKING imports in {uses}"


def test_test_modules_have_unique_basenames() -> None:
    # pytest imports test modules by basename (rootdir imports, no __init__.py): two with
    # the same name fail collection of the whole suite
    tests = Path(__file__).resolve().parent.parent
    names = [p.name for p in tests.rglob("test_*.py")]
    assert sorted({n for n in names if names.count(n) > 1}) == []
