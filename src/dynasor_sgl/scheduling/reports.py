"""The report → decision stage around the policy: what admission learns and what it holds.

After a program's policy decided on a report, the serving side (the router, or the simulator)
does the same three things: the scheduler learns the program's own tokens per knob unit and
its pace (`AdmissionQueue.on_report`), a decision whose next grant cannot end by the program's
deadline becomes a `deadline` stop, and a granted expansion holds request slots on the
program's worker. Before the policy decides, the free capacity the program may expand into
(`slack_units`) is read from the same queue. Synchronous and clock-injected: no locks, no
aborts, no metrics (the caller carries out the decision), no policy call (the caller decides,
in a thread or not).
"""

from __future__ import annotations

from dataclasses import dataclass

from dynasor_sgl.policy.machine import Action, Decision
from dynasor_sgl.scheduling.admission import AdmissionQueue, slots_per_unit
from dynasor_sgl.scheduling.deadlines import deadline_stop


@dataclass(frozen=True)
class Progress:
    """What a program did since its last report, as the serving side counted it.

    program_id / algorithm / cap: the program and its policy's knob cap.
    last_used: knob units at its previous report (0 before the first); used: at this one.
    tokens: completion tokens it generated since its previous report.
    deadline_at: its absolute deadline on the caller's clock, None for none.
    """

    program_id: str
    algorithm: str
    cap: int
    last_used: int
    used: int
    tokens: int
    deadline_at: float | None = None


@dataclass(frozen=True)
class Settled:
    """The decision to carry out and the request slots to hold for its expansion (0: none)."""

    decision: Decision
    reserve_slots: int


def slack_units(queue: AdmissionQueue, worker: int, algorithm: str) -> int:
    """Knob units a program of `algorithm` on `worker` could add now: the worker's free slots
    (none while anything waits), less those reserved, in its units (0 if it cannot expand)."""
    per_unit = slots_per_unit(algorithm)
    return queue.slack(worker) // per_unit if per_unit else 0


def settle(
    queue: AdmissionQueue,
    progress: Progress,
    decision: Decision,
    now: float,
    stop_at_deadline: bool = False,
) -> Settled:
    """Teach the scheduler the program's tokens and pace, turn a grant that cannot end by the
    deadline into a `deadline` stop (with `stop_at_deadline`), and size the slots a granted
    expansion holds. The caller applies the decision and reserves `reserve_slots` (a stop
    reserves nothing: the caller forgets the program)."""
    units = max(0, progress.used - progress.last_used)
    remaining = max(0, progress.cap - progress.used)
    queue.on_report(progress.program_id, max(0, progress.tokens), units, remaining, now)
    if stop_at_deadline and progress.deadline_at is not None:
        pace = queue.predicted_time(progress.program_id, decision.grant)
        decision = deadline_stop(decision, now, progress.deadline_at, pace)
    slots = 0
    if decision.action is not Action.STOP and decision.expand:
        slots = decision.expand * slots_per_unit(progress.algorithm)
    return Settled(decision, slots)
