"""Self-calibration in the router over HTTP (real ASGI client, fake worker): explored programs
run to their cap and are recorded from their reports; once a key has its runs, a new router on
the same calibration file gives new programs the fitted rule; GET /calibration, the task tag,
the gauges, and bad values as JSON 400s and one-line CLI errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from fake_worker import FakeWorker
from router_harness import BRANCH, error_of, gen, routed, run

from dynasor_sgl.cli.main import main
from dynasor_sgl.router import calibration

pytestmark = pytest.mark.io  # sockets, subprocesses or a served router

CAP = 6  # above the families' first reading (5), so a fitted rule can stop early
LOOSE = {"calibration_epsilon": 0.3, "calibration_delta": 0.1}  # 11 runs certify a rule
KEY = f"sc/fake/model/math/cap{CAP}"


async def register(client: httpx.AsyncClient, pid: str, **body: Any) -> dict[str, Any]:
    body = {"program_id": pid, "algorithm": "sc", "policy": {"cap": CAP}, "task": "math", **body}
    resp = await client.post("/programs", json=body)
    assert resp.status_code == 201, resp.text
    return resp.json()


async def explore_one(client: httpx.AsyncClient, pid: str) -> dict[str, Any]:
    """An explored program: each of its samples a request of its own branch, reported in
    rounds as the SC program does, every answer "7"; returns its last decision."""
    info = await register(client, pid)
    assert info["calibration"] == {"key": KEY, "explored": True, "rule": "explore"}
    assert info["config"]["thresholds"] == {}  # never certain: it runs to its cap
    used, decision = 0, {}
    while used < CAP:
        grant = min(decision.get("grant") or info["config"]["initial"], CAP - used)
        for i in range(used, used + grant):
            sample = gen(max_new=3)
            resp = await client.post(
                f"/programs/{pid}/generate", json=sample, headers={BRANCH: f"s{i}"}
            )
            assert resp.status_code == 200, resp.text
        used += grant
        report = {"used": used, "answers": {f"s{i}": "7" for i in range(used)}}
        decision = (await client.post(f"/programs/{pid}/report", json=report)).json()
        assert decision["action"] != "stop" or used == CAP, decision
    return decision


def test_a_router_learns_a_rule_from_explored_programs_and_a_restart_applies_it(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "calibration.json")

    async def scenario() -> None:
        fake = FakeWorker(0.0)
        await fake.start()
        try:
            async with routed(fake, explore=1.0, calibration_file=path, **LOOSE) as (client, _):
                for i in range(11):
                    last = await explore_one(client, f"x{i}")
                    assert (last["action"], last["status"]) == ("stop", "stopped")
                shown = (await client.get("/calibration")).json()
                metrics = (await client.get("/metrics")).text
            (key,) = shown["keys"]
            assert (key["task"], key["model"], key["explored"], key["runs"]) == (
                "math",
                "fake/model",
                11,
                11,
            )
            assert key["state"] == "fitted" and key["min_programs"] == 11
            assert key["disagreement"] == 0.0 and shown["file"] == path
            assert f'dynasor_calibration_explored{{key="{KEY}"}} 11.0' in metrics
            assert f'dynasor_calibration_min_programs{{key="{KEY}"}} 11.0' in metrics
            async with routed(fake, explore=0.0, calibration_file=path, **LOOSE) as (client, _):
                info = await register(client, "served")
                assert info["calibration"] == {"key": KEY, "explored": False, "rule": "fitted"}
                config = info["config"]
                assert config["cap"] == CAP and config["initial"] < CAP
                n = config["initial"]
                report = {"used": n, "answers": {f"s{i}": "7" for i in range(n)}}
                decision = (await client.post("/programs/served/report", json=report)).json()
                assert decision["action"] == "stop" and decision["reason"] != "cap"
                other = await register(client, "other-task", task="chat")
                assert other["calibration"]["rule"] == "defaults"
        finally:
            await fake.stop()

    run(scenario, 60)


def test_an_explored_run_keeps_its_samples_tokens_in_sample_order(tmp_path: Path) -> None:
    path = tmp_path / "calibration.json"

    async def scenario() -> None:
        fake = FakeWorker(0.0)
        await fake.start()
        try:
            async with routed(fake, explore=1.0, calibration_file=str(path)) as (client, router):
                await explore_one(client, "x")
                prog = router.programs.get("x")
                assert prog.calibration_recorded
                assert sorted(prog.branch_tokens) == [f"s{i}" for i in range(CAP)]
        finally:
            await fake.stop()

    run(scenario)
    (key,) = json.loads(path.read_text())["keys"]
    (saved,) = key["runs"]
    assert saved["id"] == "x" and saved["answers"] == ["7"] * CAP
    assert saved["sample_tokens"] == [3] * CAP


def test_a_program_with_its_own_rule_or_another_algorithm_is_left_alone() -> None:
    async def scenario() -> None:
        fake = FakeWorker(0.0)
        await fake.start()
        try:
            async with routed(fake, explore=1.0) as (client, _):
                own = await register(client, "own", policy={"cap": CAP, "detect_at": 2})
                cot = await register(client, "cot", algorithm="cot", policy={})
                assert own["calibration"] is None and cot["calibration"] is None
                assert own["config"]["detect_at"] == 2
                assert (await client.get("/calibration")).json()["keys"] == []
        finally:
            await fake.stop()

    run(scenario)


@pytest.mark.parametrize(
    "body, where",
    [({"task": "t" * 257}, "task"), ({"task": ""}, "task"), ({"task": 3}, "task")],
)
def test_a_bad_task_tag_is_a_json_400(body: dict[str, Any], where: str) -> None:
    async def scenario() -> None:
        fake = FakeWorker(0.0)
        await fake.start()
        try:
            async with routed(fake) as (client, _):
                resp = await client.post("/programs", json={"algorithm": "sc", **body})
                assert where in error_of(resp, 400)["message"]
        finally:
            await fake.stop()

    run(scenario)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--explore", "1.5"], "explore must be in [0, 1], got 1.5"),
        (["--calibration-epsilon", "0"], "calibration_epsilon must be in (0, 1), got 0.0"),
        (["--calibration-delta", "1"], "calibration_delta must be in (0, 1), got 1.0"),
    ],
)
@pytest.mark.parametrize("command", ["router", "launch"])
def test_bad_calibration_options_are_one_line_errors(
    command: str, args: list[str], message: str
) -> None:
    extra = ["--worker-url", "http://127.0.0.1:1"] if command == "router" else []
    res = CliRunner().invoke(main, [command, *extra, *args])
    assert res.exit_code == 2 and message in res.output, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)


def test_an_unreadable_calibration_file_is_a_one_line_error(tmp_path: Path) -> None:
    bad = tmp_path / "calibration.json"
    bad.write_text("{not json")
    for command in (["router", "--worker-url", "http://127.0.0.1:1"], ["launch"]):
        res = CliRunner().invoke(main, [*command, "--calibration", str(bad)])
        assert res.exit_code == 2 and "cannot read calibration file" in res.output, res.output


def test_a_replay_that_fails_never_fails_the_programs_report(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(*_: Any) -> None:
        raise RuntimeError("replay broke")

    monkeypatch.setattr(calibration, "explore_run", broken)

    async def scenario() -> None:
        fake = FakeWorker(0.0)
        await fake.start()
        try:
            async with routed(fake, explore=1.0) as (client, _):
                last = await explore_one(client, "x")
                assert (last["action"], last["reason"]) == ("stop", "cap")
                (key,) = (await client.get("/calibration")).json()["keys"]
                assert (key["explored"], key["runs"]) == (1, 0)
        finally:
            await fake.stop()

    run(scenario)
