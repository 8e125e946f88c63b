"""`dynasor-sgl bench online --simulate`: the real benchmark's outputs from the simulator,
and user mistakes as one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from dynasor_sgl.cli.main import main
from dynasor_sgl.sim.profile import Profile, load_profile, save_profile
from dynasor_sgl.sim.synthetic import synthetic_traces

PROFILES = Path(__file__).parents[2] / "bench" / "profiles"


def test_simulated_bench_writes_the_real_benchmarks_outputs(tmp_path: Path) -> None:
    out = tmp_path / "sim"
    args = ["bench", "online", "--simulate", str(PROFILES / "gpu-a100-llama3-8b.json")]
    args += ["--out", str(out), "--programs", "8", "--rates", "0.5,2", "--workers", "2"]
    args += ["--systems", "sglang,dynasor", "--traces", "synthetic:mix"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "SIMULATED" in result.output and "dynasor" in result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["simulated"] and set(summary["max_rate_at_target"]) == {"sglang", "dynasor"}
    assert summary["settings"]["workers"] == 2
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    programs = [r for r in rows if r["kind"] == "program"]
    assert len(programs) == 2 * 2 * 8 and all(r["simulated"] for r in programs)
    assert {r["algorithm"] for r in programs} == {"sc", "mcts", "rebase"}
    assert rows[0]["settings"]["simulate"]["traces"]["mcts"]["synthetic"] is True
    assert (out / "attainment_vs_rate.png").stat().st_size > 0


def test_a_bad_profile_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps(
            {
                "name": "x",
                "base_s": 0.1,
                "per_request_s": 0.0,
                "per_prefill_token_s": 0.0,
                "speed": 3,
            }
        )
    )
    args = ["bench", "online", "--simulate", str(bad), "--out", str(tmp_path / "o")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1
    assert "unknown profile keys: ['speed']" in result.output
    assert "Traceback" not in result.output


def test_profiles_round_trip_and_are_checked(tmp_path: Path) -> None:
    p = Profile("t", 0.01, 0.001, 0.0001, source={"base_s": "made up"})
    save_profile(p, tmp_path / "p.json")
    assert load_profile(tmp_path / "p.json") == p
    with pytest.raises(ValueError, match="base_s must be a number >= 0"):
        Profile("t", -1.0, 0.1, 0.0)
    with pytest.raises(ValueError, match="cannot read profile"):
        load_profile(tmp_path / "missing.json")
    for path in PROFILES.glob("*.json"):
        profile = load_profile(path)
        assert {"base_s", "per_request_s", "per_prefill_token_s"} <= set(profile.source)


def test_synthetic_traces_are_seeded_and_labelled() -> None:
    a, b = synthetic_traces("mcts", 5, seed=3), synthetic_traces("mcts", 5, seed=3)
    assert a == b and a != synthetic_traces("mcts", 5, seed=4)
    assert all(t.source == "synthetic:mcts" and len(t.units) == 15 for t in a)
    assert all(u.reward is not None and 0 <= u.reward <= 1 for t in a for u in t.units)
    with pytest.raises(ValueError, match="unknown synthetic workload"):
        synthetic_traces("nope", 1, seed=0)
