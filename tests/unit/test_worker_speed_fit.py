"""bench/worker_speed_fit.py on hand-made results dicts: a new results file with context runs
fits all five step terms at once; an older one (no context runs) fits as before, context 0."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from dynasor_sgl.sim.profile import fit_split_step_model


def _load() -> ModuleType:
    path = Path(__file__).parents[2] / "bench" / "worker_speed_fit.py"
    spec = importlib.util.spec_from_file_location("worker_speed_fit", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


FIT = _load()
TRUTH = {"base": 0.05, "prefill_base": 0.07, "req": 0.004, "ctx": 2e-5, "tok": 5e-4}


def _run(b: int, prompt: int, new: int) -> dict[str, float]:
    """A decode run's wall time under TRUTH: 1 prefill step of b·prompt tokens, then new - 1
    decode steps of b requests whose contexts are prompt + k at step k."""
    prefill = TRUTH["prefill_base"] + TRUTH["tok"] * b * prompt
    decode = sum(
        TRUTH["base"] + b * (TRUTH["req"] + TRUTH["ctx"] * (prompt + k)) for k in range(1, new)
    )
    return {
        "concurrency": b,
        "prompt_tokens": b * prompt,
        "new_tokens": new,
        "wall_s": prefill + decode,
    }


def _result(context: bool) -> dict:
    runs = [_run(b, 12, 128) for b in (1, 4, 16)]
    return {
        "model": "M",
        "device": "cpu",
        "machine": {"cpu": "x86"},
        "new_tokens": 128,
        "runs": runs if context else [{k: r[k] for k in ("concurrency", "wall_s")} for r in runs],
        "prefill": [
            {"prompt_tokens": p, "wall_s": TRUTH["prefill_base"] + TRUTH["tok"] * p}
            for p in (64, 1024)
        ],
        **({"context": [_run(b, 512, 32) for b in (1, 8)]} if context else {}),
    }


def test_context_runs_recover_every_term() -> None:
    p = FIT.fit_profile(_result(context=True), "hand-made")
    assert p.base_s == pytest.approx(0.05, abs=1e-6)
    assert p.prefill_base_s == pytest.approx(0.07, abs=1e-6)
    assert p.per_request_s == pytest.approx(0.004, abs=1e-6)
    assert p.per_context_token_s == pytest.approx(2e-5, abs=1e-9)
    assert p.per_prefill_token_s == pytest.approx(5e-4, abs=1e-7)
    assert "512" in p.source["per_context_token_s"] and "set to 0" not in p.source["base_s"]


def test_an_older_results_file_fits_as_before_with_no_context_term() -> None:
    result = _result(context=False)
    p = FIT.fit_profile(result, "old.json")
    base, per_request, prefill_base, per_token = fit_split_step_model(FIT.step_points(result))
    assert (p.base_s, p.per_request_s) == (round(base, 6), round(per_request, 6))
    assert (p.prefill_base_s, p.per_prefill_token_s) == (
        round(prefill_base, 6),
        round(per_token, 7),
    )
    assert p.per_context_token_s == 0.0
    assert p.source["per_context_token_s"].startswith("0: no decode at a second context length")
