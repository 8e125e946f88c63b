"""The torchvision hook: installed for CPU torch, and torchvision then imports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from dynasor_sgl.compat import PTH_NAME, SHIM_MODULE, install_torchvision_shim, torch_is_cpu_build

pytestmark = pytest.mark.io  # sockets, subprocesses or a served router


def test_install_writes_module_and_pth(tmp_path: Path) -> None:
    assert install_torchvision_shim(tmp_path, force=True)
    assert (tmp_path / f"{SHIM_MODULE}.py").is_file()
    assert (tmp_path / PTH_NAME).read_text().startswith(f"import {SHIM_MODULE}")
    assert install_torchvision_shim(tmp_path, force=True)  # idempotent


@pytest.mark.skipif(
    not torch_is_cpu_build(), reason="a GPU set-up (make setup-gpu): torchvision needs no hook"
)
def test_torchvision_imports_next_to_cpu_torch() -> None:
    code = (
        "import torchvision, torch; "
        "print(len(torch._C._jit_get_schemas_for_operator('torchvision::nms')))"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert int(res.stdout.strip().splitlines()[-1]) >= 1
