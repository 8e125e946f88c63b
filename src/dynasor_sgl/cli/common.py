"""What the program commands (`run`, `eval`, `bench online`) share: logging set-up, the
shared options, loading a program by name, `--set` parsing, policy overrides from options (on
a preset), the prompt format options, and starting the embedded model for one command.

Each option's default is the one its dataclass (or the router's) declares, not a copy.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import click

# Re-exported: the commands take them from here; their home is launch (benches use them too).
from dynasor_sgl.launch.embedded import launch_embedded as launch_embedded
from dynasor_sgl.launch.interrupt import interrupt_on_terminate as interrupt_on_terminate
from dynasor_sgl.policy.config import PolicyConfig, load_policy_file
from dynasor_sgl.policy.presets import DEFAULT_PRESET, PRESETS, with_preset
from dynasor_sgl.protocol import API_KEY_ENV, DEFAULT_ROUTER_URL

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
    from dynasor_sgl.lang.registry import load_program

    try:
        return load_program(name)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="PROGRAM") from exc


def policy_overrides(
    spec: Any,
    policy_file: str | None,
    cap: int | None,
    threshold: float | None,
    detect_at: int | None,
    preset: str = "paper",
) -> dict[str, Any]:
    """The PolicyConfig overrides the options give `spec`: the preset's values (by default
    none: the paper's), then the policy file's entry for its algorithm, then --cap,
    --detect-at and --threshold (checked)."""
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
        policy = with_preset(preset, spec.algorithm, policy)
        PolicyConfig.for_algorithm(spec.algorithm, **policy)
    except (ValueError, TypeError) as exc:
        raise click.BadParameter(str(exc), param_hint="the policy options") from exc
    return policy


def few_shot_option(
    _ctx: click.Context, _param: click.Parameter, path: str | None
) -> tuple[Mapping[str, str], ...]:
    """--few-shot: the worked examples read from the JSONL file (checked, one-line error)."""
    if path is None:
        return ()
    from dynasor_sgl.lang.prompt import read_few_shot

    try:
        return tuple(read_few_shot(path))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--few-shot") from exc


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
    """What `run` and `eval` both take: where the router is, the policy (a preset and
    overrides), the program's parameters, prompt format and limits, the API key and the log
    level (see `program_options`). few_shot: the examples already read from --few-shot."""

    router_url: str
    preset: str
    cap: int | None
    threshold: float | None
    detect_at: int | None
    policy_file: str | None
    params: tuple[str, ...]
    system_prompt: str | None
    few_shot: tuple[Mapping[str, str], ...]
    timeout: float | None
    deadline: float | None
    api_key: str | None
    log_level: str

    def policy(self, spec: Any) -> dict[str, Any]:
        """The PolicyConfig overrides these options give `spec` (checked)."""
        return policy_overrides(
            spec, self.policy_file, self.cap, self.threshold, self.detect_at, self.preset
        )

    def program_params(self) -> dict[str, Any]:
        """The program's parameters: --set, then the prompt format options (a parameter given
        both ways is a usage error)."""
        params = parse_set(self.params)
        prompt: dict[str, Any] = {}
        if self.system_prompt is not None:
            prompt["system_prompt"] = self.system_prompt
        if self.few_shot:
            prompt["few_shot"] = [dict(example) for example in self.few_shot]
        for key in sorted(set(params) & set(prompt)):
            option = "--" + key.replace("_", "-")
            raise click.BadParameter(f"{key} is given by both --set and {option}; give one")
        return {**params, **prompt}


_PROGRAM_OPTIONS = [
    click.option(
        "--router",
        "router_url",
        envvar=ROUTER_ENV,
        default=DEFAULT_ROUTER_URL,
        help=f"Router URL [env: {ROUTER_ENV}].",
    ),
    click.option(
        "--preset",
        type=click.Choice(PRESETS),
        default=DEFAULT_PRESET,
        help="Policy defaults: cpu (caps sized for the embedded model on a CPU) or paper (the "
        "paper's GPU-scale caps). --cap, --policy and the rest apply on top.",
    ),
    click.option(
        "--cap", type=click.IntRange(min=1), help="Most knob units (default: per program)."
    ),
    THRESHOLD_OPTION,
    click.option("--detect-at", type=click.IntRange(min=1), help="First knob value read."),
    POLICY_OPTION,
    SET_OPTION,
    click.option(
        "--system-prompt",
        help="The system prompt of a shipped program (default: its own, a careful math "
        "assistant that boxes its answer).",
    ),
    click.option(
        "--few-shot",
        type=click.Path(exists=True, dir_okay=False),
        callback=few_shot_option,
        help='JSONL of {"question", "answer"} worked examples, given as user/assistant turns '
        "before the question.",
    ),
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
