"""`dynasor-sgl bench online` end to end against the fake SGLang worker: SGLang alone (direct)
and a real router subprocess (dynasor), the base deadline measured, reports written, and a
re-run that resumes: finished runs are skipped, a run without its end line is redone.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from fake_worker import FakeWorker
from lang_harness import fake_worker_thread

from dynasor_sgl.cli.main import main
from dynasor_sgl.online.mixes import MIXES
from dynasor_sgl.online.plots import FIGURES

pytestmark = [pytest.mark.io, pytest.mark.filterwarnings("ignore:Error in stream_executor")]


@pytest.fixture(scope="module")
def worker() -> Iterator[FakeWorker]:
    with fake_worker_thread(0.002) as fake:
        yield fake


def bench(out: Path, url: str, systems: str = "sglang,dynasor") -> list[str]:
    return [
        "bench",
        "online",
        "--out",
        str(out),
        "--worker-url",
        url,
        "--systems",
        systems,
        "--programs",
        "3",
        "--rates",
        "4,8",
        "--cap",
        "2",
        "--max-tokens",
        "3",
        "--dataset",
        "synth:add1",
        "--slo-scale",
        "50",
    ]


def rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def test_bench_runs_reports_and_resumes(worker: FakeWorker, tmp_path: Path) -> None:
    out = tmp_path / "bench"
    first = CliRunner().invoke(main, bench(out, worker.url))
    assert first.exit_code == 0, first.output
    assert "max rate with ≥90% on time" in first.output and "dynasor" in first.output
    programs = [r for r in rows(out) if r["kind"] == "program"]
    assert len(programs) == 2 * 2 * 3
    assert {(r["system"], r["rate"]) for r in programs} == {
        (s, r) for s in ("sglang", "dynasor") for r in (4.0, 8.0)
    }
    assert all(r["status"] == "ok" and r["steps"] == 2 for r in programs)
    assert all(r["router_tokens"] is None for r in programs if r["system"] == "sglang")
    assert all(r["router_tokens"] for r in programs if r["system"] == "dynasor")
    base = next(r for r in rows(out) if r["kind"] == "base")
    assert len(base["latencies"]) == 3 and base["base_deadline_s"] > 0
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["systems"]) == {"sglang", "dynasor"}
    assert summary["max_rate_at_target"]["sglang"]["ratio_to_sglang"] == 1.0
    assert all((out / f"{name}.png").stat().st_size > 0 for name in FIGURES)
    assert "| sglang |" in (out / "summary.md").read_text()

    requests = len(worker.generate_bodies)
    again = CliRunner().invoke(main, bench(out, worker.url))
    assert again.exit_code == 0, again.output
    assert len(worker.generate_bodies) == requests  # nothing ran twice
    assert len([r for r in rows(out) if r["kind"] == "program"]) == 12

    kept = [
        r
        for r in rows(out)
        if not (r["kind"] == "run" and r["system"] == "sglang" and r["rate"] == 8.0)
    ]
    (out / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in kept))
    redo = CliRunner().invoke(main, bench(out, worker.url))
    assert redo.exit_code == 0, redo.output
    after = [r for r in rows(out) if r["kind"] == "program"]
    assert len(after) == 12  # the unfinished run was dropped and redone, not duplicated
    assert len(worker.generate_bodies) > requests


def test_other_settings_in_the_same_folder_are_refused(worker: FakeWorker, tmp_path: Path) -> None:
    out = tmp_path / "bench"
    args = [*bench(out, worker.url, "sglang"), "--base-deadline", "5"]
    assert CliRunner().invoke(main, args).exit_code == 0
    other = CliRunner().invoke(main, [*args[:-1], "6"])
    assert other.exit_code == 1
    assert "other settings" in other.output


def test_repeats_run_interleaved_and_a_later_repeat_adds_only_its_runs(
    worker: FakeWorker, tmp_path: Path
) -> None:
    out = tmp_path / "bench"
    args = [*bench(out, worker.url), "--base-deadline", "5", "--repeat", "2"]
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 0, first.output
    runs = [(r["repeat"], r["rate"], r["system"]) for r in rows(out) if r["kind"] == "run"]
    assert runs == [
        (0, 4.0, "sglang"),
        (0, 4.0, "dynasor"),
        (0, 8.0, "dynasor"),
        (0, 8.0, "sglang"),
        (1, 4.0, "dynasor"),
        (1, 4.0, "sglang"),
        (1, 8.0, "sglang"),
        (1, 8.0, "dynasor"),
    ]
    programs = [r for r in rows(out) if r["kind"] == "program"]
    assert len(programs) == 8 * 3
    assert {r["program"] for r in programs} == {"self-consistency"}
    assert "(median of 2 repeats)" in first.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["repeats"] == [0, 1]
    merit = summary["max_rate_at_target"]["dynasor"]
    assert len(merit["rate_per_repeat"]) == len(merit["ratio_per_repeat"]) == 2
    assert summary["runs"]["dynasor"]["4.0"]["repeats"] == 2

    requests = len(worker.generate_bodies)
    third = CliRunner().invoke(main, [*args[:-1], "3"])
    assert third.exit_code == 0, third.output
    runs = [(r["repeat"], r["rate"], r["system"]) for r in rows(out) if r["kind"] == "run"]
    assert runs[8:] == [
        (2, 4.0, "sglang"),
        (2, 4.0, "dynasor"),
        (2, 8.0, "dynasor"),
        (2, 8.0, "sglang"),
    ]
    assert len(worker.generate_bodies) > requests


def test_the_mixed_workload_runs_each_program_with_its_own_base_deadline(
    worker: FakeWorker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The fake worker has no logprob texts for MCTS's judge: the mix's MCTS part becomes a
    # second self-consistency part of another cap (the mechanism is the same for any part).
    sc, _, cot = MIXES["mixed"]
    parts = (sc, dataclasses.replace(sc, label="sc-cap-3", cap=3), cot)
    monkeypatch.setitem(MIXES, "mixed", parts)
    out = tmp_path / "mixed"
    args = ["bench", "online", "--out", str(out), "--worker-url", worker.url]
    args += ["--workload", "mixed", "--systems", "sglang", "--programs", "3", "--rates", "8"]
    args += ["--slo-scale", "50"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    base = next(r for r in rows(out) if r["kind"] == "base")
    labels = ["self-consistency", "sc-cap-3", "cot-probe"]
    assert list(base["bases"]) == labels
    programs = sorted((r for r in rows(out) if r["kind"] == "program"), key=lambda r: r["index"])
    assert [r["program"] for r in programs] == labels
    assert all(r["status"] == "ok" for r in programs), programs
    assert [r["base_deadline_s"] for r in programs] == [
        base["bases"][r["program"]] for r in programs
    ]
    assert [r["cap"] for r in programs] == [10, 3, 192]
    summary = json.loads((out / "summary.json").read_text())
    by_program = summary["runs"]["sglang"]["8.0"]["accuracy_by_program"]
    assert set(by_program) == set(labels)
    assert all(v["total"] == 1 for v in by_program.values())
    assert "## Accuracy per program" in (out / "summary.md").read_text()
