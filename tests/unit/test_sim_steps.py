"""A worker's step trace read back, and the split step model fitted to it (hand values)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dynasor_sgl.sim.profile import Profile
from dynasor_sgl.sim.steps import (
    IDLE_GAP_S,
    Step,
    cold_starts,
    fit_steps,
    in_window,
    read_steps,
    run_windows,
    slowdown,
    speed_schedule,
    steps_from_lines,
    with_step_fit,
)


def line(t: float, run: float, mode: str, batch: int, new: int = 0, worker: int = 1) -> dict:
    out = {"t": t, "run_end": t + run, "mode": mode, "batch": batch, "worker": worker}
    if mode == "extend":
        out["new_tokens"] = new
    return out


def test_a_step_lasts_until_the_next_one_starts_while_the_scheduler_is_busy() -> None:
    steps = steps_from_lines(
        [
            line(0.0, 0.09, "extend", 2, new=30),
            line(0.1, 0.05, "decode", 2),
            line(0.16, 0.05, "decode", 2),
        ]
    )
    assert [round(s.seconds, 6) for s in steps] == [0.1, 0.06, 0.05]
    assert steps[0] == Step("extend", 2, 30, pytest.approx(0.1))


def test_a_step_before_the_scheduler_went_idle_ends_with_its_forward() -> None:
    gap = IDLE_GAP_S + 0.2
    steps = steps_from_lines([line(0.0, 0.05, "decode", 1), line(0.05 + gap, 0.05, "decode", 1)])
    assert [round(s.seconds, 6) for s in steps] == [0.05, 0.05]


def test_workers_in_one_file_are_kept_apart_and_other_modes_left_out() -> None:
    lines = [
        line(0.0, 0.05, "decode", 3, worker=1),
        line(0.02, 0.05, "decode", 5, worker=2),  # another worker's step in between
        line(0.06, 0.05, "decode", 3, worker=1),
        {"t": 0.2, "run_end": 0.3, "mode": "ForwardMode.IDLE", "batch": 0, "worker": 1},
    ]
    steps = steps_from_lines(lines)
    assert sorted((s.batch, round(s.seconds, 6)) for s in steps) == [
        (3, 0.05),
        (3, 0.06),
        (5, 0.05),
    ]


def exact(base: float, per_req: float, pbase: float, per_new: float, per_tok: float) -> list[Step]:
    steps = [Step("decode", b, 0, base + per_req * b) for b in (1, 4, 9, 16)]
    for n, p in ((1, 1), (1, 64), (5, 5), (10, 200), (3, 900)):
        steps.append(Step("extend", n, p, pbase + per_new * n + per_tok * p))
    return steps


def test_the_fit_recovers_a_step_model_the_steps_follow_exactly() -> None:
    fit = fit_steps(exact(0.07, 0.0063, 0.09, 0.0084, 0.00016))
    assert fit.base_s == pytest.approx(0.07)
    assert fit.per_request_s == pytest.approx(0.0063)
    assert fit.prefill_base_s == pytest.approx(0.09)
    assert fit.per_new_request_s == pytest.approx(0.0084)
    assert fit.per_prefill_token_s == pytest.approx(0.00016)
    assert (fit.decode_steps, fit.extend_steps) == (4, 5)
    assert set(fit.coefficients()) == {
        "base_s",
        "per_request_s",
        "prefill_base_s",
        "per_new_request_s",
        "per_prefill_token_s",
    }


def test_the_fit_needs_both_kinds_of_step() -> None:
    with pytest.raises(ValueError, match="0 extend"):
        fit_steps([Step("decode", 1, 0, 0.05), Step("decode", 2, 0, 0.06)])


def test_reading_a_trace_file_names_a_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "steps.jsonl"
    path.write_text(json.dumps(line(0.0, 0.05, "decode", 1)) + "\n\n{not json\n")
    with pytest.raises(ValueError, match="line 3"):
        read_steps(path)
    path.write_text(json.dumps(line(0.0, 0.05, "decode", 1)) + "\n")
    assert read_steps(path) == [Step("decode", 1, 0, pytest.approx(0.05))]


def test_a_missing_trace_file_is_a_value_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"nowhere\.jsonl"):
        read_steps(tmp_path / "nowhere.jsonl")


def test_a_step_fit_replaces_only_the_profiles_step_model() -> None:
    profile = Profile("p", 0.1, 0.01, 0.001, kv_tokens=1000, router_cpu_s=0.02, source={"kv": "x"})
    fit = fit_steps(exact(0.07, 0.0063, 0.09, 0.0084, 0.00016))
    got = with_step_fit(profile, fit, "the run's steps")
    assert got.step_s(10, 0) == pytest.approx(0.07 + 0.063)
    assert got.step_s(0, 100, 2) == pytest.approx(0.09 + 0.0168 + 0.016)
    assert (got.kv_tokens, got.router_cpu_s, got.name) == (1000, 0.02, "p")
    assert got.source["kv"] == "x" and got.source["per_request_s"] == "the run's steps"


def cold(t: float, new: int = 49) -> Step:
    """A prefill that found nothing cached (after a flush), at `t`."""
    return Step("extend", 1, new, 0.1, cached=0, t=t)


def warm(t: float) -> Step:
    return Step("extend", 1, 20, 0.05, cached=29, t=t)


def test_cold_starts_are_the_prefills_that_found_nothing_cached() -> None:
    steps = [cold(5.0), warm(6.0), Step("decode", 3, 0, 0.1, t=6.1), cold(0.0), cold(9.0, new=0)]
    lines = [
        {**line(1.0, 0.1, "extend", 1, new=49), "cached": 0},
        {**line(2.0, 0.1, "extend", 1, new=20), "cached": 29},
    ]
    assert cold_starts(steps) == [0.0, 5.0]
    assert cold_starts(steps_from_lines(lines)) == [1.0]


def test_runs_are_found_at_the_last_cold_starts_and_last_their_wall_time() -> None:
    # a warm-up at 0, then two runs of 30 s and 20 s starting at 10 and 45
    steps = [cold(0.0), warm(1.0), cold(10.0), warm(11.0), cold(45.0), warm(50.0)]
    assert run_windows(steps, [30.0, 20.0]) == [(10.0, 40.0), (45.0, 65.0)]
    assert in_window(steps, (10.0, 40.0)) == [cold(10.0), warm(11.0)]


def test_recorded_run_starts_win_over_cold_starts() -> None:
    steps = [cold(0.0), cold(10.0), cold(45.0)]
    assert run_windows(steps, [5.0, 5.0], [1.0, 20.0]) == [(1.0, 6.0), (20.0, 25.0)]
    # one run without a recorded start (an older bench): all found from the trace
    assert run_windows(steps, [5.0, 5.0], [1.0, None]) == [(10.0, 15.0), (45.0, 50.0)]


def test_a_trace_that_cannot_hold_the_runs_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="1 cold prefills for 2 runs"):
        run_windows([cold(0.0)], [5.0, 5.0])
    with pytest.raises(ValueError, match="overlap"):
        run_windows([cold(0.0), cold(10.0)], [30.0, 5.0])


def test_a_fit_says_what_a_step_takes_and_scales_as_a_whole() -> None:
    fit = fit_steps(exact(0.07, 0.0063, 0.09, 0.0084, 0.00016))
    assert fit.seconds(Step("decode", 10, 0, 0.0)) == pytest.approx(0.07 + 0.063)
    assert fit.seconds(Step("extend", 2, 100, 0.0)) == pytest.approx(0.09 + 0.0168 + 0.016)
    slow = fit.scaled(2.0)
    assert slow.seconds(Step("decode", 10, 0, 0.0)) == pytest.approx(2 * (0.07 + 0.063))
    assert slow.seconds(Step("extend", 2, 100, 0.0)) == pytest.approx(2 * (0.09 + 0.0168 + 0.016))
    assert (slow.decode_steps, slow.extend_steps) == (fit.decode_steps, fit.extend_steps)


def test_slowdown_is_the_steps_seconds_over_the_models() -> None:
    fit = fit_steps(exact(0.05, 0.005, 0.06, 0.01, 0.0))
    # a decode step of 4 (model 0.07 s) took 0.14; an extend of 1 (model 0.07 s) took 0.07
    steps = [Step("decode", 4, 0, 0.14), Step("extend", 1, 10, 0.07)]
    assert slowdown(steps, fit) == pytest.approx(0.21 / 0.14)
    assert slowdown(steps[:1], fit) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="needs steps"):
        slowdown([], fit)


def test_a_speed_schedule_has_one_slowdown_per_stretch_of_the_run() -> None:
    fit = fit_steps(exact(0.05, 0.0, 0.05, 0.0, 0.0))  # every step 50 ms as fitted
    fast = [Step("decode", 1, 0, 0.05, t=10.0 + 0.1 * i) for i in range(30)]  # 10-13 s
    slow = [Step("decode", 1, 0, 0.10, t=20.0 + 0.1 * i) for i in range(30)]  # 20-23 s
    idle = [Step("decode", 1, 0, 0.10, t=35.0)]  # one step: too few to say
    schedule = speed_schedule([*fast, *slow, *idle], fit, (10.0, 40.0), 10.0)
    whole = (30 * 0.05 + 31 * 0.10) / (61 * 0.05)
    assert schedule == [
        (0.0, pytest.approx(1.0)),
        (10.0, pytest.approx(2.0)),
        (20.0, pytest.approx(whole)),
    ]
