"""Each shipped program, run as a user runs it (`dynasor-sgl run NAME QUESTION`), answers a
word question on the real CPU worker: a non-null answer, within the time the README states.

The CPU preset's defaults finish in about 2 minutes each on an idle 2-core machine (README,
"Presets"); to keep the suite short the runs here add smaller caps on top of them, so a program
stops at its first detection point or soon after. The answer's correctness is not asserted:
the 135M model is often wrong, and an answer is what a stop must never lose.

Except for the newcomer's first question (issue 24, item 5): self-consistency with every
default (cap 20) answers easy factual questions right, and stops at its first certain reading.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from click.testing import CliRunner

from dynasor_sgl.answers.equivalence import equivalent
from dynasor_sgl.cli.main import main
from dynasor_sgl.policy.config import PolicyConfig
from dynasor_sgl.policy.presets import with_preset
from dynasor_sgl.programs import NAMES

pytestmark = pytest.mark.e2e

QUESTION = "What is the capital of France?"
LIMIT_S = 120  # the README's "about 2 minutes" per program with the defaults
# Caps on top of the CPU preset, so the six runs fit the e2e budget (each ~10-60 s on the
# two-worker session cluster, which shares the machine's two cores).
SMALL: dict[str, list[str]] = {
    "self-consistency": ["--cap", "5", "--set", "max_tokens=96"],
    "cot-probe": ["--cap", "256"],
    "best-of-n": ["--cap", "4", "--set", "max_tokens=96"],
    "beam-search": ["--cap", "8"],
    "rebase": ["--cap", "4", "--set", "max_depth=4"],
    "mcts": ["--cap", "4"],
}


# Chosen by measurement (docs/results/sc-factual.md, "Asked again"): with the shipped prompt's
# worked example, these three, run as here (every default), answered right at 5 samples in
# every live run (France 16 of 16, Italy 13 of 13, Germany 7 of 7). Spain stopped at 5 in 13 of
# 14 (once at the cap) and failed once with its reason not kept; the largest planet, days in a
# week and water's boiling point (always right) ran to the cap in 1-5 of 4-9 runs; a spider's
# legs the model gets wrong. Those would make this test flaky.
FACTS = (
    ("What is the capital of France?", "Paris"),
    ("What is the capital of Italy?", "Rome"),
    ("What is the capital of Germany?", "Berlin"),
)


def run(router_url: str, name: str, question: str = QUESTION, *extra: str) -> dict[str, Any]:
    args = ["run", name, question, "--router", router_url, "--json", "--timeout", str(LIMIT_S)]
    res = CliRunner().invoke(main, [*args, *extra])
    assert res.exit_code == 0, res.output
    out: dict[str, Any] = json.loads(res.stdout)
    return out


def test_every_shipped_program_is_covered() -> None:
    assert set(SMALL) == set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_program_answers_a_word_question_in_time(router_url: str, name: str) -> None:
    out = run(router_url, name, QUESTION, *SMALL[name])
    assert out["status"] == "ok", out["error"]
    assert out["exit_reason"] not in ("timeout", "aborted", "error"), out["exit_reason"]
    assert out["answer"] is not None, (out["exit_reason"], out["details"])
    assert out["tokens"]["total"] == out["router_tokens"]["total"] > 0


@pytest.mark.parametrize(("question", "gold"), FACTS)
def test_self_consistency_answers_an_easy_fact_and_stops_at_its_first_certain_reading(
    router_url: str, question: str, gold: str
) -> None:
    """Right, read every 5 samples, and stopped at the first reading whose posterior passes
    the preset's (5 samples in most measured runs). Whether the first 5 samples agree enough
    is up to sampling, so the test checks the mechanism on each run: an idle router's
    expansion never skips a pending reading (`policy.machine`), and no certain reading is
    ignored."""
    out = run(router_url, "self-consistency", question)
    assert out["status"] == "ok", out["error"]
    assert equivalent(out["answer"], gold), (out["answer"], out["details"]["answers"])
    assert out["cap"] == 20
    confidence = PolicyConfig.for_algorithm("sc", **with_preset("cpu", "sc", {})).confidence
    readings = out["certaindex"]
    used = [r["used"] for r in readings]
    assert used and used == list(range(5, 5 * len(used) + 1, 5)), readings  # 5, 10, 15, ...
    before_cap = [r for r in readings if r["used"] < out["cap"]]
    certain = [r["used"] for r in before_cap if r["posterior"] >= confidence]
    if certain:
        assert out["steps"] == certain[0], (out["exit_reason"], readings)
        assert out["exit_reason"] == "posterior", out["exit_reason"]
    else:  # no certain reading before the cap: run to it, or stopped on a decided vote
        decided = out["exit_reason"] == "decided" and out["steps"] < out["cap"]
        assert decided or out["steps"] == out["cap"], (out["exit_reason"], readings)
