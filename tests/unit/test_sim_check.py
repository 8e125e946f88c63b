"""The whole validation (`sim.check`) against a committed result: the real run A of
docs/results/sim/rerun-6 (four systems at 1 program/s, one `priority` worker) simulated per
run on its worker's step trace, the router's cost calibrated on parrot, gives the document
committed beside it (1s-A-run.json, made by bench/sim_validate.py before the method moved
into the package): identical here, to 1e-9 wherever numpy's BLAS rounds a fit's last bit
otherwise. The committed run lived at /tmp/exp/A."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from dynasor_sgl.sim.check import CheckSpec, check, summary
from dynasor_sgl.sim.profile import load_profile

ROOT = Path(__file__).resolve().parents[2]
RUN = ROOT / "docs" / "results" / "sim" / "rerun-6"
PROFILE = ROOT / "bench" / "profiles" / "cpu-smollm2-135m.json"


def close(value: Any) -> Any:
    """`value` with every float as pytest.approx of it (rel 1e-9), for ==."""
    if isinstance(value, float):
        return pytest.approx(value, rel=1e-9)
    if isinstance(value, dict):
        return {k: close(v) for k, v in value.items()}
    if isinstance(value, list):
        return [close(v) for v in value]
    return value


def unpack(folder: Path) -> Path:
    """Run A in the layout `bench online` writes."""
    trace = folder / "logs" / "worker-priority" / "steps.jsonl"
    trace.parent.mkdir(parents=True)
    shutil.copy(RUN / "real-1s-A.jsonl", folder / "results.jsonl")
    with gzip.open(RUN / "steps-1s-A-priority.jsonl.gz", "rb") as f:
        trace.write_bytes(f.read())
    return folder


def test_run_a_per_run_and_calibrated_on_parrot_is_the_committed_result(tmp_path: Path) -> None:
    real = unpack(tmp_path / "A")
    spec = CheckSpec(
        real=real,
        profile=load_profile(PROFILE),
        out=tmp_path / "sim_validation",
        calibrate_on=("parrot",),
        per_run=True,
    )
    result = check(spec)
    text = json.dumps(result.doc, indent=2).replace(str(real), "/tmp/exp/A") + "\n"
    committed = json.loads((RUN / "1s-A-run.json").read_text())
    # equal to the last digit here; to 1e-9 where another BLAS rounds a fit's last bit apart
    assert json.loads(text) == close(committed)
    assert result.calibrated is not None
    assert result.calibrated.to_dict() == result.doc["profile"]
    assert len(result.records) == 4 * 30  # every program of every run
    assert summary(result.doc, "p.json").startswith("3 held-out real runs vs simulated on p.json")


def test_a_real_run_without_step_traces_cannot_be_simulated_per_run(tmp_path: Path) -> None:
    real = tmp_path / "A"
    real.mkdir()
    shutil.copy(RUN / "real-1s-A.jsonl", real / "results.jsonl")
    spec = CheckSpec(real, load_profile(PROFILE), tmp_path / "out", per_run=True)
    with pytest.raises(ValueError, match="no step traces"):
        check(spec)
