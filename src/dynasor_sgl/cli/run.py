"""`dynasor-sgl run PROGRAM "question"`: one reasoning program against a running router.

Owns printing the result (text or one JSON object) and the progress line shown while it runs
(on a terminal only); the options and their parsing are shared with `eval` in
`dynasor_sgl.cli.common`. The run itself is `dynasor_sgl.lang.run_program`; sglang is imported
only when the command runs, so `dynasor-sgl --help` stays fast.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from contextlib import ExitStack
from typing import IO, Any

import click
from tqdm import tqdm

from dynasor_sgl.cli.common import ProgramOptions, launch_embedded, load_spec, program_options
from dynasor_sgl.protocol import UNITS_KEY, UNITS_KEYS

logger = logging.getLogger(__name__)


class RunProgress:
    """A progress line for one program run: knob units used of the cap, the latest certaindex
    values and the tokens so far. Called as the run's observer (`run_program(observer=...)`),
    from whichever thread reported or accounted; `close` removes the line."""

    def __init__(self, program: str, knob: str, file: IO[str]) -> None:
        self._lock = threading.Lock()
        self.bar = tqdm(
            desc=program,
            file=file,
            leave=False,
            dynamic_ncols=True,
            bar_format="{desc}: {n_fmt}/{total_fmt} " + knob + " |{bar}| {elapsed}{postfix}",
        )

    def __call__(self, ctx: Any) -> None:
        latest = ctx.trajectory[-1] if ctx.trajectory else {}
        values = " ".join(f"{k}={v:.2f}" for k, v in latest.items() if k not in UNITS_KEYS)
        with self._lock:
            self.bar.total = ctx.config.cap
            self.bar.n = min(ctx.steps, ctx.config.cap)
            self.bar.set_postfix_str(
                f"certaindex {values or '-'}, tokens {ctx.usage.total}", refresh=True
            )

    def close(self) -> None:
        with self._lock:
            self.bar.close()


def _print_text(result: Any, knob: str) -> None:
    click.echo(f"answer:     {result.answer}")
    click.echo(f"exit:       {result.exit_reason} after {result.steps}/{result.cap} {knob}")
    trajectory = ", ".join(
        f"{point[UNITS_KEY]}: "
        + " ".join(f"{k}={v:.2f}" for k, v in point.items() if k not in UNITS_KEYS)
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
@click.option(
    "--launch",
    "launch_",
    is_flag=True,
    help="Start the embedded model and a router for this run instead of using --router.",
)
@program_options
def run_command(
    program: str, question: str, as_json: bool, launch_: bool, opts: ProgramOptions
) -> None:
    """Run PROGRAM on QUESTION against a running router and print the answer, exit reason,
    certaindex and tokens. PROGRAM is one of: self-consistency, cot-probe, best-of-n,
    beam-search, rebase, mcts, or module:SPEC for your own ProgramSpec. On a terminal, a
    progress line on stderr shows the knob units used, certaindex and tokens so far."""
    from dynasor_sgl.lang import BackendError, run_program

    spec = load_spec(program)
    policy, params = opts.policy(spec), opts.program_params()
    with ExitStack() as stack:
        url = launch_embedded(stack) if launch_ else opts.router_url
        progress = RunProgress(spec.name, spec.knob, sys.stderr) if sys.stderr.isatty() else None
        if progress is not None:
            stack.callback(progress.close)
        try:
            result = run_program(
                spec,
                question,
                router=url,
                policy=policy,
                params=params,
                timeout_s=opts.timeout,
                deadline_s=opts.deadline,
                api_key=opts.api_key,
                observer=progress,
            )
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--set") from exc
        except BackendError as exc:
            raise click.ClickException(f"cannot run {spec.name} on {url}: {exc}") from exc
    if as_json:
        click.echo(json.dumps(result.to_dict()))
    else:
        _print_text(result, spec.knob)
    if not result.ok:
        raise click.ClickException(f"program failed: {result.error}")
