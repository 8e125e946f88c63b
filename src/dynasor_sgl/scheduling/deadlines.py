"""Deadlines: whether a program can still meet its deadline, and the stop when it cannot.

Pure and clock-injected: the router (and a simulator) pass `now` and the program's predicted
pace from the scheduler. Knows nothing about HTTP, SGLang or how the pace is predicted.
"""

from __future__ import annotations

from dynasor_sgl.policy.machine import Action, Decision, StopReason


def can_meet(now: float, deadline_at: float, predicted_s: float | None) -> bool:
    """Whether work predicted to take `predicted_s` seconds from `now` ends by `deadline_at`.
    With no prediction yet (None) only a passed deadline rules it out."""
    if now >= deadline_at:
        return False
    return predicted_s is None or now + predicted_s <= deadline_at


def deadline_stop(
    decision: Decision, now: float, deadline_at: float, next_grant_s: float | None
) -> Decision:
    """`decision`, or a stop with reason `deadline` when the program's next grant (predicted
    to take `next_grant_s` seconds) cannot end by its deadline: it then ends now with its
    current best answer instead of finishing late. A stop stays the stop it was."""
    if decision.action is Action.STOP or decision.grant == 0:
        return decision
    if can_meet(now, deadline_at, next_grant_s):
        return decision
    return Decision(Action.STOP, reason=StopReason.DEADLINE, values=decision.values)
