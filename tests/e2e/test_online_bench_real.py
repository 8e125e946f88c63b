"""`dynasor-sgl bench online --quick` against the session's real SGLang worker: SGLang alone,
Parrot-style FIFO and Dynasor on one Poisson trace, twice, interleaved; results complete,
summary per system with its figure per repeat. Small knobs (cap 4, 16-token samples) keep it
a test, not a benchmark."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from dynasor_sgl.cli.main import main
from dynasor_sgl.online.plots import FIGURES

pytestmark = [pytest.mark.e2e, pytest.mark.filterwarnings("ignore:Error in stream_executor")]

SYSTEMS = ("sglang", "parrot", "dynasor")
PROGRAMS = 3
REPEATS = 2


def test_quick_bench_on_the_real_worker(worker_url: str, tmp_path: Path) -> None:
    out = tmp_path / "online"
    args = [
        "bench",
        "online",
        "--quick",
        "--out",
        str(out),
        "--worker-url",
        worker_url,
        "--systems",
        ",".join(SYSTEMS),
        "--programs",
        str(PROGRAMS),
        "--repeat",
        str(REPEATS),
        "--cap",
        "4",
        "--max-tokens",
        "16",
        "--rates",
        "0.5,1",
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "max rate with ≥90% on time" in result.output

    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    programs = [r for r in rows if r["kind"] == "program"]
    rates = (0.5, 1.0)
    assert len(programs) == len(SYSTEMS) * len(rates) * PROGRAMS * REPEATS
    for r in programs:
        assert r["status"] == "ok", r
        assert r["latency_s"] > 0 and r["tokens"] > 0
        assert r["correct"] in (True, False)
        assert r["exit_reason"] in ("cap", "threshold", "posterior", "completed")
        assert 1 <= r["steps"] <= r["cap"] == 4
    baseline = [r for r in programs if r["system"] in ("sglang", "parrot")]
    assert all(r["steps"] == 4 for r in baseline)  # run to the cap
    assert all(r["router_tokens"] for r in programs if r["system"] != "sglang")
    assert all(r["wait_s"] is not None for r in programs)  # the real worker reports latency
    runs = [(r["repeat"], r["rate"], r["system"]) for r in rows if r["kind"] == "run"]
    assert sorted(runs) == sorted(
        (k, rate, s) for k in range(REPEATS) for s in SYSTEMS for rate in rates
    )
    assert [s for _, _, s in runs[:6]] == [*SYSTEMS, *reversed(SYSTEMS)]  # interleaved
    assert {r["program"] for r in programs} == {"self-consistency"}

    summary = json.loads((out / "summary.json").read_text())
    assert summary["base_deadline_s"] > 0
    assert set(summary["systems"]) == set(SYSTEMS)
    assert set(summary["max_rate_at_target"]) == set(SYSTEMS)
    for merit in summary["max_rate_at_target"].values():
        assert len(merit["rate_per_repeat"]) == REPEATS
    assert summary["runs"]["dynasor"]["0.5"]["accuracy_pooled"]["total"] == PROGRAMS * REPEATS
    assert all((out / f"{name}.png").exists() for name in FIGURES)
    assert all(f"| {s} |" in (out / "summary.md").read_text() for s in SYSTEMS)
