"""The report → decision step shared by the router and the simulator (scheduling.reports)."""

from __future__ import annotations

from dynasor_sgl.policy.machine import Action, Decision, StopReason
from dynasor_sgl.scheduling import Order, SchedulerConfig
from dynasor_sgl.scheduling.admission import AdmissionQueue, Slots
from dynasor_sgl.scheduling.reports import Progress, settle, slack_units


def queue(bound: int = 4) -> AdmissionQueue:
    q = AdmissionQueue([Slots(0)], bound, SchedulerConfig(order=Order.DEADLINE))
    q.ensure_program(0, "p", 0.0, 10, "sc", deadline_at=30.0)
    return q


def test_the_scheduler_learns_tokens_and_pace() -> None:
    q = queue()
    decision = Decision(Action.CONTINUE, grant=5)
    out = settle(q, Progress("p", "sc", 10, 0, 5, 200, 30.0), decision, now=10.0)
    assert out == type(out)(decision, 0)
    assert q.scheduler(0).tokens_per_unit("p") == 40.0
    assert q.predicted_time("p") == 10.0  # 5 units left at 2 s a unit


def test_a_grant_that_cannot_end_by_the_deadline_stops() -> None:
    q = queue()
    # 5 units in 20 s: 4 s a unit; the next 5 need 20 s but only 10 are left
    progress = Progress("p", "sc", 10, 0, 5, 100, 30.0)
    out = settle(q, progress, Decision(Action.CONTINUE, grant=5), 20.0, stop_at_deadline=True)
    assert out.decision.action is Action.STOP
    assert out.decision.reason is StopReason.DEADLINE and out.reserve_slots == 0
    kept = settle(queue(), progress, Decision(Action.CONTINUE, grant=5), 20.0)
    assert kept.decision.action is Action.CONTINUE  # without the deadline stop


def test_expansion_reserves_slots_in_the_algorithms_units() -> None:
    q = queue()
    d = Decision(Action.EXPAND, grant=7, expand=2)
    assert settle(q, Progress("p", "mcts", 15, 3, 5, 10), d, 1.0).reserve_slots == 6
    assert settle(q, Progress("p", "sc", 10, 5, 5, 0), d, 1.0).reserve_slots == 2
    assert slack_units(q, 0, "sc") == 4
    assert slack_units(q, 0, "mcts") == 1
    assert slack_units(q, 0, "cot") == 0
