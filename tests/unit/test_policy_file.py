"""Policy files (algorithm -> overrides): loading, and the router and launch applying them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from router_harness import run, setup

from dynasor_sgl.launch.config import LaunchConfig
from dynasor_sgl.launch.worker import router_command
from dynasor_sgl.policy.config import load_policy_file
from dynasor_sgl.router.config import RouterConfig


def write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return path


def test_a_valid_file_loads(tmp_path: Path) -> None:
    data = {"sc": {"detect_at": 4, "initial": 4, "thresholds": {"entropy": 0.6}}}
    assert load_policy_file(write(tmp_path, data)) == data


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "cannot read policy file"),
        ("[1, 2]", "expected a JSON object"),
        ({"nope": {}}, "nope"),
        ({"sc": {"cap": 0}}, "sc: cap must be an integer >= 1"),
        ({"sc": {"bogus": 1}}, "unknown policy config keys"),
        ({"sc": 3}, "'sc' must map to an object"),
    ],
)
def test_a_bad_file_is_one_clear_error(tmp_path: Path, content: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_policy_file(write(tmp_path, content))


def test_router_config_rejects_bad_defaults() -> None:
    with pytest.raises(ValueError, match="detect_at"):
        RouterConfig(worker_urls=("http://w",), policy_defaults={"sc": {"detect_at": 99}})


def test_router_applies_defaults_and_a_program_overrides_them() -> None:
    defaults = {"sc": {"detect_at": 4, "initial": 4, "thresholds": {"entropy": 0.6}}}

    async def body() -> None:
        async with setup(policy_defaults=defaults) as (client, _, _):
            plain = (await client.post("/programs", json={"algorithm": "sc"})).json()
            assert plain["config"]["detect_at"] == 4
            assert plain["config"]["thresholds"] == {"entropy": 0.6}
            own = {"algorithm": "sc", "policy": {"detect_at": 5, "initial": 5}}
            mine = (await client.post("/programs", json=own)).json()
            assert mine["config"]["detect_at"] == 5
            assert mine["config"]["thresholds"] == {"entropy": 0.6}
            other = (await client.post("/programs", json={"algorithm": "mcts"})).json()
            assert other["config"]["detect_at"] == 3  # mcts keeps its own defaults

    run(body)


def test_launch_passes_the_file_to_the_router(tmp_path: Path) -> None:
    path = write(tmp_path, {"sc": {"detect_at": 4, "initial": 4}})
    cmd = router_command(LaunchConfig(policy_file=str(path)), 30000, ["http://127.0.0.1:30001"])
    assert cmd[cmd.index("--policy") + 1] == str(path)
    with pytest.raises(ValueError, match="cannot read policy file"):
        LaunchConfig(policy_file=str(tmp_path / "missing.json"))
