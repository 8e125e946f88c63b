"""The systems the online benchmark compares, in one table, and the router each one runs.

A system is SGLang alone (programs run to their cap straight against a worker; `direct`) or a
`dynasor-sgl router` with a scheduling mode, optional deadline stops and a policy override on
top of the user's. Each also names the worker flavour it needs: stock SGLang, SGLang with
`--schedule-policy lpm`, or SGLang with `--enable-priority-scheduling` (the router maps its
order onto per-request priority). The router runs every system here; `SYSTEMS` is the bench's
table and the simulator's. Pure.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Flavour = Literal["plain", "lpm", "priority"]
InflightLimit = Literal["adaptive", "fixed"]
# Extra `sglang.launch_server` arguments of each worker flavour, started in this order (the
# base deadline is measured on the first worker started).
WORKER_FLAVOURS: dict[Flavour, tuple[str, ...]] = {
    "priority": ("--enable-priority-scheduling",),
    "plain": (),
    "lpm": ("--schedule-policy", "lpm"),
}
# No certaindex stop (no threshold, not the posterior rule) and no decided-vote stop: every
# program hits its cap.
RUN_TO_CAP: Mapping[str, Any] = {"thresholds": {}, "rule": "threshold", "stop_when_decided": False}


@dataclass(frozen=True)
class System:
    """One compared system.

    name: its label in results and plots. scheduling: the router's `--scheduling` mode; None:
    no router, programs go straight to the worker. deadline_stop: pass `--deadline-stop`
    (stop programs that can no longer meet their deadline). policy: PolicyConfig overrides
    applied over the user's (e.g. `RUN_TO_CAP`). worker: the worker flavour it needs.
    inflight_limit: the router's `--inflight-limit` (None: the router's own default).
    """

    name: str
    description: str
    scheduling: str | None
    deadline_stop: bool = False
    policy: Mapping[str, Any] = field(default_factory=dict)
    worker: Flavour = "priority"
    inflight_limit: InflightLimit | None = None

    @property
    def direct(self) -> bool:
        return self.scheduling is None


# Every system the bench compares and the simulator replays, in the order reports list them.
SYSTEMS: dict[str, System] = {
    s.name: s
    for s in (
        System(
            "sglang",
            "SGLang alone, every program to its cap",
            None,
            policy=RUN_TO_CAP,
            worker="plain",
        ),
        System(
            "sglang-lpm",
            "SGLang alone with longest-prefix-match scheduling, to cap",
            None,
            policy=RUN_TO_CAP,
            worker="lpm",
        ),
        System(
            "parrot",
            "program-order FIFO with gang dispatch (Parrot's App-FIFO), to cap",
            "fifo",
            policy=RUN_TO_CAP,
        ),
        System(
            "autellix",
            "program-level least attained service with gang (Autellix's PLAS), to cap",
            "plas",
            policy=RUN_TO_CAP,
        ),
        System("dynasor", "approximate SJF with aging and gang, Certaindex early exit", "sjf"),
        System(
            "dynasor-adaptive",
            "dynasor with the adaptive in-flight limit instead of the router's fixed bound",
            "sjf",
            inflight_limit="adaptive",
        ),
        System("certaindex", "per-request first-come-first-served, Certaindex early exit", "fcfs"),
        System("certaindex-gang", "program-order FIFO with gang, Certaindex early exit", "fifo"),
        System(
            "dynasor-deadline",
            "least slack first with gang, deadline stops, Certaindex",
            "deadline",
            deadline_stop=True,
        ),
    )
}
# The bench runs every system unless told otherwise (`--systems`).
DEFAULT_SYSTEMS = tuple(SYSTEMS)


def parse_systems(text: str) -> tuple[System, ...]:
    """Systems named in a comma-separated list, in the table's order; unknown: ValueError."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in SYSTEMS]
    if unknown or not names:
        raise ValueError(
            f"unknown system(s) {', '.join(unknown) or '(none given)'}; "
            f"choose from {', '.join(SYSTEMS)}"
        )
    return tuple(s for s in SYSTEMS.values() if s.name in names)


def policy_for(system: System, user_policy: Mapping[str, Any]) -> dict[str, Any]:
    """The PolicyConfig overrides a program of `system` registers with."""
    return {**user_policy, **system.policy}


def router_command(
    system: System,
    worker_url: str,
    port: int,
    *,
    priority: bool,
    max_inflight: int | None,
    log_level: str = "warning",
) -> list[str]:
    """The `dynasor-sgl router` argv that serves `system` in front of `worker_url`.

    priority: pass `--worker-priority` (the worker runs with priority scheduling).
    max_inflight: `--max-inflight-per-worker`, or None for the router's own default.
    """
    if system.scheduling is None:
        raise ValueError(f"{system.name} runs without a router")
    # Said either way: the router's own default (on) must not give a system a stop its
    # definition does not have.
    stop = "--deadline-stop" if system.deadline_stop else "--no-deadline-stop"
    options = ["--scheduling", system.scheduling, stop]
    if priority:
        options.append("--worker-priority")
    if max_inflight is not None:
        options += ["--max-inflight-per-worker", str(max_inflight)]
    if system.inflight_limit is not None:
        options += ["--inflight-limit", system.inflight_limit]
    return router_argv(worker_url, port, options, log_level)


def router_argv(
    worker_url: str, port: int, options: Sequence[str] = (), log_level: str = "warning"
) -> list[str]:
    """`dynasor-sgl router` on 127.0.0.1:`port` in front of `worker_url`, with `options`."""
    return [
        sys.executable,
        "-m",
        "dynasor_sgl.cli.main",
        "router",
        "--worker-url",
        worker_url,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        log_level,
        *options,
    ]
