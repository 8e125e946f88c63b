"""The program table: ids, admission of branches, rids, token accounting, decisions, eviction."""

from __future__ import annotations

import re

import pytest

from dynasor_sgl.policy.machine import Action, Decision, PolicyConfig, Report, StopReason
from dynasor_sgl.router.errors import ApiError
from dynasor_sgl.router.metrics import Metrics
from dynasor_sgl.router.table import ProgramTable

CONFIG = PolicyConfig(cap=8, initial=4, pace=4, detect_at=4, thresholds={"entropy": 0.7})


def table(max_programs: int = 100) -> ProgramTable:
    return ProgramTable(max_programs)


def status_of(exc: pytest.ExceptionInfo[ApiError]) -> tuple[int, str]:
    return exc.value.status, exc.value.kind


def test_register_takes_a_valid_id_or_makes_one() -> None:
    t = table()
    prog = t.register(CONFIG, "my-prog_1.a", deadline_s=30.0)
    assert prog.program_id == "my-prog_1.a" and prog.deadline_s == 30.0
    assert prog.status == "running" and prog.grant == CONFIG.initial
    fresh = t.register(CONFIG)
    assert re.fullmatch(r"[0-9a-f]{16}", fresh.program_id)
    assert t.get(fresh.program_id) is fresh
    assert len(t) == 2 and t.active() == 2
    assert {p.program_id for p in t.all()} == {prog.program_id, fresh.program_id}


# "p\n" is a BUG (programs.py, PROGRAM_ID_RE / BRANCH_RE used with .match): `$` also matches
# before a trailing newline, so "p\n" is taken as a program id (and "b0\n" as a branch).
@pytest.mark.parametrize("bad", ["a b", "x" * 65, "a::b", "a/b", "é", "p\n"])
def test_register_refuses_bad_ids_with_400(bad: str) -> None:
    with pytest.raises(ApiError) as exc:
        table().register(CONFIG, bad)
    assert status_of(exc) == (400, "invalid_request") and "program_id" in exc.value.message


def test_register_twice_is_409_and_unknown_is_404() -> None:
    t = table()
    t.register(CONFIG, "p")
    with pytest.raises(ApiError) as exc:
        t.register(CONFIG, "p")
    assert status_of(exc) == (409, "conflict")
    with pytest.raises(ApiError) as exc:
        t.get("q")
    assert status_of(exc) == (404, "not_found") and "q" in exc.value.message


def test_rids_name_program_branch_and_sequence_and_owner_of_reads_them_back() -> None:
    t = table()
    prog = t.register(CONFIG, "p1")
    first = t.start(prog, "b0", worker=0, max_new_tokens=64)
    second = t.start(prog, "b1", worker=1, max_new_tokens=64)
    third = t.start(prog, "b0", worker=0, max_new_tokens=64)
    assert [first.rid, second.rid, third.rid] == ["p1::b0::0::", "p1::b1::1::", "p1::b0::2::"]
    assert prog.requests == 3 and prog.branches == {"b0", "b1"} and len(prog.inflight) == 3
    assert t.owner_of(second.rid) == (prog, "b1")
    assert t.owner_of("p1::b7") == (prog, "b7")  # a client-chosen rid
    assert t.owner_of("p1") is None and t.owner_of("nope::b0") is None
    assert t.owner_of("") is None
    by_branch = t.rids_to_abort(prog, {"b0"})
    assert sorted(e.rid for e in by_branch) == [first.rid, third.rid]
    assert len(t.rids_to_abort(prog)) == 3


def test_admit_refuses_trimmed_branches_and_stopped_or_finished_programs_with_409() -> None:
    t = table()
    prog = t.register(CONFIG, "p")
    t.admit(prog, "b0")
    for bad in ("bad branch", "", "b0::1"):
        with pytest.raises(ApiError) as exc:
            t.admit(prog, bad)
        assert status_of(exc)[0] == 400
    prog.trimmed.add("b3")
    with pytest.raises(ApiError) as exc:
        t.admit(prog, "b3")
    assert status_of(exc) == (409, "branch_trimmed") and "b3" in exc.value.message
    t.admit(prog, "b2")
    t.stop(prog, "threshold")
    with pytest.raises(ApiError) as exc:
        t.admit(prog, "b0")
    assert status_of(exc) == (409, "program_stopped") and "threshold" in exc.value.message
    t.finish(prog, "42")
    with pytest.raises(ApiError) as exc:
        t.admit(prog, "b0")
    assert status_of(exc) == (409, "program_stopped") and "finished" in exc.value.message


def test_end_accounts_tokens_and_aborts() -> None:
    t = table()
    prog = t.register(CONFIG, "p")
    done = t.start(prog, "b0", 0, max_new_tokens=100)
    cut = t.start(prog, "b1", 0, max_new_tokens=100)
    lost = t.start(prog, "b2", 0, max_new_tokens=100)
    t.end(
        prog,
        done,
        {
            "prompt_tokens": 10,
            "completion_tokens": 100,
            "cached_tokens": 4,
            "finish_reason": {"type": "length", "length": 100},
        },
    )
    t.end(
        prog,
        cut,
        {
            "prompt_tokens": 10,
            "completion_tokens": 30,
            "cached_tokens": 10,
            "finish_reason": {"type": "abort", "message": "aborted"},
        },
    )
    t.end(prog, lost, None)  # the worker died: no meta, nothing to count
    assert prog.inflight == {}
    assert (prog.prompt_tokens, prog.completion_tokens, prog.cached_tokens) == (20, 130, 14)
    # An aborted request's unused max_new_tokens is not a saving of its own (it used to be
    # added on top of the stop's estimate): only a policy stop saves, see below.
    assert prog.aborted_requests == 1 and prog.tokens_saved == 0
    tokens = prog.summary()["tokens"]
    assert tokens["total"] == 20 - 14 + 130 and tokens["saved_estimate"] == 0
    t.end(prog, done, {"completion_tokens": None, "finish_reason": None})
    assert prog.completion_tokens == 130


def test_apply_stop_decision_from_the_policy() -> None:
    t = table()
    prog = t.register(CONFIG, "p")
    entry = t.start(prog, "b0", 0, 100)
    t.end(prog, entry, {"prompt_tokens": 5, "completion_tokens": 400})
    report = Report(used=4, answers={f"b{i}": "42" for i in range(4)})
    decision = prog.policy.decide(report)
    assert decision.action is Action.STOP
    t.apply(prog, report, decision)
    assert prog.status == "stopped" and prog.exit_reason == str(StopReason.THRESHOLD)
    assert prog.used == 4 and prog.finished_at is not None
    assert prog.trajectory == [{"used": 4, "entropy": pytest.approx(1.0)}]
    assert prog.tokens_saved == (8 - 4) * 400 // 4  # remaining knob x tokens per knob unit
    assert prog.settle() == 400 and prog.settle() is None  # counted once, when settled
    assert t.active() == 0
    with pytest.raises(ApiError) as exc:
        t.check_open(prog)
    assert status_of(exc) == (409, "program_stopped")


def test_a_reading_shows_its_units_as_used_and_for_now_as_the_deprecated_step() -> None:
    """`/programs` keeps "step" beside "used" for one release; this test goes with it."""
    t = table()
    prog = t.register(CONFIG, "p")
    report = Report(used=4, answers={f"b{i}": "42" for i in range(4)})
    t.apply(prog, report, prog.policy.decide(report))
    (reading,) = prog.summary()["certaindex"]
    assert reading == {"used": 4, "step": 4, "entropy": pytest.approx(1.0)}
    metrics = Metrics()
    metrics.program_ended(prog)
    labels = set(re.findall(r'signal="([^"]+)"', metrics.render().decode()))
    assert labels == {"entropy"}  # the units are no signal, under either name


def test_the_saving_is_one_estimate_settled_after_the_aborted_replies_arrive() -> None:
    t = table()
    prog = t.register(CONFIG, "p")
    t.end(prog, t.start(prog, "b0", 0, 100), {"completion_tokens": 200})
    cut = t.start(prog, "b1", 0, 100)  # still in flight when the stop comes
    report = Report(used=4, answers={f"b{i}": "42" for i in range(4)})
    t.apply(prog, report, prog.policy.decide(report))
    assert prog.settle() is None  # its aborted reply is not back yet: the count is not final
    t.end(prog, cut, {"completion_tokens": 40, "finish_reason": {"type": "abort"}})
    # (cap 8 - 4 used) x (240 tokens / 4 units), with the aborted reply's tokens in.
    assert prog.tokens_saved == 240 and prog.settle() == 240
    client = t.register(CONFIG, "q")
    t.stop(client, "aborted")  # a client's abort is not early exit
    assert client.tokens_saved == 0


def test_apply_trim_and_continue_decisions() -> None:
    t = table()
    prog = t.register(CONFIG, "p")
    t.apply(prog, Report(used=2), Decision(Action.CONTINUE, grant=4))
    assert (prog.status, prog.used, prog.grant, prog.trimmed) == ("running", 2, 6, set())
    t.apply(prog, Report(used=4), Decision(Action.TRIM, grant=4, trim=("b3", "b1")))
    assert prog.trimmed == {"b1", "b3"} and prog.grant == 8 and prog.status == "running"
    assert prog.trajectory == []  # no signal was read
    t.check_open(prog)


def test_finish_and_stop_semantics() -> None:
    t = table()
    running = t.register(CONFIG, "a")
    t.finish(running, "42")
    assert (running.status, running.exit_reason, running.answer) == ("finished", "finished", "42")
    with pytest.raises(ApiError) as exc:
        t.finish(running, None)
    assert status_of(exc) == (409, "program_finished")
    t.stop(running, "aborted")  # no effect once finished
    assert running.status == "finished" and running.exit_reason == "finished"

    at_cap = t.register(CONFIG, "b")
    at_cap.used = CONFIG.cap
    t.finish(at_cap, None)
    assert at_cap.exit_reason == "cap"

    stopped = t.register(CONFIG, "c")
    t.stop(stopped, "threshold")
    stopped_at = stopped.finished_at
    t.stop(stopped, "other")  # the first reason stays
    t.finish(stopped, "7")
    assert (stopped.status, stopped.exit_reason) == ("finished", "threshold")
    assert stopped.finished_at == stopped_at and stopped.answer == "7"


def test_eviction_drops_the_oldest_ended_program_and_429_when_all_run() -> None:
    t = table(max_programs=3)
    a, b, c = (t.register(CONFIG, pid) for pid in "abc")
    with pytest.raises(ApiError) as exc:
        t.register(CONFIG, "d")
    assert status_of(exc) == (429, "too_many_programs") and "3" in exc.value.message
    assert len(t) == 3
    t.finish(b, None)
    t.stop(a, "threshold")  # ended after b
    t.register(CONFIG, "d")
    assert {p.program_id for p in t.all()} == {"a", "c", "d"}
    t.register(CONFIG, "e")  # a goes next
    assert {p.program_id for p in t.all()} == {"c", "d", "e"}
    with pytest.raises(ApiError) as exc:
        t.get("a")
    assert exc.value.status == 404
    with pytest.raises(ApiError) as exc:
        t.register(CONFIG, "f")
    assert exc.value.status == 429
    assert c.status == "running"


def test_summary_is_plain_data() -> None:
    t = table()
    prog = t.register(CONFIG, "p")
    t.start(prog, "b0", 0, 10)
    s = prog.summary()
    assert s["program_id"] == "p" and s["algorithm"] == "sc" and s["cap"] == 8
    assert s["status"] == "running" and s["inflight"] == 1 and s["branches"] == ["b0"]
    assert s["requests"] == 1 and s["certaindex"] == [] and s["answer"] is None
