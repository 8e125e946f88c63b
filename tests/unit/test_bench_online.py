"""The online benchmark's pure parts on hand-made data: arrivals, deadlines, difficulty, metrics,
the summary, resume; the open loop with a fake program; the system table and the CLI's errors.
"""

from __future__ import annotations

import itertools
import json
import threading
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from dynasor_sgl.cli.main import main
from dynasor_sgl.eval.datasets import Item
from dynasor_sgl.online import metrics as m
from dynasor_sgl.online.config import BenchConfig
from dynasor_sgl.online.report import markdown, one_line, summarize
from dynasor_sgl.online.results import BenchResults, ResultsError, resume, rows_before_append
from dynasor_sgl.online.runner import run_open_loop
from dynasor_sgl.online.session import plan
from dynasor_sgl.online.systems import (
    DEFAULT_SYSTEMS,
    RUN_TO_CAP,
    SYSTEMS,
    System,
    parse_systems,
    policy_for,
    router_command,
)
from dynasor_sgl.online.workload import (
    Arrival,
    arrival_offsets,
    deadline_s,
    difficulty_of,
    load_difficulty,
    workload,
)
from dynasor_sgl.router.config import RouterConfig

ITEMS = [Item(f"q{i}", f"question {i}?", str(i)) for i in range(3)]

# -- arrivals, deadlines, difficulty -----------------------------------------------------------


def test_arrivals_are_seeded_and_start_at_zero() -> None:
    a = arrival_offsets(10, 2.0, seed=7)
    assert a == arrival_offsets(10, 2.0, seed=7)
    assert a != arrival_offsets(10, 2.0, seed=8)
    assert a[0] == 0.0
    assert all(x < y for x, y in itertools.pairwise(a))


def test_a_higher_rate_replays_the_same_trace_compressed() -> None:
    slow, fast = arrival_offsets(8, 0.5, seed=1), arrival_offsets(8, 2.0, seed=1)
    assert fast == pytest.approx([x / 4 for x in slow])


def test_mean_gap_is_one_over_the_rate() -> None:
    n, rate = 20_000, 4.0
    offsets = arrival_offsets(n, rate, seed=0)
    assert offsets[-1] / (n - 1) == pytest.approx(1 / rate, rel=0.03)


@pytest.mark.parametrize(("n", "rate"), [(0, 1.0), (5, 0.0), (5, -1.0)])
def test_bad_arrival_parameters_are_refused(n: int, rate: float) -> None:
    with pytest.raises(ValueError):
        arrival_offsets(n, rate, seed=0)


def test_workload_cycles_questions_and_defaults_difficulty_to_one() -> None:
    trace = workload(ITEMS, 5, 1.0, seed=0, difficulty={"q1": 3})
    assert [a.item.id for a in trace] == ["q0", "q1", "q2", "q0", "q1"]
    assert [a.difficulty for a in trace] == [1, 3, 1, 1, 3]
    assert [a.index for a in trace] == list(range(5))


def test_deadline_is_scale_times_difficulty_times_base() -> None:
    assert deadline_s(2.0, 3, 1.5) == pytest.approx(9.0)
    for bad in ((0.0, 1, 1.0), (1.0, 4, 1.0), (1.0, 1, 0.0)):
        with pytest.raises(ValueError):
            deadline_s(*bad)


@pytest.mark.parametrize(
    ("correct", "expected"),
    [([True, True], 1), ([True, False, True], 2), ([False, False], 3), ([], 1), ([False], 3)],
)
def test_difficulty_of_sample_correctness(correct: list[bool], expected: int) -> None:
    assert difficulty_of(correct) == expected


def test_difficulty_from_an_eval_results_file(tmp_path: Path) -> None:
    path = tmp_path / "eval.jsonl"
    rows = [
        {"kind": "run", "settings": {}},
        {
            "question_id": "a",
            "policy": "baseline",
            "status": "ok",
            "gold": "7",
            "details": {"answers": ["7", "7", "7"]},
        },
        {
            "question_id": "b",
            "policy": "baseline",
            "status": "ok",
            "gold": "7",
            "details": {"answers": ["7", "8", None]},
        },
        {
            "question_id": "c",
            "policy": "baseline",
            "status": "ok",
            "gold": "7",
            "details": {"answers": ["1", None]},
        },
        {"question_id": "d", "policy": "baseline", "status": "ok", "gold": "7", "correct": True},
        {"question_id": "e", "policy": "baseline", "status": "error"},
        {"question_id": "a", "policy": "dynasor", "status": "ok", "gold": "7", "correct": False},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert load_difficulty(path) == {"a": 1, "b": 2, "c": 3, "d": 1}


def test_a_difficulty_file_without_baseline_records_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "eval.jsonl"
    path.write_text(json.dumps({"question_id": "a", "policy": "dynasor", "status": "ok"}) + "\n")
    with pytest.raises(ValueError, match="baseline"):
        load_difficulty(path)
    with pytest.raises(ValueError, match="does not exist"):
        load_difficulty(tmp_path / "missing.jsonl")


# -- metrics -------------------------------------------------------------------------------------


def rec(
    latency: float,
    *,
    difficulty: int = 1,
    base: float = 10.0,
    status: str = "ok",
    tokens: int = 100,
    correct: bool | None = True,
    wait: float | None = None,
    system: str = "s",
    rate: float = 1.0,
) -> dict[str, Any]:
    return {
        "system": system,
        "rate": rate,
        "status": status,
        "latency_s": latency,
        "difficulty": difficulty,
        "base_deadline_s": base,
        "tokens": tokens,
        "correct": correct,
        "wait_s": wait,
        "exit_reason": "cap",
    }


def test_meets_scales_the_deadline_by_difficulty() -> None:
    assert m.meets(rec(20.0), 2.0)  # 20 <= 2 × 1 × 10
    assert not m.meets(rec(20.1), 2.0)
    assert m.meets(rec(55.0, difficulty=3), 2.0)  # 55 <= 2 × 3 × 10
    assert not m.meets(rec(1.0, status="error"), 2.0)  # a failed program never meets it


def test_attainment_counts_failures_as_misses() -> None:
    records = [rec(5.0), rec(15.0), rec(25.0), rec(1.0, status="error")]
    assert m.attainment(records, 1.0) == 0.25
    assert m.attainment(records, 2.0) == 0.5
    assert m.attainment(records, 3.0) == 0.75
    assert m.attainment([], 1.0) is None


def test_max_rate_interpolates_between_measured_rates() -> None:
    rate, how = m.max_rate([(2.0, 0.7), (1.0, 1.0)])
    assert how == "interpolated"
    assert rate == pytest.approx(1.0 + (1.0 - 0.9) / (1.0 - 0.7) * 1.0)


def test_max_rate_at_the_top_is_a_lower_bound_and_none_when_never_met() -> None:
    assert m.max_rate([(1.0, 0.95), (2.0, 0.9)]) == (2.0, "highest measured")
    assert m.max_rate([(1.0, 0.5), (2.0, 0.2)]) == (None, "none")
    assert m.max_rate([]) == (None, "none")


def test_max_rate_takes_the_highest_meeting_rate_of_a_bumpy_curve() -> None:
    rate, how = m.max_rate([(1.0, 1.0), (2.0, 0.8), (3.0, 0.95), (4.0, 0.5)])
    assert how == "interpolated"
    assert rate == pytest.approx(3.0 + 0.05 / 0.45)


def test_ratio_and_percentiles() -> None:
    assert m.ratio(3.0, 2.0) == 1.5
    assert m.ratio(None, 2.0) is None and m.ratio(1.0, 0.0) is None and m.ratio(1.0, None) is None
    values = [4.0, 1.0, 3.0, 2.0]
    assert m.percentile(values, 50) == 2.5
    assert m.percentile(values, 0) == 1.0 and m.percentile(values, 100) == 4.0
    assert m.percentile(values, 90) == pytest.approx(3.7)
    assert m.percentile([], 50) is None


def test_fairness_is_latency_per_token_and_its_cdf() -> None:
    records = [
        rec(10.0, tokens=100),
        rec(4.0, tokens=10),
        rec(3.0, status="error"),
        rec(1.0, tokens=0),
    ]
    assert m.fairness(records) == [0.1, 0.4]
    assert m.cdf([0.4, 0.1]) == ([0.1, 0.4], [0.5, 1.0])


def test_accuracy_tokens_and_wait() -> None:
    records = [
        rec(1.0, correct=True, tokens=10, wait=0.5),
        rec(1.0, correct=False, tokens=30),
        rec(1.0, status="error", correct=None),
    ]
    assert m.accuracy(records) == pytest.approx(1 / 3)
    assert m.mean_tokens(records) == 20.0
    assert m.mean_wait(records) == 0.5
    assert m.mean_wait([rec(1.0)]) is None


# -- summary -------------------------------------------------------------------------------------


def records_of_two_systems() -> list[dict[str, Any]]:
    """sglang: on time at rate 1 only; dynasor: on time at 1 and 2, 60% at 4 (scale 1)."""
    out = []
    for rate, late in ((1.0, 0), (2.0, 5), (4.0, 10)):
        out += [rec(5.0 if i >= late else 50.0, system="sglang", rate=rate) for i in range(10)]
    for rate, late in ((1.0, 0), (2.0, 0), (4.0, 4)):
        out += [
            rec(5.0 if i >= late else 50.0, system="dynasor", rate=rate, tokens=50)
            for i in range(10)
        ]
    return out


def test_summary_has_each_system_with_its_max_rate_and_ratio() -> None:
    summary = summarize(records_of_two_systems(), {"base_deadline_s": 10.0}, slo_scale=1.0)
    merit = summary["max_rate_at_target"]
    assert merit["sglang"]["rate"] == pytest.approx(1.0 + 0.1 / 0.5)
    assert merit["dynasor"]["rate"] == pytest.approx(2.0 + 0.1 / 0.4 * 2.0)
    assert merit["dynasor"]["ratio_to_sglang"] == pytest.approx(2.5 / 1.2, abs=1e-3)
    assert summary["fixed_rate"] == 2.0
    assert summary["runs"]["dynasor"]["4.0"]["attainment"] == 0.6
    assert summary["runs"]["dynasor"]["1.0"]["mean_tokens"] == 50.0
    by_scale = dict(map(tuple, summary["attainment_vs_slo"]["sglang"]))
    assert by_scale[1.0] == 0.5 and by_scale[5.0] == 1.0
    text = markdown(summary)
    assert "| dynasor |" in text and "| sglang |" in text
    assert one_line(summary).startswith("max rate with ≥90% on time at SLO 1×: sglang 1.2/s")


# -- resume ---------------------------------------------------------------------------------------


def prog(system: str, rate: float, index: int) -> dict[str, Any]:
    return {"kind": "program", "system": system, "rate": rate, "index": index}


def run_line(system: str, rate: float, errors: int = 0) -> dict[str, Any]:
    return {"kind": "run", "system": system, "rate": rate, "programs": 2, "errors": errors}


def test_resume_keeps_finished_runs_only() -> None:
    rows = [
        {"kind": "header", "settings": {"a": 1}},
        {"kind": "base", "base_deadline_s": 3.0},
        prog("x", 1.0, 0),
        prog("x", 1.0, 1),
        run_line("x", 1.0),  # finished
        prog("x", 2.0, 0),  # half-finished: no run line
        prog("y", 1.0, 0),
        prog("y", 1.0, 1),
        run_line("y", 1.0, errors=1),  # failed program
        prog("x", 1.0, 1),  # a duplicate of a finished record
    ]
    header, kept, dropped = resume(rows)
    assert header == {"kind": "header", "settings": {"a": 1}}
    assert kept == [rows[1], prog("x", 1.0, 0), prog("x", 1.0, 1), run_line("x", 1.0)]
    assert dropped == 4


def test_results_file_resumes_and_refuses_other_settings(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    results = BenchResults(path, {"a": 1})
    results.set_base(2.5, [2.4, 2.5, 2.6], "measured")
    results.add_program({"system": "x", "rate": 0.5, "index": 0, "status": "ok"})
    results.end_run("x", 0.5, 1, 0, 3.2, started=41377.12345)
    results.add_program({"system": "x", "rate": 1.0, "index": 0, "status": "ok"})  # unfinished
    with path.open("a") as f:
        f.write('{"kind": "prog')  # a torn last line
    again = BenchResults(path, {"a": 1})
    assert again.done() == {("x", 0.5, 0)}
    assert again.base is not None and again.base["base_deadline_s"] == 2.5
    assert [r["rate"] for r in again.programs()] == [0.5]
    lines = path.read_text().splitlines()
    assert len(lines) == 4 and all(json.loads(line) for line in lines)  # header, base, 1 + run
    assert json.loads(lines[3])["started_monotonic"] == 41377.123  # the step traces' clock
    with pytest.raises(ResultsError, match="other settings"):
        BenchResults(path, {"a": 2})


def test_rows_before_append_cut_a_torn_last_line_from_the_file(tmp_path: Path) -> None:
    path = tmp_path / "records.jsonl"
    assert rows_before_append(path) == [] and not path.exists()
    path.write_text('{"q": 1}\n{"q": 2}\n{"q": ')  # a run killed mid-write
    assert rows_before_append(path) == [{"q": 1}, {"q": 2}]
    with path.open("a") as f:
        f.write('{"q": 3}\n')
    assert [json.loads(line) for line in path.read_text().splitlines()] == [
        {"q": 1},
        {"q": 2},
        {"q": 3},
    ]


# -- open loop -----------------------------------------------------------------------------------


def test_open_loop_starts_every_program_at_its_arrival_without_a_limit() -> None:
    # Each program waits at a barrier for all seven: the loop can only finish if all seven
    # run at once (a client-side limit would break the barrier after its timeout). The seventh
    # arrives 0.3 s after the others, so theirs cannot end before then: each latency is
    # counted from its own arrival.
    arrivals = [Arrival(i, ITEMS[0], 0.0) for i in range(6)] + [Arrival(6, ITEMS[1], 0.3)]
    together = threading.Barrier(7, timeout=60)

    def execute(arrival: Arrival, lag: float) -> dict[str, Any]:
        together.wait()
        if arrival.index == 3:
            raise RuntimeError("boom")
        return {"status": "ok", "lag_seen": lag}

    records: list[dict[str, Any]] = []
    wall = run_open_loop(arrivals, execute, {"system": "fake"}, records.append)
    assert not together.broken
    assert wall >= 0.3
    by_index = {r["index"]: r for r in records}
    assert set(by_index) == set(range(7))
    assert by_index[3]["status"] == "error" and "boom" in by_index[3]["error"]
    assert by_index[6]["arrival_s"] == 0.3
    assert all(by_index[i]["latency_s"] >= 0.3 for i in range(6))  # waited for the seventh
    assert by_index[6]["latency_s"] >= 0
    assert all(r["system"] == "fake" and r["start_lag_s"] >= 0 for r in records)


# -- systems, plan, config, CLI ------------------------------------------------------------------


def test_parse_systems_keeps_the_table_order_and_refuses_unknown_names() -> None:
    assert [s.name for s in parse_systems("dynasor, sglang")] == ["sglang", "dynasor"]
    with pytest.raises(ValueError, match="nope"):
        parse_systems("sglang,nope")


def test_router_command_and_policies() -> None:
    cmd = router_command(
        SYSTEMS["dynasor-deadline"], "http://w:1", 4000, priority=True, max_inflight=8
    )
    joined = " ".join(cmd)
    assert "--scheduling deadline" in joined and "--deadline-stop" in cmd
    assert "--worker-priority" in cmd and "--max-inflight-per-worker 8" in joined
    plain = router_command(SYSTEMS["parrot"], "http://w:1", 4000, priority=False, max_inflight=None)
    assert "--worker-priority" not in plain and "--max-inflight-per-worker" not in plain
    assert "--no-deadline-stop" in plain and "--deadline-stop" not in plain
    with pytest.raises(ValueError):
        router_command(SYSTEMS["sglang"], "http://w:1", 4000, priority=False, max_inflight=None)
    assert policy_for(SYSTEMS["parrot"], {"cap": 4, "thresholds": {"entropy": 0.5}}) == {
        "cap": 4,
        **RUN_TO_CAP,
    }
    assert policy_for(SYSTEMS["dynasor"], {"cap": 4}) == {"cap": 4}


def router_params(system: System) -> dict[str, Any]:
    """The options `dynasor-sgl router` parses from the argv the bench starts `system` with."""
    argv = router_command(system, "http://w:1", 4000, priority=True, max_inflight=8)
    options = argv[argv.index("router") + 1 :]
    with main.commands["router"].make_context("router", options) as ctx:
        return dict(ctx.params)


def test_every_router_system_is_one_this_router_accepts() -> None:
    routed = [s for s in SYSTEMS.values() if not s.direct]
    assert routed and tuple(SYSTEMS) == DEFAULT_SYSTEMS
    for system in routed:
        params = router_params(system)
        assert params["scheduling"] == system.scheduling
        assert params["deadline_stop"] == system.deadline_stop
        assert params["inflight_limit"] == (system.inflight_limit or RouterConfig.inflight_limit)
    with pytest.raises(click.BadParameter, match="no-such-mode"):
        router_params(System("x", "", "no-such-mode"))


def test_plan_groups_systems_by_worker_flavour(tmp_path: Path) -> None:
    notes: list[str] = []
    cfg = BenchConfig(out=tmp_path, systems=("sglang", "sglang-lpm", "parrot", "dynasor"))
    groups = [(f, [s.name for s in systems]) for f, systems in plan(cfg, notes)]
    assert groups == [
        ("priority", ["parrot", "dynasor"]),
        ("plain", ["sglang"]),
        ("lpm", ["sglang-lpm"]),
    ]
    shared = BenchConfig(
        out=tmp_path, systems=("sglang", "sglang-lpm", "dynasor"), worker_url="http://127.0.0.1:1"
    )
    notes = []
    assert [(f, [s.name for s in g]) for f, g in plan(shared, notes)] == [
        (None, ["sglang", "dynasor"])
    ]
    assert any("sglang-lpm skipped" in n for n in notes)


def test_config_validates_and_quick_overrides(tmp_path: Path) -> None:
    quick = BenchConfig.quick(out=tmp_path, cap=3)
    assert (quick.programs, quick.cap, quick.rates) == (4, 3, (0.2, 0.4))
    assert quick.systems == ("sglang", "autellix", "dynasor")  # the headline three, not all nine
    assert BenchConfig.quick(out=tmp_path, systems=("dynasor",)).systems == ("dynasor",)
    assert "rates" not in quick.settings() and "systems" not in quick.settings()
    for bad in (
        {"rates": ()},
        {"rates": (1.0, -1.0)},
        {"systems": ("nope",)},
        {"programs": 0},
        {"worker_url": "localhost:1"},
    ):
        with pytest.raises(ValueError):
            BenchConfig(out=tmp_path, **bad)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rates", "1,x"], "expected numbers"),
        (["--systems", "sglang,nope"], "unknown system"),
        (["--program", "nope"], "unknown program"),
        (["--worker-url", "localhost:1"], "http://"),
    ],
)
def test_cli_mistakes_are_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    result = CliRunner().invoke(main, ["bench", "online", "--out", str(tmp_path), *args])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_the_bench_on_its_embedded_workers_starts_from_the_embedded_models_preset(
    tmp_path: Path,
) -> None:
    from dynasor_sgl.cli.bench import _config
    from dynasor_sgl.policy.config import PolicyConfig

    out = {"out": tmp_path}
    embedded = _config(True, out).policy
    assert (embedded["rule"], embedded["confidence"]) == ("posterior", 0.9)  # `--preset cpu`
    for elsewhere in ({"model_path": "my/model"}, {"worker_url": "http://w:1"}):
        assert "rule" not in _config(True, {**out, **elsewhere}).policy
    assert "rule" not in _config(True, out, simulated=True).policy
    assert "rule" not in _config(True, {**out, "preset": "paper"}).policy
    mine = _config(True, {**out, "threshold": 0.9}).policy  # the user's rule replaces it whole
    assert mine["thresholds"] == {"entropy": 0.9} and "rule" not in mine
    # the systems that run to the cap override the preset's rule too
    user = BenchConfig.quick(out=tmp_path, policy=embedded).user_policy()
    for name in ("sglang", "parrot", "autellix"):
        config = PolicyConfig.for_algorithm("sc", **policy_for(SYSTEMS[name], user))
        assert (config.rule, dict(config.thresholds), config.stop_when_decided) == (
            "threshold",
            {},
            False,
        )
