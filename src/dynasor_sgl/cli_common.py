"""What the program commands (`run`, `eval`, `bench online`) share: logging set-up, the
shared options, loading a program by name, `--set` parsing and policy overrides from options.

Each option's default is the one its dataclass (or the router's) declares, not a copy.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import json
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import click

from dynasor_sgl.config import DEFAULT_ROUTER_URL
from dynasor_sgl.policy_config import PolicyConfig, load_policy_file
from dynasor_sgl.protocol import API_KEY_ENV

ROUTER_ENV = "DYNASOR_SGL_ROUTER"


def parse_set(items: tuple[str, ...]) -> dict[str, Any]:
    """KEY=VALUE pairs; a value that parses as JSON is taken as such (64, 0.5, true)."""
    params: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.isidentifier():
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint="--set")
        try:
            params[key] = json.loads(raw)
        except ValueError:
            params[key] = raw
    return params


def load_spec(name: str) -> Any:
    """A shipped program by name, or a user's `module:ATTRIBUTE` ProgramSpec."""
    from dynasor_sgl.lang import ProgramSpec
    from dynasor_sgl.programs import get_program

    if ":" not in name:
        try:
            return get_program(name)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="PROGRAM") from exc
    module, _, attr = name.partition(":")
    try:
        spec = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise click.BadParameter(f"cannot load {name}: {exc}", param_hint="PROGRAM") from exc
    if not isinstance(spec, ProgramSpec):
        raise click.BadParameter(
            f"{name} is not a dynasor_sgl.lang.ProgramSpec", param_hint="PROGRAM"
        )
    return spec


def policy_overrides(
    spec: Any,
    policy_file: str | None,
    cap: int | None,
    threshold: float | None,
    detect_at: int | None,
) -> dict[str, Any]:
    policy: dict[str, Any] = {}
    if policy_file:
        try:
            policy.update(load_policy_file(policy_file).get(spec.algorithm, {}))
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--policy") from exc
    if cap is not None:
        policy["cap"] = cap  # PolicyConfig.for_algorithm pulls initial/detect_at down with it
    if detect_at is not None:
        policy["detect_at"] = detect_at
    if threshold is not None:
        policy["thresholds"] = {**policy.get("thresholds", {}), spec.signal: threshold}
    try:
        PolicyConfig.for_algorithm(spec.algorithm, **policy)
    except (ValueError, TypeError) as exc:
        raise click.BadParameter(str(exc), param_hint="the policy options") from exc
    return policy


# Options more than one command takes, one copy each.
LOG_LEVEL_OPTION = click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="warning",
    show_default=True,
)
SET_OPTION = click.option(
    "--set",
    "params",
    multiple=True,
    metavar="KEY=VALUE",
    help="A program parameter, e.g. --set max_tokens=128 (repeatable).",
)
THRESHOLD_OPTION = click.option(
    "--threshold",
    type=click.FloatRange(0, 1),
    help="Threshold of the program's certaindex signal (default: per program).",
)
POLICY_OPTION = click.option(
    "--policy",
    "policy_file",
    type=click.Path(exists=True, dir_okay=False),
    help="JSON policy file: algorithm -> PolicyConfig overrides (e.g. from `dynasor-sgl "
    "calibrate`).",
)


@dataclass(frozen=True)
class ProgramOptions:
    """What `run` and `eval` both take: where the router is, the policy, the program's
    parameters and limits, the API key and the log level (see `program_options`)."""

    router_url: str
    cap: int | None
    threshold: float | None
    detect_at: int | None
    policy_file: str | None
    params: tuple[str, ...]
    timeout: float | None
    deadline: float | None
    api_key: str | None
    log_level: str

    def policy(self, spec: Any) -> dict[str, Any]:
        """The PolicyConfig overrides these options give `spec` (checked)."""
        return policy_overrides(spec, self.policy_file, self.cap, self.threshold, self.detect_at)

    def program_params(self) -> dict[str, Any]:
        return parse_set(self.params)


_PROGRAM_OPTIONS = [
    click.option(
        "--router",
        "router_url",
        envvar=ROUTER_ENV,
        default=DEFAULT_ROUTER_URL,
        help=f"Router URL [env: {ROUTER_ENV}].",
    ),
    click.option(
        "--cap", type=click.IntRange(min=1), help="Most knob units (default: per program)."
    ),
    THRESHOLD_OPTION,
    click.option("--detect-at", type=click.IntRange(min=1), help="First knob value read."),
    POLICY_OPTION,
    SET_OPTION,
    click.option(
        "--timeout",
        type=click.FloatRange(min=0, min_open=True),
        help="Abort a program after this many seconds.",
    ),
    click.option(
        "--deadline",
        type=click.FloatRange(min=0, min_open=True),
        help="The program's deadline in seconds, told to the router (its "
        "deadline order and deadline stop use it).",
    ),
    click.option(
        "--api-key",
        envvar=API_KEY_ENV,
        default=None,
        show_default=False,
        help=f"Router API key [env: {API_KEY_ENV}].",
    ),
    LOG_LEVEL_OPTION,
]


def program_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The options of `ProgramOptions`, handed to `command` as one `opts` argument (logging
    already configured at its level)."""
    names = [f.name for f in dataclasses.fields(ProgramOptions)]

    @functools.wraps(command)
    def with_options(**kwargs: Any) -> Any:
        opts = ProgramOptions(**{name: kwargs.pop(name) for name in names})
        configure_logging(opts.log_level)
        return command(opts=opts, **kwargs)

    for option in reversed(_PROGRAM_OPTIONS):
        with_options = option(with_options)
    return with_options


def configure_logging(level: str, timestamps: bool = False) -> None:
    """Logging for a command, once, to stderr; timestamps for the long-running servers."""
    when = "%(asctime)s " if timestamps else ""
    logging.basicConfig(
        level=level.upper(), format=when + "%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per health poll otherwise
