"""The shipped reasoning programs, by name: one module per algorithm, each with a `SPEC`.

This folder ships inside the package as `dynasor_sgl.programs` (see pyproject.toml), so the
library (`dynasor_sgl.lang.run_program("mcts", ...)`) and the CLI (`dynasor-sgl run mcts ...`)
find them by name. Modules are imported on first use: importing one needs sglang.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dynasor_sgl.lang.spec import ProgramSpec

MODULES = {
    "self-consistency": "self_consistency",
    "cot-probe": "cot_probe",
    "best-of-n": "best_of_n",
    "beam-search": "beam_search",
    "rebase": "rebase",
    "mcts": "mcts",
}
NAMES = tuple(MODULES)


def get_program(name: str) -> ProgramSpec:
    """The ProgramSpec of a shipped program; an unknown name is a ValueError listing them."""
    if name not in MODULES:
        raise ValueError(f"unknown program {name!r}; choose one of: {', '.join(NAMES)}")
    module = importlib.import_module(f"{__name__}.{MODULES[name]}")
    spec: ProgramSpec = module.SPEC
    return spec
