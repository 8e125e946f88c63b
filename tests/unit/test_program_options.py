"""What `run` and `eval` give a shipped program besides the question: the prompt format
(--system-prompt, --few-shot), the policy preset (--preset cpu|paper) and, on a terminal, a
progress line fed by the program context's reports. The tests that run a program (`io`) go
through the real router app in front of the fake worker."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from lang_harness import Served, serve_router

from dynasor_sgl.cli.common import policy_overrides
from dynasor_sgl.cli.main import main
from dynasor_sgl.cli.run import RunProgress
from dynasor_sgl.lang import ProgramContext, Verdict
from dynasor_sgl.lang.prompt import read_few_shot
from dynasor_sgl.policy.config import DEFAULTS, PolicyConfig
from dynasor_sgl.policy.presets import CPU_PRESET, with_preset
from dynasor_sgl.programs import get_program

EXAMPLE = {"question": "What is 1 + 1?", "answer": "1 + 1 = 2, so \\boxed{2}."}


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    with serve_router() as s:
        yield s


def write(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "shots.jsonl"
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


# --- few-shot file -------------------------------------------------------------------------------


def test_read_few_shot_reads_examples_and_skips_blank_lines(tmp_path: Path) -> None:
    second = {"question": "Capital of Italy?", "answer": "\\boxed{Rome}"}
    path = write(tmp_path, json.dumps(EXAMPLE), "", "  ", json.dumps(second))
    assert read_few_shot(path) == [EXAMPLE, second]


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (["{not json"], "shots.jsonl:1: not JSON"),
        ([json.dumps(EXAMPLE), "[1, 2]"], "shots.jsonl:2: expected an object"),
        ([json.dumps({"question": "q"})], "shots.jsonl:1: 'answer' must be a non-empty string"),
        ([json.dumps({**EXAMPLE, "answer": 7})], "'answer' must be a non-empty string, got 7"),
        ([json.dumps({**EXAMPLE, "hint": "x"})], "shots.jsonl:1: unknown key(s) hint"),
        (["", " "], "has no examples"),
    ],
)
def test_read_few_shot_errors_name_the_file_and_line(
    tmp_path: Path, lines: list[str], message: str
) -> None:
    with pytest.raises(ValueError) as info:
        read_few_shot(write(tmp_path, *lines))
    assert message in str(info.value) and "\n" not in str(info.value)


def test_read_few_shot_of_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read few-shot file"):
        read_few_shot(tmp_path / "none.jsonl")


# --- the prompt reaches the worker -------------------------------------------------------------


def run_cli(*args: str) -> Any:
    return CliRunner().invoke(main, ["run", *args])


@pytest.mark.io
def test_system_prompt_and_examples_come_before_the_question(
    served: Served, tmp_path: Path
) -> None:
    shots = write(tmp_path, json.dumps(EXAMPLE))
    before = len(served.fake.generate_bodies)
    res = run_cli(
        "self-consistency",
        "What is 3 + 4?",
        "--router",
        served.url,
        "--cap",
        "1",
        "--set",
        "max_tokens=2",
        "--system-prompt",
        "Answer in one word.",
        "--few-shot",
        str(shots),
        "--json",
    )
    assert res.exit_code == 0, res.output
    prompts = [str(b.get("text")) for b in served.fake.generate_bodies[before:]]
    assert prompts, "no request reached the worker"
    text = prompts[-1]
    order = ["Answer in one word.", EXAMPLE["question"], EXAMPLE["answer"], "What is 3 + 4?"]
    positions = [text.find(part) for part in order]
    assert -1 not in positions and positions == sorted(positions), text
    assert "careful math assistant" not in text  # the given system prompt replaced the default


@pytest.mark.io
def test_default_system_prompt_without_options(served: Served) -> None:
    before = len(served.fake.generate_bodies)
    res = run_cli("self-consistency", "Q?", "--router", served.url, "--cap", "1", "--json")
    assert res.exit_code == 0, res.output
    assert "careful math assistant" in str(served.fake.generate_bodies[before].get("text"))


def test_a_bad_few_shot_file_is_a_one_line_usage_error(tmp_path: Path) -> None:
    bad = write(tmp_path, json.dumps(EXAMPLE), json.dumps({"question": "q"}))
    res = run_cli("self-consistency", "Q?", "--few-shot", str(bad))
    assert res.exit_code == 2 and "Traceback" not in res.output
    [line] = [x for x in res.output.splitlines() if "Invalid value" in x]
    assert "--few-shot" in line and "shots.jsonl:2" in line and "'answer'" in line


def test_a_prompt_parameter_given_twice_is_a_usage_error() -> None:
    res = run_cli("self-consistency", "Q?", "--system-prompt", "a", "--set", "system_prompt=b")
    assert res.exit_code == 2
    assert "system_prompt is given by both --set and --system-prompt" in res.output


def test_eval_takes_the_prompt_options() -> None:
    res = CliRunner().invoke(main, ["eval", "--help"])
    assert res.exit_code == 0
    assert "--system-prompt" in res.output and "--few-shot" in res.output
    assert "--preset" in res.output


# --- presets -------------------------------------------------------------------------------------


def test_presets_cpu_lowers_the_tree_programs_and_paper_is_the_table() -> None:
    for name in ("self-consistency", "cot-probe", "best-of-n", "beam-search", "rebase", "mcts"):
        spec = get_program(name)
        cpu = PolicyConfig.for_algorithm(spec.algorithm, **with_preset("cpu", spec.algorithm, {}))
        paper = PolicyConfig.for_algorithm(
            spec.algorithm, **with_preset("paper", spec.algorithm, {})
        )
        assert paper.cap == DEFAULTS[spec.algorithm]["cap"]
        assert cpu.cap <= paper.cap
    assert set(CPU_PRESET) <= set(DEFAULTS) and "cot" not in CPU_PRESET  # CoT keeps its settings
    assert with_preset("paper", "rebase", {}) == {} == with_preset("paper", "sc", {})


def test_the_cpu_presets_self_consistency_rule_is_the_committed_label_free_calibration() -> None:
    # The embedded model's SC defaults are what `dynasor-sgl calibrate --target full-budget`
    # chose over the built-in tasks' recorded runs (the command is in presets.py).
    committed = Path(__file__).parents[2] / "docs/results/selfcal-defaults/builtin-policy.json"
    calibrated = json.loads(committed.read_text())["sc"]
    shipped = PolicyConfig.for_algorithm("sc").to_dict()
    assert {k: v for k, v in calibrated.items() if shipped[k] != v} == dict(CPU_PRESET["sc"])
    cpu = PolicyConfig.for_algorithm("sc", **with_preset("cpu", "sc", {}))
    assert (
        cpu.rule,
        cpu.posterior_of,
        cpu.confidence,
        cpu.detect_every,
        cpu.stop_when_decided,
    ) == (
        "posterior",
        "full_budget",
        0.9,
        5,
        True,
    )


def test_a_clients_own_stop_rule_replaces_the_presets_whole() -> None:
    spec = get_program("self-consistency")
    mine = PolicyConfig.for_algorithm("sc", **policy_overrides(spec, None, None, 0.9, None, "cpu"))
    assert (mine.rule, mine.thresholds) == ("threshold", {"entropy": 0.9})
    capped = PolicyConfig.for_algorithm("sc", **policy_overrides(spec, None, 8, None, None, "cpu"))
    assert (capped.rule, capped.confidence, capped.cap) == ("posterior", 0.9, 8)


def test_a_cap_below_the_presets_initial_pulls_it_down() -> None:
    overrides = with_preset("cpu", "rebase", {"cap": 2})
    config = PolicyConfig.for_algorithm("rebase", **overrides)
    assert (config.cap, config.initial, config.detect_at) == (2, 2, 2)
    with pytest.raises(ValueError, match="preset must be one of"):
        with_preset("gpu", "rebase", {})


def test_cli_options_apply_on_top_of_the_preset() -> None:
    spec = get_program("rebase")
    cpu = policy_overrides(spec, None, None, 0.9, None, "cpu")
    assert cpu["cap"] == CPU_PRESET["rebase"]["cap"] and cpu["thresholds"] == {"entropy": 0.9}
    assert policy_overrides(spec, None, 64, None, None, "paper") == {"cap": 64}
    res = run_cli("rebase", "Q?", "--preset", "gpu")
    assert res.exit_code == 2 and "--preset" in res.output


# --- progress ------------------------------------------------------------------------------------


class StaticReporter:
    def report(self, body: Any) -> Verdict:
        return Verdict("continue", grant=5, values={"entropy": 0.69})


def test_progress_line_shows_units_certaindex_and_tokens() -> None:
    out = io.StringIO()
    progress = RunProgress("self-consistency", "samples", out)
    ctx = ProgramContext("p1", PolicyConfig(), StaticReporter(), observer=progress)
    ctx.account("reasoning", {"prompt_tokens": 10, "completion_tokens": 32})
    ctx.report(5, answers={"s0": "7"})
    text = out.getvalue()
    assert "5/20 samples" in text and "entropy=0.69" in text and "tokens 42" in text
    progress.close()


@pytest.mark.io
def test_no_progress_when_stderr_is_not_a_terminal(served: Served) -> None:
    res = run_cli("self-consistency", "Q?", "--router", served.url, "--cap", "2", "--json")
    assert res.exit_code == 0, res.output
    assert res.stderr == ""
    json.loads(res.stdout)
