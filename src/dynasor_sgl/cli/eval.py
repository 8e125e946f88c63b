"""`dynasor-sgl eval` (a program over a dataset, policies compared) and `dynasor-sgl calibrate`.

Owns the options and what the user sees; the work is in `dynasor_sgl.eval` and
`dynasor_sgl.replay.calibration`. sglang is imported only when a run starts.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import click

from dynasor_sgl.cli.common import ProgramOptions, load_spec, program_options
from dynasor_sgl.eval.datasets import TASKS, DatasetError, Fields
from dynasor_sgl.eval.results import ResultsError
from dynasor_sgl.eval.runner import REPLAYED_ALGORITHM, EvalSpec
from dynasor_sgl.launch.embedded import launch_embedded
from dynasor_sgl.policy import risk
from dynasor_sgl.policy.config import PolicyConfig
from dynasor_sgl.replay.calibration import CalibrationResult

logger = logging.getLogger(__name__)


# Imported from here by bench/ scripts (and, under its old private name, by older ones).
__all__ = ["calibrate_command", "eval_command", "launch_embedded"]
_launch = launch_embedded


_LEVEL = click.FloatRange(0, 1, min_open=True, max_open=True)


def bound_options(who: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """`--epsilon` and `--delta`, the label-free bound (defaults from `policy.risk`), their
    help saying `who` uses them."""

    def wrap(command: Callable[..., Any]) -> Callable[..., Any]:
        command = click.option(
            "--delta",
            type=_LEVEL,
            default=risk.DEFAULT_DELTA,
            help=f"{who}: chance that the calibration runs make the bound wrong.",
        )(command)
        return click.option(
            "--epsilon",
            type=_LEVEL,
            default=risk.DEFAULT_EPSILON,
            help=f"{who}: tolerated rate of answers that differ from the full budget's.",
        )(command)

    return wrap


@click.command("eval", context_settings={"show_default": True})
@click.option("--program", default="self-consistency", help="A shipped program's name.")
@click.option(
    "--dataset",
    help=f"A JSONL file, hf:NAME[:CONFIG[:SPLIT]], or synth:TASK ({', '.join(sorted(TASKS))}).",
)
@click.option("--limit", type=click.IntRange(min=1), help="First N questions (synth: how many).")
@click.option("--seed", type=int, default=0, help="Seed of the built-in task generators.")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Results JSONL (resumed if it exists); reports are written next to it.",
)
@click.option(
    "--launch",
    "launch_",
    is_flag=True,
    help="Start the embedded model and a router for this run instead.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=EvalSpec.concurrency,
    help="Questions in flight at once.",
)
@click.option("--question-field", default=Fields.question)
@click.option("--answer-field", default=Fields.answer)
@click.option("--id-field", default=Fields.id, help="Empty: use line numbers.")
@bound_options("Self-calibrated row")
@click.option(
    "--report-only",
    is_flag=True,
    help="Run nothing: write the reports of the finished --out file again from its records "
    "and its own settings (the results file is left as it is).",
)
@program_options
def eval_command(
    program: str,
    dataset: str | None,
    limit: int | None,
    seed: int,
    out: Path,
    launch_: bool,
    concurrency: int,
    question_field: str,
    answer_field: str,
    id_field: str,
    epsilon: float,
    delta: float,
    report_only: bool,
    opts: ProgramOptions,
) -> None:
    """Run PROGRAM over a dataset: the even-budget baseline and, for self-consistency, the
    self-calibrated policy (dynasor: thresholds fitted label free on the other half of the
    questions), the configured fixed thresholds (paper) and the oracle, replayed; for other
    programs the configured policy live. One JSONL record per question and row, a summary and
    plots."""
    from dynasor_sgl.eval.session import EvalRun, one_line

    if report_only:
        click.echo(one_line(_rewrite(out, epsilon, delta)))
        return
    if dataset is None:
        raise click.ClickException("--dataset is required (unless --report-only)")
    evspec = _eval_spec(program, concurrency, opts, epsilon=epsilon, delta=delta)
    fields = Fields(question_field, answer_field, id_field or None)
    with ExitStack() as stack:
        url = launch_embedded(stack) if launch_ else opts.router_url
        summary = _run_eval(EvalRun(evspec, dataset, out, url, limit, seed, fields), opts.api_key)
    click.echo(one_line(summary))
    if summary["errors"]:
        raise click.ClickException(
            f"{summary['errors']} record(s) failed (see 'error' in {out}); re-run the same "
            "command to retry them"
        )


def _eval_spec(program: str, concurrency: int, opts: ProgramOptions, **bound: float) -> EvalSpec:
    """The EvalSpec of a shipped (or user's) program with the command's options."""
    spec = load_spec(program)
    if spec.algorithm == REPLAYED_ALGORITHM:
        # Self-consistency's configured row is "paper": the paper's stop rule (or the user's
        # own), not the preset's calibrated one, which the self-calibrated row stands for.
        opts = dataclasses.replace(opts, preset="paper")
    policy, params = opts.policy(spec), opts.program_params()
    if spec.algorithm == REPLAYED_ALGORITHM and "record_topk" in spec.function.arg_names:
        # Token confidences let the report replay confidence trimming over the same samples.
        params.setdefault("record_topk", PolicyConfig.for_algorithm("sc", **policy).confidence_topk)
    return EvalSpec(
        spec.name,
        spec.algorithm,
        policy,
        params,
        concurrency,
        opts.timeout,
        opts.deadline,
        **bound,
    )


def _rewrite(out: Path, epsilon: float, delta: float) -> dict[str, Any]:
    from dynasor_sgl.eval.session import rewrite_reports

    if not out.exists():
        raise click.ClickException(f"--report-only: {out} does not exist")
    try:
        return rewrite_reports(out, lambda p: load_spec(p).algorithm, epsilon, delta)
    except (ResultsError, ValueError, KeyError) as exc:
        raise click.ClickException(f"--report-only: {out}: {exc}") from exc


def _run_eval(run: Any, api_key: str | None) -> dict[str, Any]:
    """Run an `EvalRun` against its router; every failure a one-line error, Ctrl-C exits 130
    with the finished records kept."""
    from dynasor_sgl.eval.session import run_eval
    from dynasor_sgl.lang import BackendError, RouterClient, run_program

    client = RouterClient(run.router, api_key)

    def run_one(name: str, question: str, **kwargs: Any) -> Any:
        return run_program(name, question, router=client, **kwargs)

    try:
        return run_eval(run, run_one, client.abort)
    except (DatasetError, ResultsError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    except BackendError as exc:
        raise click.ClickException(f"router {run.router}: {exc}") from exc
    except KeyboardInterrupt:
        click.echo(
            f"\nInterrupted; finished records are in {run.out}. Re-run the same command to resume.",
            err=True,
        )
        sys.exit(130)


@click.command("calibrate", context_settings={"show_default": True})
@click.argument(
    "results", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option(
    "--margin",
    type=click.FloatRange(0, 1),
    default=0.0,
    help="Accuracy the policy may lose against the full budget (0.02 = 2 points).",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Policy file to write (JSON: algorithm -> overrides); the full result "
    "with the accuracy-vs-tokens frontier goes next to it (.calibration.json).",
)
@click.option(
    "--detect-every",
    default="0,1,2,5",
    help="Candidates for how often certaindex is read after the first reading "
    "(comma-separated samples; 0 = once, the paper's rule). Reading often saves "
    "more tokens but draws samples in smaller batches (more latency).",
)
@click.option(
    "--holdout",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=None,
    help="Hold out this fraction of the questions (split by a hash of the question id): "
    "thresholds are chosen on the rest and measured on them, beside the full budget and "
    "the fixed caps.",
)
@click.option(
    "--target",
    type=click.Choice(["accuracy", "full-budget"]),
    default="accuracy",
    help="accuracy: within --margin of the full budget's accuracy, scored on the gold "
    "answers. full-budget: label-free, the answer the full budget gives kept with "
    "disagreement at most --epsilon at confidence 1 - --delta (Learn-then-Test), measured "
    "cross-fitted over --folds.",
)
@bound_options("full-budget")
@click.option(
    "--folds", type=click.IntRange(2, 20), default=2, help="full-budget: cross-fitting folds."
)
def calibrate_command(
    results: tuple[Path, ...],
    margin: float,
    out: Path,
    detect_every: str,
    holdout: float | None,
    target: str,
    epsilon: float,
    delta: float,
    folds: int,
) -> None:
    """Pick the cheapest thresholds that keep accuracy within MARGIN of the full budget, from
    eval results files of self-consistency (their full-budget baseline runs, pooled); with
    `--target full-budget`, without labels."""
    from dynasor_sgl.eval.calibrate import calibrate_results
    from dynasor_sgl.replay.holdout import one_line as holdout_line

    if target == "full-budget":
        _calibrate_full_budget(results, out, epsilon, delta, folds)
        return
    try:
        everys = tuple(int(v) for v in detect_every.split(",") if v.strip())
        policy, result, report = calibrate_results(results, margin, everys, holdout)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(policy, indent=2) + "\n")
    full = result.to_dict()
    if report is not None:
        full["holdout"] = report.to_dict()
    out.with_suffix(".calibration.json").write_text(json.dumps(full, indent=2))
    click.echo(_calibration_line(result) + f"; wrote {out}")
    if report is not None:
        click.echo(holdout_line(report))


def _calibrate_full_budget(
    results: tuple[Path, ...], out: Path, epsilon: float, delta: float, folds: int
) -> None:
    from dynasor_sgl.eval.calibrate import calibrate_full_budget, full_budget_line

    try:
        policy, report = calibrate_full_budget(results, epsilon, delta, folds)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(policy, indent=2) + "\n")
    out.with_suffix(".calibration.json").write_text(json.dumps(report, indent=2))
    click.echo(full_budget_line(report) + f"; wrote {out}")


def _calibration_line(result: CalibrationResult) -> str:
    chosen = (
        "run to the cap"
        if result.thresholds is None
        else (
            f"thresholds {result.thresholds} at {result.detect_at}, read "
            + (f"every {result.detect_every}" if result.detect_every else "once")
        )
    )
    return (
        f"{result.n_programs} runs: {chosen}; accuracy {100 * result.accuracy:.1f}% "
        f"(full budget {100 * result.full_accuracy:.1f}%), tokens saved "
        f"{100 * result.saving:.1f}% (oracle {100 * result.oracle_saving:.1f}%)"
    )
