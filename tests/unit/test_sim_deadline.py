"""The simulator's deadline stop: a replayed program ends at its deadline where the router's
own deadline code says, on the virtual clock, whatever the real program's record says.

Hand-computed on a flat profile (every engine step 0.1 s, no overheads) with one SC program
alone: prompt 10 tokens, 10 units of 4 tokens, grants of 5. A round is a fork prefill step
(0.1 s), a prefill step of its 5 samples (0.1 s; each then has 1 token) and 3 decode steps
(0.3 s): the first report comes at 0.5 s, when the program's pace is 0.5 s / 5 units, so the
next grant of 5 is predicted to take 0.5 s and ends at 1.0 s. The deadline is
slo_scale 2 × difficulty 1 × base.
"""

from __future__ import annotations

from typing import Any

import pytest

import dynasor_sgl.scheduling.reports as reports
from dynasor_sgl.online.systems import SYSTEMS
from dynasor_sgl.policy.machine import Decision
from dynasor_sgl.sim.profile import Profile
from dynasor_sgl.sim.run import RunSpec, base_deadlines, simulate
from dynasor_sgl.sim.traces import Trace, record_trace
from dynasor_sgl.sim.validate import compare, router_deadline_stop

FLAT = Profile("flat", base_s=0.1, per_request_s=0.0, per_prefill_token_s=0.0)
POLICY = {"thresholds": {"entropy": 0.4}, "detect_every": 0}


def record(exit_reason: str = "deadline", system: str = "dynasor", **kw: Any) -> dict[str, Any]:
    """A real program the router stopped after its first round of 5 samples (4 tokens each)."""
    detail = {"generated": 20, "prefill": 15, "cached": 45, "requests": 6}
    rec = {"system": system, "rate": 1.0, "index": 0, "question_id": "q", "steps": 5}
    return {**rec, "exit_reason": exit_reason, "correct": True, "tokens_detail": detail, **kw}


def trace(exit_reason: str = "deadline") -> Trace:
    return record_trace(record(exit_reason), cap=10, max_new=4)


def run(system: str, base: float, router_stop: bool = True, t: Trace | None = None) -> dict:
    """One program simulated; `router_stop`: the router stops at deadlines whatever the
    system's flag (as the routers of runs recorded before the bench said --no-deadline-stop)."""
    spec = RunSpec(FLAT, 1, 0, 2.0, 4, POLICY, {"sc": base}, router_deadline_stop=router_stop)
    (rec,) = simulate([t or trace()], 1, SYSTEMS[system], 1.0, spec)
    return rec


def outcome(rec: dict) -> tuple[int, str, float, int, int]:
    detail = rec["tokens_detail"]
    return (
        rec["steps"],
        rec["exit_reason"],
        rec["latency_s"],
        detail["generated"],
        detail["requests"],
    )


def test_a_deadline_stopped_record_is_replayed_as_its_trajectory_not_its_stop() -> None:
    # its recorded 5 units, then 5 more at its mean (20 / 5 = 4), every answer different
    t = trace()
    assert [u.tokens for u in t.units] == [4] * 10 and len({u.label for u in t.units}) == 10
    assert (t.prompt_tokens, t.warm_tokens) == (10, 0)


def test_the_deadline_stop_ends_a_replayed_program_where_the_deadline_code_says() -> None:
    # deadline 0.9 s: at the report (0.5 s) the next grant would end at 1.0 s > 0.9: stop,
    # with the first round's 20 tokens and 6 requests (a fork and 5 samples)
    assert outcome(run("dynasor", 0.45)) == (5, "deadline", 0.5, 20, 6)
    # deadline 1.1 s: 1.0 s fits, so it runs on past where the real one stopped, to cap
    assert outcome(run("dynasor", 0.55)) == (10, "cap", 1.0, 40, 12)
    # deadline 0.4 s, already passed at the first report: a router stops only at a report
    assert outcome(run("dynasor", 0.2)) == (5, "deadline", 0.5, 20, 6)


def test_the_sim_asks_the_routers_deadline_code(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[float, float, float | None]] = []
    real = reports.deadline_stop

    def spy(decision: Decision, now: float, deadline_at: float, pace: float | None) -> Decision:
        calls.append((now, deadline_at, pace))
        return real(decision, now, deadline_at, pace)

    monkeypatch.setattr(reports, "deadline_stop", spy)
    run("dynasor", 0.45)
    assert calls == [pytest.approx((0.5, 0.9, 0.5))]


def test_who_stops_at_deadlines() -> None:
    stopped, late = (5, "deadline", 0.5, 20, 6), (10, "cap", 1.0, 40, 12)
    # a system without deadline stops stops only where the run's routers all did
    assert outcome(run("parrot", 0.45)) == stopped
    assert outcome(run("dynasor", 0.45, router_stop=False)) == late
    spec = RunSpec(FLAT, 1, 0, 2.0, 4, POLICY, {"sc": 0.45})  # the bench's systems as defined
    assert outcome(simulate([trace()], 1, SYSTEMS["parrot"], 1.0, spec)[0]) == late
    # a system that asks for it stops whatever the default; SGLang alone never does
    assert outcome(run("dynasor-deadline", 0.45, router_stop=False)) == stopped
    assert outcome(run("sglang", 0.45)) == late


def test_a_policy_stop_stays_what_it_was() -> None:
    # a certaindex stop at the first report is not turned into a deadline stop
    got = run("dynasor", 0.2, t=trace("threshold"))
    assert (got["steps"], got["exit_reason"]) == (5, "threshold")


def test_the_base_deadline_runs_without_a_deadline_stop() -> None:
    # 16-token units: a round is 0.1 + 0.1 + 15 × 0.1 = 1.7 s. The base runs see a deadline
    # of 2 × 1.0 s; were they stopped, the median would be 1.7 s, not the two rounds' 3.4 s
    rec = record("cap", steps=10)
    rec["tokens_detail"] = {"generated": 160, "prefill": 21, "cached": 99, "requests": 12}
    t = record_trace(rec, cap=10, max_new=16)
    spec = RunSpec(FLAT, 1, 0, 2.0, 16, POLICY, {})
    assert base_deadlines([t], SYSTEMS["dynasor"], spec) == {"sc": 3.4}


def test_the_router_default_is_read_from_the_real_records() -> None:
    # only a router stopping by default ends a program of a system that did not ask for it
    assert router_deadline_stop([record(), record("cap", system="parrot")]) is True
    assert router_deadline_stop([record(system="dynasor-deadline"), record("cap")]) is False


def test_compare_sets_exits_and_tokens_beside_each_other() -> None:
    real = [{**record(), "status": "ok", "latency_s": 0.5, "tokens": 35}]
    real[0].update(difficulty=1, base_deadline_s=0.45)
    sim = [{**run("dynasor", 0.55), "base_deadline_s": 0.45}]
    (row,) = compare(real, sim, 2.0)
    assert (row["real_exits"], row["sim_exits"]) == ({"deadline": 1}, {"cap": 1})
    assert (row["real_attainment"], row["sim_attainment"]) == (1.0, 0.0)  # 1.0 s > 0.9 s
    assert (row["real_mean_tokens"], row["sim_mean_tokens"]) == (35, 61)  # + 15 / 21 prefill
    assert row["attainment_within_10_points"] is False
