"""Environment compatibility fixes that the CPU SGLang stack needs, and their installer.

Owns the torchvision import hook (see `torchvision_shim`). It knows nothing about serving.
`python -m dynasor_sgl.compat install` puts the hook into the active environment's site-packages
when torch is a CPU build and removes it otherwise; running it twice is harmless.
"""

from __future__ import annotations

import logging
import shutil
import sysconfig
from pathlib import Path

logger = logging.getLogger(__name__)

SHIM_MODULE = "_dynasor_torchvision_shim"
PTH_NAME = "dynasor_torchvision_shim.pth"


def _site_packages() -> Path:
    return Path(sysconfig.get_paths()["purelib"])


def torch_is_cpu_build() -> bool:
    """True when torch is installed and was built without CUDA or ROCm."""
    try:
        import torch
    except ImportError:
        return False
    return torch.version.cuda is None and getattr(torch.version, "hip", None) is None


def install_torchvision_shim(site: Path | None = None, *, force: bool = False) -> bool:
    """Install (CPU torch) or remove (GPU torch) the torchvision hook. Returns True if installed."""
    site = site or _site_packages()
    module_path = site / f"{SHIM_MODULE}.py"
    pth_path = site / PTH_NAME
    if not (force or torch_is_cpu_build()):
        for p in (module_path, pth_path):
            p.unlink(missing_ok=True)
        return False
    shutil.copyfile(Path(__file__).with_name("torchvision_shim.py"), module_path)
    pth_path.write_text(f"import {SHIM_MODULE}; {SHIM_MODULE}.install()\n")
    return True
