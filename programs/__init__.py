"""The shipped reasoning programs, by name: one module per algorithm, each with a `SPEC`.

This folder ships inside the package as `dynasor_sgl.programs` (see pyproject.toml), so the
library (`dynasor_sgl.lang.run_program("mcts", ...)`) and the CLI (`dynasor-sgl run mcts ...`)
find them by name through the entry points pyproject.toml registers. Modules are imported on
first use: importing one needs sglang.
"""

from __future__ import annotations

from dynasor_sgl.lang.registry import find_program, registered
from dynasor_sgl.lang.spec import ProgramSpec

# The shipped programs: those of the entry-point group `dynasor_sgl.programs` (pyproject.toml,
# the one list of names) that live in this package, sorted by name.
NAMES = tuple(
    sorted(name for name, ep in registered().items() if ep.value.startswith(f"{__name__}."))
)


def get_program(name: str) -> ProgramSpec:
    """The ProgramSpec of a registered program (the shipped ones and any a user's package
    registers); an unknown name is a ValueError listing them."""
    return find_program(name)
