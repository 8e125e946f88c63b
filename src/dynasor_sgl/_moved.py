"""Import paths of modules that moved into packages, kept for one release with a warning.

`dynasor_sgl.votes` became `dynasor_sgl.search.votes`, and so on (`MOVED`). Importing an old
path gives the new module and a DeprecationWarning that names it. Where an old module's name is
now a package (`dynasor_sgl.policy` held what `dynasor_sgl.policy.machine` holds), the package
forwards the old module's names the same way (`forward`). Knows nothing but the names.
Remove in the release after 0.2.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import warnings
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

MOVED = {
    "dynasor_sgl.extraction": "dynasor_sgl.answers.extraction",
    "dynasor_sgl.verifier": "dynasor_sgl.answers.verifier",
    "dynasor_sgl.votes": "dynasor_sgl.search.votes",
    "dynasor_sgl.tree": "dynasor_sgl.search.tree",
    "dynasor_sgl.certaindex": "dynasor_sgl.policy.certaindex",
    "dynasor_sgl.policy_config": "dynasor_sgl.policy.config",
    "dynasor_sgl.presets": "dynasor_sgl.policy.presets",
    "dynasor_sgl.logprobs": "dynasor_sgl.policy.logprobs",
    "dynasor_sgl.trimming": "dynasor_sgl.policy.trimming",
    "dynasor_sgl.labelled": "dynasor_sgl.replay.labelled",
    "dynasor_sgl.calibration": "dynasor_sgl.replay.calibration",
    "dynasor_sgl.holdout": "dynasor_sgl.replay.holdout",
    "dynasor_sgl.deadlines": "dynasor_sgl.scheduling.deadlines",
    "dynasor_sgl.tokens": "dynasor_sgl.lang.tokens",
    "dynasor_sgl.config": "dynasor_sgl.launch.config",
    "dynasor_sgl.worker": "dynasor_sgl.launch.worker",
    "dynasor_sgl.model": "dynasor_sgl.launch.model",
    "dynasor_sgl.steptrace": "dynasor_sgl.launch.steptrace",
    "dynasor_sgl.cli_bench": "dynasor_sgl.cli.bench",
    "dynasor_sgl.cli_chat": "dynasor_sgl.cli.chat",
    "dynasor_sgl.cli_common": "dynasor_sgl.cli.common",
    "dynasor_sgl.cli_eval": "dynasor_sgl.cli.eval",
    "dynasor_sgl.cli_run": "dynasor_sgl.cli.run",
}


def _warn(old: str, new: str) -> None:
    warnings.warn(
        f"{old} moved to {new}; the old path goes away in the next release "
        "(program authors: import from dynasor_sgl.lang)",
        DeprecationWarning,
        stacklevel=3,
    )


class _MovedFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds an old path in `MOVED` and loads it as the module it moved to."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        _warn(spec.name, MOVED[spec.name])
        return importlib.import_module(MOVED[spec.name])

    def exec_module(self, module: ModuleType) -> None:
        """The module it moved to has run already."""


def install() -> None:
    """Puts the finder on `sys.meta_path` once."""
    if not any(isinstance(f, _MovedFinder) for f in sys.meta_path):
        sys.meta_path.append(_MovedFinder())


def forward(package: str, module: str) -> Callable[[str], Any]:
    """A package's `__getattr__` that hands out `module`'s names (the module the package's name
    used to mean), with the warning."""

    def __getattr__(name: str) -> Any:
        target = importlib.import_module(module)
        if name.startswith("__") or not hasattr(target, name):
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        _warn(f"{package}.{name}", f"{module}.{name}")
        return getattr(target, name)

    return __getattr__
