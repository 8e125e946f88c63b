"""Programs by name: the `dynasor_sgl.programs` entry-point group.

A reasoning program is found by name through the package metadata's entry points (group
`dynasor_sgl.programs`, each pointing at a `ProgramSpec`), the mechanism Python packages use for
plugins. The shipped programs are registered in this project's pyproject.toml; a user's package
registers its own the same way and `run_program("my-program", ...)` finds it; `load_program`
also takes a `module:ATTRIBUTE` that names a ProgramSpec directly. This module knows
no program: the language layer never imports the programs written in it.
"""

from __future__ import annotations

import importlib
from importlib.metadata import EntryPoint, entry_points

from dynasor_sgl.lang.spec import ProgramSpec

GROUP = "dynasor_sgl.programs"


def registered() -> dict[str, EntryPoint]:
    """Every registered program's entry point, by name (the first of a repeated name wins)."""
    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=GROUP):
        found.setdefault(ep.name, ep)
    return found


def find_program(name: str) -> ProgramSpec:
    """The ProgramSpec registered as `name`; an unknown name is a ValueError listing them."""
    known = registered()
    if name not in known:
        raise ValueError(f"unknown program {name!r}; choose one of: {', '.join(sorted(known))}")
    spec = known[name].load()
    if not isinstance(spec, ProgramSpec):
        raise ValueError(f"program {name!r} ({known[name].value}) is not a ProgramSpec")
    return spec


def load_program(name: str) -> ProgramSpec:
    """A registered program by name, or a user's ProgramSpec named `module:ATTRIBUTE` (the
    module imported as Python would). Anything else is a ValueError saying why."""
    if ":" not in name:
        return find_program(name)
    module, _, attr = name.partition(":")
    try:
        spec = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ValueError(f"cannot load {name}: {exc}") from exc
    if not isinstance(spec, ProgramSpec):
        raise ValueError(f"{name} is not a dynasor_sgl.lang.ProgramSpec")
    return spec
