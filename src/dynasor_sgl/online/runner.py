"""The open loop: every program starts at its arrival time on its own thread, whatever is running.

There is no client-side concurrency limit: a run of n programs has n threads, each sleeping
until its arrival, then running its program to the end (no abort at the deadline). Latency
counts from the scheduled arrival, so a late start counts against the system, and the lag is
recorded (`start_lag_s`) to show the client kept up. Records are handed to `on_record` on the
calling thread as programs finish. What running a program means is injected (`execute`), so
the loop is tested with a fake; `program_fields` turns a `ProgramResult` into record fields.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from dynasor_sgl.online.workload import Arrival

logger = logging.getLogger(__name__)

# (arrival, seconds it started late) -> the program's record fields; may raise.
Execute = Callable[[Arrival, float], Mapping[str, Any]]


def _one(
    arrival: Arrival,
    due: float,
    execute: Execute,
    label: Mapping[str, Any],
    done: queue.Queue[dict[str, Any]],
) -> None:
    wait = due - time.monotonic()
    if wait > 0:
        time.sleep(wait)
    started = time.monotonic()
    try:
        fields = dict(execute(arrival, started - due))
    except Exception as exc:  # one failed program is a record, not the end of the run
        logger.warning("program %d (%s) failed: %s", arrival.index, arrival.item.id, exc)
        fields = {"status": "error", "error": f"{type(exc).__name__}: {exc}"}
    ended = time.monotonic()
    done.put(
        {
            **label,
            "index": arrival.index,
            "question_id": arrival.item.id,
            "arrival_s": round(arrival.offset_s, 4),
            "difficulty": arrival.difficulty,
            "latency_s": round(ended - due, 4),
            "start_lag_s": round(started - due, 4),
            **fields,
        }
    )


def run_open_loop(
    arrivals: Sequence[Arrival],
    execute: Execute,
    label: Mapping[str, Any],
    on_record: Callable[[dict[str, Any]], None],
) -> float:
    """Run every arrival open-loop; each record (label + arrival + `execute`'s fields +
    latency) goes to `on_record` as it finishes. Returns the run's wall time (s).

    Threads are daemons: on Ctrl-C the caller stops the servers and they die with the process.
    """
    done: queue.Queue[dict[str, Any]] = queue.Queue()
    t0 = time.monotonic() + 0.05  # every thread is started before the first arrival
    for arrival in arrivals:
        threading.Thread(
            target=_one,
            args=(arrival, t0 + arrival.offset_s, execute, label, done),
            name=f"program-{arrival.index}",
            daemon=True,
        ).start()
    for _ in arrivals:
        on_record(done.get())
    return time.monotonic() - t0


def program_fields(result: Any, gold: str) -> dict[str, Any]:
    """The record fields of a `ProgramResult`: outcome, answer and correctness, tokens."""
    from dynasor_sgl.answers.equivalence import equivalent

    ok = result.status == "ok"
    return {
        "program_id": result.program_id,
        "status": result.status,
        "answer": result.answer,
        "gold": gold,
        "correct": equivalent(result.answer, gold) if ok else None,
        "exit_reason": result.exit_reason,
        "steps": result.steps,
        "cap": result.cap,
        "tokens": int(result.tokens.get("total", 0)),
        "tokens_detail": dict(result.tokens),
        "router_tokens": result.router_tokens,
        "elapsed_s": result.elapsed_s,
        "wait_s": result.wait_s,
        "error": result.error,
    }
