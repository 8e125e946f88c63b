"""Self-calibration on the real CPU worker: a router that explores every self-consistency
program learns a stop rule from them (no labels: the full budget's answer is the target), keeps
it in its calibration file, and a router started on that file with exploration off gives new
programs the fitted rule, which stops them before their cap.

Kept short: cap 6, 24-token samples, easy questions at a low temperature, and a loose bound
(ε 0.3, δ 0.1: 10 programs certify a rule, `policy.risk.min_programs` at δ / 3 families).
SGLang's sampling is not seeded here (the program passes no seed), so the test asserts what
holds for any draw: runs recorded, a rule fitted and applied where it fires."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from test_serving import router  # a router of its own in front of a session worker

from dynasor_sgl import lang as dl
from dynasor_sgl.policy import risk
from dynasor_sgl.policy.machine import EARLY_STOPS

pytestmark = pytest.mark.e2e

CAP = 6
QUESTIONS = (
    "How many days are in a week?",
    "What is 2 + 3?",
    "How many legs does a dog have?",
    "What is 10 - 4?",
    "How many months are in a year?",
)
PARAMS = {"max_tokens": 24, "temperature": 0.2}
LOOSE = ("--calibration-epsilon", "0.3", "--calibration-delta", "0.1")
RUNS = risk.min_programs(0.3, 0.1 / 4)  # 11: delta shared over the 4 families


def run_all(url: str, count: int) -> list[dl.ProgramResult]:
    def one(i: int) -> dl.ProgramResult:
        question = QUESTIONS[i % len(QUESTIONS)]
        return dl.run_program(
            "self-consistency", question, router=url, policy={"cap": CAP}, params=PARAMS
        )

    with ThreadPoolExecutor(5) as pool:
        return list(pool.map(one, range(count)))


def test_a_router_learns_a_stop_rule_from_explored_programs_and_applies_it(
    worker_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "calibration.json"
    with router(
        worker_url, tmp_path, "--explore", "1.0", "--calibration", str(path), *LOOSE
    ) as url:
        explored = run_all(url, RUNS)
        shown = httpx.get(f"{url}/calibration", timeout=30).json()
    for result in explored:
        assert result.ok, result.error
        assert result.steps == CAP  # explored: never stopped before the cap
    (key,) = shown["keys"]
    assert (key["explored"], key["runs"], key["min_programs"]) == (RUNS, RUNS, RUNS)
    assert key["cap"] == CAP and key["model"] != "unknown"
    assert key["state"] == "fitted", key  # easy questions: early samples agree with the cap
    assert path.exists()

    apply = ("--explore", "0", "--calibration", str(path), *LOOSE)
    with router(worker_url, tmp_path, *apply) as url:
        served = run_all(url, 5)
        infos = [httpx.get(f"{url}/programs/{r.program_id}", timeout=30).json() for r in served]
        again = httpx.get(f"{url}/calibration", timeout=30).json()["keys"][0]
    assert again["runs"] == RUNS and again["candidate"] == key["candidate"]
    for result, info in zip(served, infos, strict=True):
        assert result.ok, result.error
        assert info["calibration"] == {
            "key": info["calibration"]["key"],
            "explored": False,
            "rule": "fitted",
        }
    early = [r for r in served if r.steps < CAP]
    assert early, [(r.steps, r.exit_reason, r.certaindex) for r in served]
    # the fitted rule reads at 5 of 6 samples: its threshold, or the decided vote it carries
    assert all(r.exit_reason in {reason.value for reason in EARLY_STOPS} for r in early)
