"""Simulated programs: replayed traces stop where the recorded policy would have, and the
systems serve them with the router's own decision code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dynasor_sgl.online.systems import SYSTEMS
from dynasor_sgl.policy.machine import PolicyConfig
from dynasor_sgl.replay.sampled import replay_policy, sampled_run
from dynasor_sgl.sim.profile import Profile
from dynasor_sgl.sim.run import RunSpec, base_deadlines, simulate
from dynasor_sgl.sim.synthetic import synthetic_traces
from dynasor_sgl.sim.traces import (
    NO_ANSWER,
    Trace,
    Unit,
    load_eval_traces,
    record_trace,
    split_tokens,
)

PROFILE = Profile("test", base_s=0.05, per_request_s=0.01, per_prefill_token_s=0.0001)
ANSWERS = {
    "agree": ["7"] * 10,
    "split": ["3", "3", "3", "3", "4", "3", "4", "3", "5", "3"],
    "noisy": ["1", "2", None, "2", "3", "1", "2", "2", "2", "2"],
    "frac": ["1/2", "0.5", "\\frac{1}{2}", "2", "0.5", "1/2", "1/2", "3", "0.5", "1/2"],
}


def write_eval(path: Path) -> list[dict]:
    records = []
    for i, (qid, answers) in enumerate(ANSWERS.items()):
        sample_tokens = [10 + (3 * i + j) % 7 for j in range(len(answers))]
        details = {"answers": answers, "sample_tokens": sample_tokens}
        total = 40 + sum(sample_tokens)
        records.append(
            {
                "question_id": qid,
                "policy": "baseline",
                "status": "ok",
                "gold": "1/2" if qid == "frac" else "3",
                "tokens": {"total": total},
                "details": details,
            }
        )
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return records


def spec(**kw: object) -> RunSpec:
    base = {
        "profile": PROFILE,
        "workers": 1,
        "seed": 0,
        "slo_scale": 2.0,
        "max_tokens": 16,
        "policy": {},
        "bases": {"sc": 5.0, "mcts": 5.0, "rebase": 5.0},
    }
    return RunSpec(**{**base, **kw})  # type: ignore[arg-type]


def test_replayed_programs_stop_where_the_recorded_policy_would_have(tmp_path: Path) -> None:
    records = write_eval(tmp_path / "eval.jsonl")
    traces = load_eval_traces(tmp_path / "eval.jsonl")
    assert [t.question_id for t in traces] == list(ANSWERS)
    for system in ("dynasor", "certaindex", "sglang"):
        got = simulate(traces, len(traces), SYSTEMS[system], 0.2, spec())
        for rec, r in zip(got, records, strict=True):
            run = sampled_run(r["details"], r["tokens"]["total"])
            cfg = PolicyConfig.for_algorithm("sc", cap=10)
            if system == "sglang":
                cfg = PolicyConfig.for_algorithm("sc", cap=10, thresholds={})
            want = replay_policy(run, cfg)
            assert (rec["steps"], rec["exit_reason"]) == (want.used, want.exit_reason), rec
            assert rec["status"] == "ok" and rec["latency_s"] > 0


def test_eval_labels_cluster_equivalent_answers(tmp_path: Path) -> None:
    write_eval(tmp_path / "eval.jsonl")
    frac = load_eval_traces(tmp_path / "eval.jsonl")[3]
    labels = [u.label for u in frac.units]
    assert len({labels[i] for i in (0, 1, 2, 4, 5)}) == 1 and frac.gold == labels[0]
    noisy = load_eval_traces(tmp_path / "eval.jsonl")[2]
    assert noisy.units[2].label == NO_ANSWER


def test_tokens_and_prefix_sharing_are_counted() -> None:
    units = tuple(Unit(10, 0) for _ in range(5))
    trace = Trace("q", "sc", 40, units, 0, "test")
    (rec,) = simulate([trace], 1, SYSTEMS["dynasor"], 1.0, spec())
    detail = rec["tokens_detail"]
    # one fork prefill of the 40-token prompt, then 5 samples that each recompute one token
    # (prefilled, not cached, as SGLang counts it)
    assert detail["prefill"] == 40 + 5 and detail["cached"] == 5 * 39
    assert detail["generated"] == 50 and detail["requests"] == 6
    assert rec["exit_reason"] == "threshold" and rec["correct"] is True
    assert rec["tokens"] == 95


def test_every_system_and_synthetic_workload_runs() -> None:
    traces = synthetic_traces("mix", 12, seed=1)
    for name, system in SYSTEMS.items():
        # no deadline stop but where a system asks (these programs take ~100 s, due in 10 s)
        recs = simulate(traces, 12, system, 0.5, spec(workers=2, router_deadline_stop=False))
        assert all(r["status"] == "ok" for r in recs), name
        if system.policy:  # run to cap
            assert all(r["steps"] == r["cap"] for r in recs), name


def test_base_deadline_is_the_median_uncontended_latency() -> None:
    traces = synthetic_traces("sc-math", 3, seed=0)
    bases = base_deadlines(traces, SYSTEMS["parrot"], spec())
    quiet = spec(router_deadline_stop=False)  # measured as the real one is: no deadline told
    alone = [simulate([t], 1, SYSTEMS["parrot"], 1.0, quiet)[0]["latency_s"] for t in traces]
    assert bases["sc"] == pytest.approx(sorted(alone)[1], abs=1e-3)


def real_record(steps: int, exit_reason: str, generated: int, **kw: object) -> dict:
    requests = 6 if steps == 5 else 12
    detail = {"generated": generated, "prefill": 25, "cached": 12 * requests - 25}
    return {
        "system": "dynasor",
        "rate": 0.5,
        "index": 3,
        "question_id": "facts-0-3",
        "steps": steps,
        "exit_reason": exit_reason,
        "correct": True,
        "tokens_detail": {**detail, "requests": requests},
        **kw,
    }


def test_split_tokens_is_bimodal_and_keeps_the_total() -> None:
    # 134 over 10 at max 16: (134 - 100) / 6 = 5.7 -> 6 full samples; 38 left over 4 samples
    assert split_tokens(134, 10, 16) == [16, 16, 16, 10, 16, 10, 16, 9, 16, 9]
    assert split_tokens(47, 5, 16) == [10, 9, 10, 9, 9]  # no full one: all short
    assert split_tokens(80, 5, 16) == [16] * 5
    assert split_tokens(200, 10, 16) == [16] * 10  # more than the cap allows: clipped
    assert split_tokens(0, 3, 16) == [0, 0, 0] and split_tokens(5, 0, 16) == []


def test_a_record_trace_replays_the_real_program() -> None:
    stopped = record_trace(real_record(5, "threshold", 47), cap=10, max_new=16)
    # its own 5 samples (47 tokens), then 5 more at its mean (47 / 5 = 9.4 -> 9)
    assert [u.tokens for u in stopped.units] == [10, 9, 10, 9, 9] + [9] * 5
    assert [u.label for u in stopped.units[:5]] == [0] * 5 and stopped.gold == 0
    assert stopped.prompt_tokens == 12 and stopped.max_new == 16  # (prefill 25 + cached 47) / 6
    capped = record_trace(real_record(10, "cap", 134, correct=False), cap=10, max_new=16)
    assert [u.label for u in capped.units] == list(range(10)) and capped.gold is None
    assert sum(u.tokens for u in capped.units) == 134
    for reason in ("posterior", "decided"):  # the policy's other stops agree as a threshold does
        other = record_trace(real_record(5, reason, 47), cap=10, max_new=16)
        assert [u.label for u in other.units[:5]] == [0] * 5


def test_replayed_records_stop_where_the_real_programs_did() -> None:
    recs = [real_record(5, "threshold", 47), real_record(10, "cap", 134)]
    traces = [record_trace(r, cap=10, max_new=16) for r in recs]
    policy = {"thresholds": {"entropy": 0.4}, "detect_every": 0}
    got = simulate(traces, 2, SYSTEMS["dynasor"], 0.5, spec(policy=policy))
    assert [(g["steps"], g["exit_reason"]) for g in got] == [(5, "threshold"), (10, "cap")]
    assert [g["tokens_detail"]["generated"] for g in got] == [47, 134]
    assert [g["tokens_detail"]["requests"] for g in got] == [6, 12]


def test_a_replayed_record_prefills_what_the_real_program_did() -> None:
    rec = real_record(10, "cap", 134)
    rec["tokens_detail"].update(prefill=25, cached=563)  # 12 requests of a 49-token prompt
    trace = record_trace(rec, cap=10, max_new=16)
    # its first request prefilled 25 - 11 = 14 tokens (each later one recomputes 1): 35 warm
    assert (trace.prompt_tokens, trace.warm_tokens) == (49, 35)
    (got,) = simulate([trace], 1, SYSTEMS["sglang"], 1.0, spec())
    assert got["tokens_detail"]["prefill"] == 25 and got["tokens_detail"]["cached"] == 563
