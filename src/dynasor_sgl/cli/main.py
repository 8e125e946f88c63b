"""The `dynasor-sgl` command line. Logging is configured here, once.

Owns argument parsing, what the user sees, and turning errors into one clear line and an exit
code. The work itself lives in `launch` (and, later, the router, programs and eval modules).
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import fields
from types import FrameType
from typing import IO, Any

import click

from dynasor_sgl import __version__
from dynasor_sgl.cli.bench import bench_command
from dynasor_sgl.cli.chat import chat_command
from dynasor_sgl.cli.common import configure_logging, interrupt_on_terminate
from dynasor_sgl.cli.eval import calibrate_command, eval_command
from dynasor_sgl.cli.run import run_command
from dynasor_sgl.launch.cluster import Cluster, LaunchError, run_cluster
from dynasor_sgl.launch.config import DEVICES, LOG_LEVELS, LaunchConfig
from dynasor_sgl.launch.worker import WorkerProcess
from dynasor_sgl.policy.config import load_policy_file
from dynasor_sgl.protocol import API_KEY_ENV
from dynasor_sgl.router.calibration_file import load_book
from dynasor_sgl.router.config import INFLIGHT_LIMITS, SCHEDULING, RouterConfig
from dynasor_sgl.router.effort import EFFORTS

logger = logging.getLogger(__name__)
_DEFAULTS = {f.name: f.default for f in fields(LaunchConfig)}
_ROUTER_DEFAULTS = {f.name: f.default for f in fields(RouterConfig)}


def _router_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The router's options, shared by `launch` (which starts one) and `router`."""
    options = [
        click.option(
            "--scheduling",
            type=click.Choice(SCHEDULING),
            default=_ROUTER_DEFAULTS["scheduling"],
            help="Order of waiting work: sjf (shortest-job-first with aging, gang), "
            "deadline (least slack first, gang), plas (program-level least attained "
            "service, gang: Autellix's), fifo (programs in arrival order, gang) or fcfs "
            "(requests in arrival order).",
        ),
        click.option(
            "--inflight-limit",
            type=click.Choice(INFLIGHT_LIMITS),
            default=_ROUTER_DEFAULTS["inflight_limit"],
            help="Each worker's in-flight limit: adaptive (moves towards the worker's "
            "throughput knee as it serves), fixed (stays at --max-inflight-per-worker) or auto "
            "(launch on CUDA: adaptive from 128, at most 1024; otherwise fixed).",
        ),
        click.option(
            "--max-inflight-per-worker",
            type=click.IntRange(min=1),
            default=_ROUTER_DEFAULTS["max_inflight_per_worker"],
            help="Requests in flight per worker before the router queues them: the fixed "
            "limit, or where the adaptive one starts (12 suits the CPU worker; try 128 with "
            "--inflight-limit-max 1024 on a GPU).",
        ),
        click.option(
            "--inflight-limit-min",
            type=click.IntRange(min=1),
            default=_ROUTER_DEFAULTS["inflight_limit_min"],
            help="The adaptive limit's floor.",
        ),
        click.option(
            "--inflight-limit-max",
            type=click.IntRange(min=1),
            default=_ROUTER_DEFAULTS["inflight_limit_max"],
            help="The adaptive limit's ceiling.",
        ),
        click.option(
            "--aging-rate",
            type=click.FloatRange(min=0, min_open=True),
            default=_ROUTER_DEFAULTS["aging_rate"],
            help="Tokens of predicted work forgiven per second a program waits.",
        ),
        click.option(
            "--starvation-bound-s",
            type=click.FloatRange(min=0, min_open=True),
            default=_ROUTER_DEFAULTS["starvation_bound_s"],
            help="Longest a ready program waits (plus one dispatch per program ahead of it).",
        ),
        click.option(
            "--deadline-stop/--no-deadline-stop",
            default=_ROUTER_DEFAULTS["deadline_stop"],
            help="Stop a program whose next grant cannot meet its deadline, with its "
            "current best answer (exit reason 'deadline').",
        ),
        click.option(
            "--program-ttl-s",
            type=click.FloatRange(min=0, min_open=True),
            default=_ROUTER_DEFAULTS["program_ttl_s"],
            help="End a program idle this long as 'abandoned'.",
        ),
        click.option(
            "--default-effort",
            type=click.Choice(sorted(EFFORTS)),
            default=None,
            help="Early exit for OpenAI chat requests that ask for none (a reasoning_effort "
            "name; see the README's effort table). Default: off.",
        ),
        click.option(
            "--api-key",
            envvar=API_KEY_ENV,
            default=None,
            show_default=False,
            help=f"Require 'Authorization: Bearer KEY' on every router route [env: {API_KEY_ENV}].",
        ),
        click.option(
            "--policy",
            "policy_file",
            type=click.Path(exists=True, dir_okay=False),
            default=None,
            help="JSON policy file (algorithm -> overrides, e.g. from "
            "`dynasor-sgl calibrate`) applied to every program.",
        ),
        click.option(
            "--explore",
            type=float,
            default=_ROUTER_DEFAULTS["explore"],
            help="Share of self-consistency programs run to their cap to learn the stop rule "
            "from (self-calibration; 0 = off).",
        ),
        click.option(
            "--calibration",
            "calibration_file",
            type=click.Path(dir_okay=False),
            default=None,
            help="Keep what self-calibration learned in this JSON file (loaded at start if it "
            "exists, rewritten on every change).",
        ),
        click.option(
            "--calibration-epsilon",
            type=float,
            default=_ROUTER_DEFAULTS["calibration_epsilon"],
            help="Self-calibration's bound: answers that differ from the full budget's, at most.",
        ),
        click.option(
            "--calibration-delta",
            type=float,
            default=_ROUTER_DEFAULTS["calibration_delta"],
            help="The chance that the calibration draw makes the bound wrong.",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


class CliError(click.ClickException):
    """One clear line, then (optionally) the tail of a log to explain it."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail

    def show(self, file: IO[Any] | None = None) -> None:
        super().show(file)
        if self.detail:
            tail = "\n".join("  | " + line for line in self.detail.rstrip().splitlines())
            click.echo(f"last lines of the log:\n{tail}", err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="dynasor-sgl")
def main() -> None:
    """dynasor-sgl: serve LLM reasoning programs on SGLang with Certaindex early exit."""
    interrupt_on_terminate()  # `launch` and the servers install their own handlers over it


@main.command(context_settings={"show_default": True})
@click.option(
    "--model-path",
    type=str,
    default=None,
    help="Hugging Face model folder. Default: the embedded SmolLM2-135M-Instruct.",
)
@click.option("--workers", type=int, default=_DEFAULTS["workers"], help="SGLang worker processes.")
@click.option("--host", default=_DEFAULTS["host"], help="Address to bind.")
@click.option(
    "--port",
    type=int,
    default=_DEFAULTS["port"],
    help="The port users talk to; other workers take the next free ports.",
)
@click.option(
    "--max-total-tokens",
    type=int,
    default=None,
    help="KV-cache tokens per worker. Default: 65536 on CPU, SGLang's sizing on GPU.",
)
@click.option("--device", type=click.Choice(DEVICES), default=_DEFAULTS["device"])
@click.option("--log-level", type=click.Choice(LOG_LEVELS), default=_DEFAULTS["log_level"])
@click.option(
    "--startup-timeout",
    type=float,
    default=_DEFAULTS["startup_timeout"],
    help="Seconds to wait for each worker to become healthy.",
)
@click.option(
    "--router/--no-router",
    default=_DEFAULTS["router"],
    help="Serve through the Dynasor router (programs, early exit) or SGLang directly.",
)
@_router_options
@click.option(
    "--log-dir",
    type=str,
    default=None,
    help="Folder for worker logs. Default: a fresh folder under ~/.cache/dynasor-sgl/logs.",
)
@click.option(
    "--step-trace",
    type=click.Path(dir_okay=False),
    default=None,
    help="Append a JSON line per engine step of every worker to this file (what ran, how "
    "long): the measurement the simulator's step model is fitted from.",
)
@click.argument("sglang_args", nargs=-1, type=click.UNPROCESSED, metavar="[-- SGLANG_ARGS...]")
def launch(sglang_args: tuple[str, ...], **options: Any) -> None:
    """Start SGLang worker(s) and serve until Ctrl-C or SIGTERM.

    Arguments after `--` go verbatim to every `sglang.launch_server`, e.g.
    `dynasor-sgl launch -- --schedule-policy lpm` (SGLang allows its priority scheduling only
    with fcfs or lof: with lpm the router orders its own queue and sends no priority).
    """
    configure_logging(options["log_level"], timestamps=True)
    # The router's options go to its RouterConfig; host and port are launch's own.
    router_fields = {f.name for f in fields(RouterConfig)} - {"host", "port"}
    settings = {k: options.pop(k) for k in list(options) if k in router_fields}
    try:
        cfg = LaunchConfig(
            sglang_args=sglang_args, router_config=RouterConfig(**settings), **options
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    stop = _install_stop_handlers()
    try:
        with run_cluster(
            cfg, progress=_say, on_ready=_ready_printer(cfg.workers), stop=stop
        ) as cluster:
            _print_ready(cluster)
            code = _serve_until_stopped(cluster, stop)
    except LaunchError as exc:
        if stop.is_set():
            _say("Interrupted during start-up; all workers stopped.")
            sys.exit(130)
        raise CliError(str(exc), exc.log_tail) from exc
    _say("Stopped; all workers shut down.")
    sys.exit(code)


def _say(message: str) -> None:
    click.echo(message, err=True)


def _install_stop_handlers() -> threading.Event:
    stop = threading.Event()

    def handler(signum: int, _frame: FrameType | None) -> None:
        logger.info("received %s, shutting down", signal.Signals(signum).name)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, handler)
    return stop


def _ready_printer(total: int) -> Callable[[WorkerProcess, float], None]:
    def on_ready(worker: WorkerProcess, elapsed: float) -> None:
        where = worker.name if worker.role == "router" else f"worker {worker.index + 1}/{total}"
        _say(f"{where} ready at {worker.url} ({elapsed:.1f} s)")

    return on_ready


def _print_ready(cluster: Cluster) -> None:
    url = cluster.url
    click.echo(f"dynasor-sgl serving {cluster.model_dir.name} on {cluster.device} at {url}")
    if cluster.router is not None:
        click.echo(
            f"  router:   {url}  ({cluster.config.router_config.scheduling} scheduling; "
            f"log: {cluster.router.log_path})"
        )
    for w in cluster.workers:
        click.echo(f"  worker {w.index}: {w.url}  (log: {w.log_path})")
    click.echo(
        f"Try: curl {url}/generate -H 'Content-Type: application/json' "
        '-d \'{"text": "The capital of France is", "sampling_params": {"max_new_tokens": 16}}\''
    )
    click.echo("Press Ctrl-C to stop.", nl=True)
    sys.stdout.flush()


def _serve_until_stopped(cluster: Cluster, stop: threading.Event) -> int:
    """Wait for a stop signal; a worker dying on its own ends the launch with an error."""
    while not stop.wait(1.0):
        dead = cluster.dead_workers()
        if dead:
            w = dead[0]
            _say(
                f"Error: worker {w.index} exited with code {w.proc.returncode}; "
                f"log: {w.log_path}; shutting down"
            )
            return 1
    return 0


@main.command(context_settings={"show_default": True})
@click.option(
    "--worker-url",
    "worker_urls",
    multiple=True,
    required=True,
    help="Base URL of an SGLang worker (repeat for several); more join and leave while the "
    "router runs through POST and DELETE /workers.",
)
@click.option("--host", default=_ROUTER_DEFAULTS["host"], help="Address to bind.")
@click.option("--port", type=int, default=_ROUTER_DEFAULTS["port"])
@_router_options
@click.option(
    "--worker-priority/--no-worker-priority",
    default=_ROUTER_DEFAULTS["worker_priority"],
    help="Send SGLang per-request priority (workers need --enable-priority-scheduling).",
)
@click.option("--log-level", type=click.Choice(LOG_LEVELS), default="info")
def router(log_level: str, worker_urls: tuple[str, ...], **options: Any) -> None:
    """Run the Dynasor router alone in front of existing SGLang servers."""
    from dynasor_sgl.router.server import serve

    configure_logging(log_level, timestamps=True)
    try:
        policy_file = options.pop("policy_file")
        defaults = load_policy_file(policy_file) if policy_file else {}
        cfg = RouterConfig(worker_urls=worker_urls, policy_defaults=defaults, **options)
        load_book(cfg.calibration_file, cfg.calibration_settings())
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    serve(cfg, log_level)


main.add_command(run_command)
main.add_command(eval_command)
main.add_command(calibrate_command)
main.add_command(bench_command)
main.add_command(chat_command)

if __name__ == "__main__":
    main()
