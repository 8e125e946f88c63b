"""Old import paths keep working for one release, with a DeprecationWarning naming the new one;
program authors need only `dynasor_sgl.lang`, which the shipped programs alone import."""

from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path

import pytest

import dynasor_sgl
from dynasor_sgl import _moved

PROGRAMS = Path(dynasor_sgl.__file__).parent.parent.parent / "programs"


@pytest.mark.parametrize("old, new", sorted(_moved.MOVED.items()))
def test_an_old_module_path_gives_the_new_module_with_a_warning(old: str, new: str) -> None:
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=new.replace(".", r"\.")):
        module = importlib.import_module(old)
    assert module is importlib.import_module(new)


def test_an_old_module_name_that_is_now_a_package_forwards_its_names() -> None:
    from dynasor_sgl.policy.machine import ProgramPolicy

    with pytest.warns(DeprecationWarning, match=r"dynasor_sgl\.policy\.machine\.ProgramPolicy"):
        from dynasor_sgl.policy import ProgramPolicy as old  # type: ignore[attr-defined]
    assert old is ProgramPolicy
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        dynasor_sgl.policy.nothing  # type: ignore[attr-defined]  # noqa: B018


def test_the_new_paths_import_without_a_warning() -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        for new in _moved.MOVED.values():
            importlib.import_module(new)
        importlib.import_module("dynasor_sgl.lang")


@pytest.mark.parametrize("path", sorted(PROGRAMS.glob("*.py")), ids=lambda p: p.name)
def test_a_shipped_program_imports_dynasor_sgl_only_through_lang(path: Path) -> None:
    if path.name == "__init__.py":  # the registry of names, not a program
        return
    wrong = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = (
                [node.module]  # `from dynasor_sgl.lang import x`
                if node.module == "dynasor_sgl.lang"
                else [f"{node.module}.{a.name}" for a in node.names]
            )
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        wrong += [n for n in names if n.startswith("dynasor_sgl") and n != "dynasor_sgl.lang"]
    assert wrong == []
