"""`dynasor-sgl bench online`: the open-loop online serving benchmark from the command line.

Owns the options (defaults from `BenchConfig`, or its `quick()` smoke-run defaults), what the
user sees, and turning every user mistake or failed start into one line. The work is in
`dynasor_sgl.online`; sglang is imported only when a run starts.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import click

from dynasor_sgl.cli.common import (
    LOG_LEVEL_OPTION,
    POLICY_OPTION,
    SET_OPTION,
    THRESHOLD_OPTION,
    configure_logging,
    parse_set,
    policy_overrides,
)
from dynasor_sgl.eval.datasets import TASKS
from dynasor_sgl.online.config import QUICK, BenchConfig
from dynasor_sgl.online.mixes import MIXES, SINGLE, WORKLOADS
from dynasor_sgl.online.systems import DEFAULT_SYSTEMS, SYSTEMS
from dynasor_sgl.policy.presets import PRESETS

logger = logging.getLogger(__name__)
_D = BenchConfig.defaults()


def _default(name: str) -> str:
    """The help text's default, with the quick one when it differs."""
    value = _D[name]
    shown = ",".join(f"{v:g}" for v in value) if name == "rates" else value
    quick = QUICK.get(name)
    if quick is None:
        return f"[default: {shown}]"
    quick_shown = ",".join(f"{v:g}" for v in quick) if name == "rates" else quick
    return f"[default: {shown}; --quick: {quick_shown}]"


def _floats(text: str | None, what: str) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError as exc:
        raise click.BadParameter(
            f"expected numbers separated by commas, got {text!r}", param_hint=what
        ) from exc


@click.group("bench")
def bench_command() -> None:
    """Serving benchmarks against real SGLang workers."""


@bench_command.command("online")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Output folder (resumed if it holds a run of the same settings).",
)
@click.option("--quick", is_flag=True, help="A few programs at 2 rates: minutes.")
@click.option(
    "--workload",
    type=click.Choice(WORKLOADS),
    help=f"{SINGLE}: --program on --dataset; "
    + "; ".join(
        f"{name}: " + ", ".join(f"{p.program} (cap {p.cap})" for p in parts)
        for name, parts in MIXES.items()
    )
    + f" on synth:add1. {_default('workload')}",
)
@click.option(
    "--program",
    help="A registered program (self-consistency, cot-probe, mcts, ...) or module:SPEC "
    f"for your own ProgramSpec. {_default('program')}",
)
@click.option(
    "--dataset",
    help="JSONL file, hf:NAME[:CONFIG[:SPLIT]] or synth:TASK "
    f"({', '.join(sorted(TASKS))}). {_default('dataset')}",
)
@click.option(
    "--programs", type=click.IntRange(min=1), help=f"Programs per run. {_default('programs')}"
)
@click.option(
    "--repeat",
    type=click.IntRange(min=1),
    help="Run every system this many times, interleaved (ABC CBA ...) on the same arrivals; "
    f"figures are medians with their range. {_default('repeat')}",
)
@click.option("--rates", help=f"Arrival rates, programs/s, comma-separated. {_default('rates')}")
@click.option(
    "--systems",
    help=f"Comma-separated subset of: {', '.join(SYSTEMS)}. "
    f"[default: {', '.join(DEFAULT_SYSTEMS)}; --quick: {', '.join(QUICK['systems'])}]",
)
@click.option(
    "--slo-scale",
    type=click.FloatRange(min=0, min_open=True),
    help=f"SLO scale of the figure of merit. {_default('slo_scale')}",
)
@click.option(
    "--fixed-rate",
    type=click.FloatRange(min=0, min_open=True),
    help="Rate of the attainment-vs-SLO-scale view. [default: the middle rate]",
)
@click.option(
    "--cap", type=click.IntRange(min=1), help=f"The program's knob cap. {_default('cap')}"
)
@click.option(
    "--max-tokens",
    type=click.IntRange(min=1),
    help=f"Tokens per generation. {_default('max_tokens')}",
)
@THRESHOLD_OPTION
@POLICY_OPTION
@SET_OPTION
@click.option(
    "--preset",
    type=click.Choice(PRESETS),
    help="Policy defaults of the program, as in `run`: cpu (the embedded model's) or paper; "
    "--threshold and --policy apply on top, and the systems that run to the cap override the "
    "stop rule. [default: cpu on the bench's own workers of the embedded model; paper with "
    "--model-path, --worker-url or --simulate]",
)
@click.option(
    "--difficulty",
    type=click.Path(exists=True, dir_okay=False),
    help="A `dynasor-sgl eval` results file: per-question difficulty 1-3. [default: 1 for all]",
)
@click.option(
    "--base-deadline",
    type=click.FloatRange(min=0, min_open=True),
    help="Base deadline in s. [default: measured, median of uncontended programs]",
)
@click.option(
    "--worker-url",
    help="Use this SGLang worker for every system instead of "
    "starting the bench's own (sglang-lpm is then skipped).",
)
@click.option(
    "--max-inflight",
    type=click.IntRange(min=1),
    help="The routers' --max-inflight-per-worker. [default: the router's]",
)
@click.option("--model-path", help="Model of the bench's own workers. [default: embedded]")
@click.option("--seed", type=int, help=f"Seed of arrivals and built-in tasks. {_default('seed')}")
@click.option(
    "--simulate",
    "profile",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Run in the simulator on this engine profile (bench/profiles/*.json) instead of "
    "real workers: virtual time, the router's own decision code.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Simulated workers (with --simulate).",
)
@click.option(
    "--traces",
    default="synthetic:sc-math",
    show_default=True,
    help="With --simulate: a `dynasor-sgl eval` results file to replay, or "
    "synthetic:sc-math|mcts|rebase|mix.",
)
@LOG_LEVEL_OPTION
def online_command(
    quick: bool, log_level: str, profile: Path | None, workers: int, traces: str, **options: Any
) -> None:
    """Open-loop online serving benchmark: programs arrive as a seeded Poisson process at each
    rate, each with a deadline (SLO scale × difficulty × base deadline), and run on SGLang
    alone and behind the router's scheduling modes on the same trace and workers. Writes
    results.jsonl, summary.json, summary.md and PNGs into --out; the figure of merit is the
    highest rate at which 90% of programs meet their deadline, and its ratio to SGLang."""
    configure_logging(log_level)
    cfg = _config(quick, options, simulated=profile is not None)
    if profile is not None:
        _simulate(cfg, profile, workers, traces)
    else:
        _run(cfg)


def _simulate(cfg: BenchConfig, profile: Path, workers: int, traces: str) -> None:
    from dynasor_sgl.online.report import one_line
    from dynasor_sgl.sim.session import SimConfig, run_sim_bench

    try:
        summary = run_sim_bench(cfg, SimConfig(profile, workers, traces))
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(
        f"SIMULATED ({summary['sim_seconds']:g} s): {one_line(summary)}; "
        f"report {summary['outputs']['markdown']}"
    )


def _config(quick: bool, options: dict[str, Any], simulated: bool = False) -> BenchConfig:
    """The BenchConfig of the options given (the rest from its defaults, or the quick ones).
    The program's policy starts from the preset: the embedded model's (`cpu`) where the bench
    serves the embedded model itself, the policy table's (`paper`) elsewhere."""
    from dynasor_sgl.lang.registry import load_program

    given = {k: v for k, v in options.items() if v is not None and v != ()}
    mixed = given.get("workload", SINGLE) != SINGLE
    own = [
        k
        for k in ("program", "dataset", "cap", "max_tokens", "threshold", "policy_file", "params")
        if k in given
    ]
    if mixed and own:
        flags = ", ".join("--" + k.replace("_", "-") for k in own)
        raise click.UsageError(
            f"--workload {given['workload']} sets its own programs; drop {flags}"
        )
    threshold, policy_file = given.pop("threshold", None), given.pop("policy_file", None)
    embedded = not simulated and "model_path" not in given and "worker_url" not in given
    preset = given.pop("preset", None) or ("cpu" if embedded else "paper")
    params = given.pop("params", ())
    if "rates" in given:
        given["rates"] = _floats(given["rates"], "--rates")
    if "systems" in given:
        given["systems"] = tuple(s.strip() for s in given["systems"].split(",") if s.strip())
    if not mixed:
        try:
            spec = load_program(given.get("program", _D["program"]))
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--program") from exc
        policy = policy_overrides(spec, policy_file, None, threshold, None, preset)
        given.update(params=parse_set(params), policy=policy)
    try:
        return BenchConfig.quick(**given) if quick else BenchConfig(**given)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc


def _run(cfg: BenchConfig) -> None:
    from dynasor_sgl.eval.datasets import DatasetError
    from dynasor_sgl.lang import BackendError
    from dynasor_sgl.online.report import one_line
    from dynasor_sgl.online.results import ResultsError
    from dynasor_sgl.online.servers import ServerError
    from dynasor_sgl.online.session import BenchError, run_bench

    try:
        summary = run_bench(cfg)
    except (DatasetError, ResultsError, ValueError, BenchError, ServerError) as exc:
        raise click.ClickException(str(exc)) from exc
    except BackendError as exc:
        raise click.ClickException(f"a program could not run: {exc}") from exc
    except KeyboardInterrupt:
        click.echo(
            f"\nInterrupted; finished runs are in {cfg.out}. Re-run the same command to "
            "resume (an unfinished run is redone).",
            err=True,
        )
        sys.exit(130)
    click.echo(f"{one_line(summary)}; report {summary['outputs']['markdown']}")
    failed = summary.get("runs_with_errors") or []
    if failed:
        raise click.ClickException(
            f"{len(failed)} run(s) had failed programs ({', '.join(failed)}; see 'error' in "
            f"{summary['results']}); re-run the same command to redo them"
        )
