"""The profile fitted to a worker speed sweep or to step traces (`sim.sweep`), on sweeps whose
points lie exactly on a known model: decode step 0.1 + 0.01·B s (B decoding requests),
prefill step 0.2 + 0.001·P s (P prompt tokens, one request).

With 10-token requests a batch of 1 takes 10 steps of 0.11 s (1.1 s) and a batch of 2 takes
10 of 0.12 s (1.2 s); a 100-token prefill takes 0.3 s and a 200-token one 0.4 s.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dynasor_sgl.sim.profile import Profile
from dynasor_sgl.sim.sweep import (
    PREFILL_GUESS_S,
    fit_profile,
    fit_profile_from_steps,
    knee,
    step_points,
    step_summary,
)

RUNS = [{"concurrency": 1, "wall_s": 1.1}, {"concurrency": 2, "wall_s": 1.2}]
PREFILL = [{"prompt_tokens": 100, "wall_s": 0.3}, {"prompt_tokens": 200, "wall_s": 0.4}]
SWEEP: dict[str, Any] = {
    "model": "SmolLM2",
    "device": "cpu",
    "machine": {"cpu": "x86_64"},
    "new_tokens": 10,
    "runs": RUNS,
    "prefill": PREFILL,
}


def test_knee_is_the_least_concurrency_within_the_fraction_of_the_best() -> None:
    runs = [
        {"concurrency": 1, "tokens_per_s": 10.0},
        {"concurrency": 2, "tokens_per_s": 18.0},
        {"concurrency": 4, "tokens_per_s": 27.0},
        {"concurrency": 8, "tokens_per_s": 30.0},
    ]
    assert knee(runs) == 4  # 27 >= 0.9 × 30; 18 is not
    assert knee(runs, fraction=1.0) == 8
    assert knee(runs, fraction=0.5) == 2  # 18 >= 15; 10 is not
    with pytest.raises(ValueError):
        knee([])


def test_step_points_are_decode_steps_and_prefill_requests() -> None:
    points = step_points(SWEEP)
    assert [(b, p) for b, p, _ in points] == [(1, 0), (2, 0), (0, 100), (0, 200)]
    assert [t for _, _, t in points] == pytest.approx([0.11, 0.12, 0.3, 0.4])


def test_a_sweep_with_prefill_is_fitted_decode_and_prefill_apart() -> None:
    p = fit_profile(SWEEP, "sweep.json")
    assert p.name == "cpu-smollm2"
    assert (p.base_s, p.per_request_s) == pytest.approx((0.1, 0.01))
    assert (p.prefill_base_s, p.per_prefill_token_s) == pytest.approx((0.2, 0.001))
    assert p.prefill_budget == 8192 and p.kv_tokens == 65536
    assert p.source["base_s"] == (
        "least squares over 2 decode points (wall / new tokens at each concurrency, "
        "10-token requests) from sweep.json"
    )
    assert p.source["per_prefill_token_s"].startswith("least squares over 2 prefill points")
    assert p.source["machine"] == "x86_64, device cpu"


def test_a_sweep_without_prefill_is_provisional() -> None:
    p = fit_profile({**SWEEP, "prefill": []}, "old.json")
    assert p.name == "cpu-smollm2-provisional"
    assert (p.base_s, p.per_request_s) == pytest.approx((0.1, 0.01))
    assert p.per_prefill_token_s == PREFILL_GUESS_S and p.prefill_base_s is None
    assert p.source["per_prefill_token_s"].startswith("PROVISIONAL GUESS")
    assert p.source["prefill_base_s"] == "not measured: base_s"


def write_trace(path: Path) -> Path:
    """The model's four steps (decode B = 1, 2; prefill P = 100, 200), 1 s apart."""
    steps = [("decode", 1, 0, 0.11), ("decode", 2, 0, 0.12)]
    steps += [("extend", 1, 100, 0.3), ("extend", 1, 200, 0.4)]
    lines = [
        {"mode": m, "batch": b, "new_tokens": n, "t": float(i), "run_end": i + s}
        for i, (m, b, n, s) in enumerate(steps)
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def test_step_traces_give_the_split_model(tmp_path: Path) -> None:
    trace = write_trace(tmp_path / "steps.jsonl")
    p = fit_profile_from_steps({}, [trace], "recorded elsewhere")
    assert p.name == "cpu-worker" and p.prefill_budget == 2048
    assert (p.base_s, p.per_request_s) == pytest.approx((0.1, 0.01))
    assert (p.prefill_base_s, p.per_prefill_token_s) == pytest.approx((0.2, 0.001))
    assert p.per_new_request_s == 0.0  # one request per prefill: no variation to fit
    assert "the 2 decode and 2 prefill steps" in p.source["base_s"]
    served = fit_profile_from_steps(
        {"model": "M", "server": {"chunked_prefill_size": 4096}}, [trace], "s"
    )
    assert served.name == "cpu-m" and served.prefill_budget == 4096
    assert "get_server_info" in served.source["prefill_budget"]


def test_step_traces_without_prefill_steps_are_refused(tmp_path: Path) -> None:
    trace = tmp_path / "decode.jsonl"
    trace.write_text(json.dumps({"mode": "decode", "batch": 1, "t": 0.0, "run_end": 0.1}) + "\n")
    with pytest.raises(ValueError, match="0 extend"):
        fit_profile_from_steps({}, [trace], "s")


def test_step_summary_in_ms_and_us() -> None:
    p = Profile("p", 0.0491, 0.00419, 0.000516, per_new_request_s=0.004407, prefill_base_s=0.0561)
    assert step_summary(p) == (
        "decode step = 49.1 ms + 4.19 ms/request; prefill step = 56.1 ms + 4.41 ms/request "
        "+ 516 us/token"
    )
    # no prefill cost of its own: a prefill step's fixed cost is the decode step's
    plain = Profile("p", 0.05, 0.004, 0.0002)
    assert step_summary(plain).endswith("prefill step = 50.0 ms + 0.00 ms/request + 200 us/token")
