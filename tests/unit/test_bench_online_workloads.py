"""What the online benchmark runs: the workload (the single program or a named mix, with its
parts and their caps), a user's program as `module:SPEC`, and two systems the bench gained
with the router (autellix's PLAS order, dynasor with the adaptive in-flight limit)."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from dynasor_sgl.cli.main import main
from dynasor_sgl.eval.datasets import Item
from dynasor_sgl.lang.registry import load_program
from dynasor_sgl.online.config import BenchConfig
from dynasor_sgl.online.mixes import MIXES, SINGLE, Part, parts_of, slot
from dynasor_sgl.online.runs import load_parts
from dynasor_sgl.online.session import plan
from dynasor_sgl.online.systems import RUN_TO_CAP, SYSTEMS, policy_for, router_command
from dynasor_sgl.online.workload import mixed_workload

# -- workloads ------------------------------------------------------------------------------------


def test_the_default_workload_is_self_consistency_on_add1_with_room_to_reason(
    tmp_path: Path,
) -> None:
    cfg = BenchConfig(out=tmp_path)
    assert (cfg.workload, cfg.program, cfg.dataset) == (SINGLE, "self-consistency", "synth:add1")
    assert cfg.max_tokens >= 48 and cfg.cap >= 10  # the vote has samples past its first read
    (loaded,) = load_parts(cfg)
    assert loaded.part.params == {"max_tokens": cfg.max_tokens}
    assert loaded.part.user_policy() == {"cap": cfg.cap}  # the shipped policy, capped
    assert loaded.spec.name == "self-consistency" and len(loaded.items) == cfg.programs


def test_the_mixed_workload_has_three_programs_with_their_own_caps(tmp_path: Path) -> None:
    parts = parts_of("mixed", BenchConfig(out=tmp_path).single_part({}))
    assert [p.program for p in parts] == ["self-consistency", "mcts", "cot-probe"]
    assert len({p.cap for p in parts}) == 3
    loaded = load_parts(BenchConfig(out=tmp_path, workload="mixed", programs=4))
    assert [p.spec.name for p in loaded] == ["self-consistency", "mcts", "cot-probe"]
    assert loaded[1].part.user_policy()["cap"] == MIXES["mixed"][1].cap
    with pytest.raises(ValueError, match="unknown workload"):
        parts_of("nope", parts[0])
    with pytest.raises(ValueError, match="unknown workload"):
        BenchConfig(out=tmp_path, workload="nope")


def test_programs_cycle_over_parts_and_each_part_over_its_questions() -> None:
    assert [slot(i, (2, 3)) for i in range(6)] == [(0, 0), (1, 0), (0, 1), (1, 1), (0, 0), (1, 2)]
    with pytest.raises(ValueError):
        slot(0, (2, 0))
    a = [Item(f"a{i}", "?", "1") for i in range(2)]
    b = [Item(f"b{i}", "?", "1") for i in range(3)]
    trace = mixed_workload([a, b], 5, 1.0, seed=0, difficulty={"b1": 2})
    assert [(x.part, x.item.id, x.difficulty) for x in trace] == [
        (0, "a0", 1),
        (1, "b0", 1),
        (0, "a1", 1),
        (1, "b1", 2),
        (0, "a0", 1),
    ]
    assert Part("x", "p", "d", 3, policy={"cap": 9}).user_policy() == {"cap": 3}
    with pytest.raises(ValueError, match="cap"):
        Part("x", "p", "d", 0)


def test_mixed_workload_refuses_the_single_program_options(tmp_path: Path) -> None:
    args = ["bench", "online", "--out", str(tmp_path), "--workload", "mixed", "--cap", "3"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    assert "--workload mixed sets its own programs; drop --cap" in result.output


# -- module:SPEC ------------------------------------------------------------------------------


def test_a_user_program_is_found_as_module_colon_attribute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "my_bench_prog.py").write_text(
        textwrap.dedent(
            """
            import dataclasses
            from dynasor_sgl.programs.self_consistency import SPEC as shipped
            MINE = dataclasses.replace(shipped, name="mine")
            NOT_A_SPEC = 3
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert load_program("my_bench_prog:MINE").name == "mine"
    assert load_program("self-consistency").name == "self-consistency"  # names still work
    with pytest.raises(ValueError, match=r"is not a dynasor_sgl\.lang\.ProgramSpec"):
        load_program("my_bench_prog:NOT_A_SPEC")
    with pytest.raises(ValueError, match="cannot load my_bench_prog:NOPE"):
        load_program("my_bench_prog:NOPE")
    with pytest.raises(ValueError, match="cannot load no_such_module_x:SPEC"):
        load_program("no_such_module_x:SPEC")
    (loaded,) = load_parts(BenchConfig(out=tmp_path, program="my_bench_prog:MINE", programs=2))
    assert loaded.spec.name == "mine" and loaded.part.label == "my_bench_prog:MINE"
    monkeypatch.delitem(sys.modules, "my_bench_prog")


@pytest.mark.parametrize(
    ("spec", "message"),
    [("no_such_module_x:SPEC", "cannot load"), ("os:sep", "is not a dynasor_sgl.lang")],
)
def test_a_bad_program_spec_is_a_one_line_error(tmp_path: Path, spec: str, message: str) -> None:
    result = CliRunner().invoke(
        main, ["bench", "online", "--out", str(tmp_path), "--program", spec]
    )
    assert result.exit_code == 2
    assert "--program" in result.output and message in result.output
    assert "Traceback" not in result.output


# -- autellix and dynasor-adaptive ----------------------------------------------------------------


def test_autellix_and_dynasor_adaptive_are_described_as_the_issue_asks() -> None:
    autellix, adaptive = SYSTEMS["autellix"], SYSTEMS["dynasor-adaptive"]
    assert autellix.scheduling == "plas" and autellix.worker == "priority"
    assert policy_for(autellix, {"cap": 4}) == {"cap": 4, **RUN_TO_CAP}  # no early exit
    assert not autellix.deadline_stop
    assert (adaptive.scheduling, adaptive.inflight_limit) == ("sjf", "adaptive")
    assert policy_for(adaptive, {"cap": 4}) == policy_for(SYSTEMS["dynasor"], {"cap": 4})
    cmd = " ".join(router_command(autellix, "http://w:1", 1, priority=True, max_inflight=None))
    assert "--scheduling plas" in cmd and "--inflight-limit" not in cmd
    cmd = " ".join(router_command(adaptive, "http://w:1", 1, priority=True, max_inflight=None))
    assert "--scheduling sjf" in cmd and "--inflight-limit adaptive" in cmd


def test_autellix_and_dynasor_adaptive_run_by_default(tmp_path: Path) -> None:
    assert {"autellix", "dynasor-adaptive"} <= set(BenchConfig(out=tmp_path).systems)
    notes: list[str] = []
    cfg = BenchConfig(out=tmp_path, systems=("autellix", "dynasor", "dynasor-adaptive"))
    assert [[s.name for s in g] for _, g in plan(cfg, notes)] == [
        ["autellix", "dynasor", "dynasor-adaptive"]
    ]
    assert notes == []
