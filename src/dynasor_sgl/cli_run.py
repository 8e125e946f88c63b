"""`dynasor-sgl run PROGRAM "question"`: one reasoning program against a running router.

Owns printing the result (text or one JSON object); the options and their parsing are shared
with `eval` in `dynasor_sgl.cli_common`. The run itself is `dynasor_sgl.lang.run_program`;
sglang is imported only when the command runs, so `dynasor-sgl --help` stays fast.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import click

from dynasor_sgl.cli_common import ProgramOptions, load_spec, program_options

logger = logging.getLogger(__name__)


def _print_text(result: Any, knob: str) -> None:
    click.echo(f"answer:     {result.answer}")
    click.echo(f"exit:       {result.exit_reason} after {result.steps}/{result.cap} {knob}")
    trajectory = ", ".join(
        f"{point['step']}: " + " ".join(f"{k}={v:.2f}" for k, v in point.items() if k != "step")
        for point in result.certaindex
    )
    click.echo(f"certaindex: {trajectory or '(not read)'}")
    t = result.tokens
    router = result.router_tokens.get("total") if result.router_tokens else "?"
    click.echo(
        f"tokens:     reasoning {t['reasoning']}, probe {t['probe']}, reward "
        f"{t['reward']}, total {t['total']} (router: {router})"
    )
    click.echo(f"program:    {result.program_id} ({result.elapsed_s:.1f} s)")


@click.command("run", context_settings={"show_default": True})
@click.argument("program", metavar="PROGRAM")
@click.argument("question")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@program_options
def run_command(program: str, question: str, as_json: bool, opts: ProgramOptions) -> None:
    """Run PROGRAM on QUESTION against a running router and print the answer, exit reason,
    certaindex and tokens. PROGRAM is one of: self-consistency, cot-probe, best-of-n,
    beam-search, rebase, mcts, or module:SPEC for your own ProgramSpec."""
    from dynasor_sgl.lang import BackendError, run_program

    spec = load_spec(program)
    policy = opts.policy(spec)
    try:
        result = run_program(
            spec,
            question,
            router=opts.router_url,
            policy=policy,
            params=opts.program_params(),
            timeout_s=opts.timeout,
            deadline_s=opts.deadline,
            api_key=opts.api_key,
        )
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--set") from exc
    except BackendError as exc:
        raise click.ClickException(f"cannot run {spec.name} on {opts.router_url}: {exc}") from exc
    if as_json:
        click.echo(json.dumps(result.to_dict()))
    else:
        _print_text(result, spec.knob)
    if not result.ok:
        raise click.ClickException(f"program failed: {result.error}")
