"""`sglang.launch_server` with every scheduler step written to a JSON-lines file.

    python -m dynasor_sgl.launch.steptrace --step-trace FILE <sglang.launch_server arguments>

The simulator's step model (`sim.profile`) was fitted from request wall clocks, which mix
the engine's steps with HTTP, tokenizing and the client; a step trace measures the steps
themselves, in the scheduler process, under whatever load the worker serves (a speed sweep
or a real online run). SGLang's own per-step telemetry (`--enable-forward-pass-metrics`)
times steps with CUDA events and does not run on the CPU worker, hence this wrapper.

It wraps two methods of SGLang's `Scheduler` (`get_next_batch_to_run`, `run_batch`) and
writes one line per step that runs: `{"t": start, "run_end": end of the forward,
"mode": "decode" | "extend", "batch": requests, "new_tokens": prompt tokens computed
(extend), "cached": prompt tokens reused (extend), "context": tokens in the batch's
sequences, "waiting": requests in SGLang's waiting queue, "worker": port}` (times are
`time.perf_counter()` of the scheduler process). `sim.steps` reads it and fits a profile.
SGLang starts its scheduler with multiprocessing's spawn, which re-runs this module's top
level in the child, so the wrap is in place there; the file's path reaches the child in
the environment. The wrap names SGLang internals: a version without them fails at start-up
with a message naming this module, not silently without a trace.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

ENV = "DYNASOR_SGL_STEP_TRACE"
FLAG = "--step-trace"


_installed: list[str] = []


def _install(path: str) -> None:
    """Wraps the scheduler's methods so that each step that runs appends a line to `path`
    (once per process)."""
    if _installed:
        return
    _installed.append(path)
    try:
        from sglang.srt.managers.scheduler import Scheduler
    except ImportError as exc:  # pragma: no cover - depends on the installed SGLang
        raise SystemExit(
            f"dynasor_sgl.launch.steptrace: cannot import SGLang's Scheduler: {exc}"
        ) from exc
    for name in ("get_next_batch_to_run", "run_batch"):
        if not hasattr(Scheduler, name):  # pragma: no cover - depends on the installed SGLang
            raise SystemExit(f"dynasor_sgl.launch.steptrace: SGLang's Scheduler has no {name}()")
    get_next, run_batch = Scheduler.get_next_batch_to_run, Scheduler.run_batch
    out: list[Any] = []

    def traced_get_next(self: Any) -> Any:
        self._dynasor_step_t = time.perf_counter()
        return get_next(self)

    def traced_run_batch(self: Any, batch: Any, *args: Any, **kwargs: Any) -> Any:
        result = run_batch(self, batch, *args, **kwargs)
        end = time.perf_counter()
        if not out:
            out.append(open(path, "a", buffering=1))  # noqa: SIM115 - lives with the process
        out[0].write(json.dumps(step_line(self, batch, end)) + "\n")
        return result

    Scheduler.get_next_batch_to_run = traced_get_next
    Scheduler.run_batch = traced_run_batch


def step_line(scheduler: Any, batch: Any, end: float) -> dict[str, Any]:
    """The trace line of one step of `batch` that ended its forward at `end`."""
    mode = batch.forward_mode
    extend = bool(mode.is_extend())
    line: dict[str, Any] = {
        "t": getattr(scheduler, "_dynasor_step_t", end),
        "run_end": end,
        "mode": "extend" if extend else ("decode" if mode.is_decode() else str(mode)),
        "batch": int(batch.batch_size()),
        "context": int(getattr(batch, "seq_lens_sum", 0) or 0),
        "waiting": len(getattr(scheduler, "waiting_queue", ()) or ()),
        "worker": getattr(getattr(scheduler, "server_args", None), "port", None),
    }
    if extend:
        line["new_tokens"] = int(sum(batch.extend_lens or ()))
        line["cached"] = int(sum(batch.prefix_lens or ()))
    return line


def split_argv(argv: list[str]) -> tuple[str | None, list[str]]:
    """(the --step-trace path or None, the other arguments); `--step-trace=PATH` also works.
    A --step-trace without a path is a ValueError."""
    rest: list[str] = []
    path: str | None = None
    it = iter(argv)
    for arg in it:
        if arg == FLAG:
            path = next(it, None)
            if path is None:
                raise ValueError(f"{FLAG} needs a file path")
        elif arg.startswith(FLAG + "="):
            path = arg.split("=", 1)[1]
        else:
            rest.append(arg)
    return path, rest


if os.environ.get(ENV):  # the spawned scheduler (and the parent, once main set it)
    _install(os.environ[ENV])


def main(argv: list[str] | None = None) -> None:
    path, rest = split_argv(list(sys.argv[1:] if argv is None else argv))
    if path is None:
        raise SystemExit(f"usage: python -m dynasor_sgl.launch.steptrace {FLAG} FILE <sglang args>")
    os.environ[ENV] = os.path.abspath(path)
    _install(os.environ[ENV])
    from sglang.launch_server import run_server
    from sglang.srt.server_args import prepare_server_args

    run_server(prepare_server_args(rest))


if __name__ == "__main__":
    main()
