"""Let torchvision import next to a CPU build of torch.

Every Linux x86_64 torchvision wheel on PyPI links CUDA libraries. Next to the CPU torch its C
extension fails to load, and `import torchvision` then dies in `torchvision/_meta_registrations.py`
with `RuntimeError: operator torchvision::nms does not exist`: that module registers fake kernels
for `torchvision::nms` and `torchvision::qnms` without checking that the ops exist. SGLang imports
torchvision unconditionally, so the worker cannot start.

This module is copied into site-packages as `_dynasor_torchvision_shim.py` and imported by a `.pth`
file (see `dynasor_sgl.compat`). It installs a meta-path hook that, right before
`torchvision._meta_registrations` runs, defines the two missing op schemas. Text serving never
calls them. It is self-contained (stdlib + torch only) because it runs at interpreter start-up.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from types import ModuleType

_TARGET = "torchvision._meta_registrations"
_SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}
_keep: list[object] = []  # torch.library.Library objects must stay alive to keep their ops


def _define_missing_ops() -> None:
    import torch

    missing = [
        n for n in _SCHEMAS if not torch._C._jit_get_schemas_for_operator(f"torchvision::{n}")
    ]
    if not missing:
        return
    lib = torch.library.Library("torchvision", "FRAGMENT")
    for name in missing:
        lib.define(_SCHEMAS[name])
    _keep.append(lib)


class _Loader(importlib.abc.Loader):
    def __init__(self, inner: importlib.abc.Loader) -> None:
        self._inner = inner

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._inner.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        _define_missing_ops()
        self._inner.exec_module(module)


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):  # type: ignore[no-untyped-def]
        if fullname != _TARGET:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return None
        spec.loader = _Loader(spec.loader)
        return spec


def install() -> None:
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
