"""Repeats of the online benchmark on hand-made data: the interleaved order, the median and range
of each figure, the figure of merit and its ratio to sglang per repeat, accuracy with its Wilson
interval at the rate of the figure of merit, and the report and plots that show them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dynasor_sgl.eval.report import wilson
from dynasor_sgl.online.markdown import markdown, one_line
from dynasor_sgl.online.plots import FIGURES, write_all
from dynasor_sgl.online.repeats import merit_over_repeats, schedule, spread
from dynasor_sgl.online.report import summarize


def test_schedule_alternates_the_system_order_by_round_and_by_repeat() -> None:
    order = schedule(["A", "B", "C"], [0.5, 1.0], repeat=2)
    rounds = [
        "".join(s for k, r, s in order if (k, r) == key)
        for key in dict.fromkeys((k, r) for k, r, _ in order)
    ]
    assert rounds == ["ABC", "CBA", "CBA", "ABC"]
    assert [(k, r) for k, r, _ in order[::3]] == [(0, 0.5), (0, 1.0), (1, 0.5), (1, 1.0)]
    # every system runs once per (repeat, rate), and at each rate as often first as last
    assert sorted(order) == sorted((k, r, s) for k in (0, 1) for r in (0.5, 1.0) for s in "ABC")
    firsts = [order[i][2] for i in range(0, len(order), 3) if order[i][1] == 0.5]
    assert firsts == ["A", "C"]
    with pytest.raises(ValueError):
        schedule(["A"], [1.0], repeat=0)


def test_spread_is_median_min_max_of_known_values() -> None:
    assert spread([3.0, None, 1.0, 2.0]) == {"median": 2.0, "min": 1.0, "max": 3.0}
    assert spread([1.0, 4.0]) == {"median": 2.5, "min": 1.0, "max": 4.0}
    assert spread([None, None]) == {"median": None, "min": None, "max": None}


def test_merit_over_repeats_ratios_are_per_repeat_and_a_miss_counts_zero() -> None:
    out = merit_over_repeats(
        {"sglang": [0.2, 0.4, 0.1], "dynasor": [0.6, None, 0.5], "never": [None, None, None]},
        "sglang",
    )
    d = out["dynasor"]
    assert d["ratios"] == pytest.approx([3.0, 0.0, 5.0])
    assert d["ratio"]["median"] == pytest.approx(3.0)
    assert (d["rate"]["median"], d["rate"]["min"], d["rate"]["max"]) == (0.5, 0.0, 0.6)
    assert out["sglang"]["ratios"] == pytest.approx([1.0, 1.0, 1.0])
    # a system that never reached the target has no rate at all, not a median of zeros
    assert out["never"]["rate"]["median"] is None and out["never"]["ratio"]["median"] == 0.0
    assert merit_over_repeats({"dynasor": [0.5]}, "sglang")["dynasor"]["ratios"] == [None]


def rec(system: str, rate: float, repeat: int, on_time: bool, correct: bool, **kw: Any) -> dict:
    return {
        "system": system,
        "rate": rate,
        "repeat": repeat,
        "index": 0,
        "status": "ok",
        "latency_s": 5.0 if on_time else 50.0,
        "difficulty": 1,
        "base_deadline_s": 10.0,
        "tokens": 100,
        "correct": correct,
        "wait_s": 0.1,
        "exit_reason": "cap",
        **kw,
    }


def run(system: str, rate: float, repeat: int, late: int, right: int = 10) -> list[dict]:
    """10 programs, `late` of them late, the first `right` of them correct."""
    return [rec(system, rate, repeat, i >= late, i < right) for i in range(10)]


def two_repeats() -> list[dict]:
    """sglang: on time at 1/s in both repeats, 50% at 2/s in repeat 0 and 100% in repeat 1.
    dynasor: on time at 1 and 2/s in both, 60% / 100% at 4/s; 7 of 10 right at 2/s."""
    out = []
    for k, late2 in ((0, 5), (1, 0)):
        out += run("sglang", 1.0, k, 0) + run("sglang", 2.0, k, late2)
    for k, late4 in ((0, 4), (1, 0)):
        out += run("dynasor", 1.0, k, 0) + run("dynasor", 2.0, k, 0, right=7)
        out += run("dynasor", 4.0, k, late4)
    return out


def test_summary_over_repeats_gives_medians_ranges_ratios_and_accuracy_at_merit() -> None:
    summary = summarize(two_repeats(), {}, slo_scale=1.0)
    assert summary["repeats"] == [0, 1]
    at2 = summary["runs"]["sglang"]["2.0"]
    assert at2["attainment"] == 0.75 and at2["spread"]["attainment"] == [0.5, 1.0]
    assert at2["repeats"] == 2 and at2["programs"] == 20
    merit = summary["max_rate_at_target"]
    # sglang: repeat 0 interpolates 1 + 0.1/0.5 = 1.2; repeat 1 meets at 2 (highest measured)
    assert merit["sglang"]["rate_per_repeat"] == pytest.approx([1.2, 2.0])
    assert merit["sglang"]["rate"] == pytest.approx(1.6)
    # dynasor: repeat 0 interpolates 2 + 0.1/0.4 * 2 = 2.5; repeat 1 meets at 4
    assert merit["dynasor"]["rate_per_repeat"] == pytest.approx([2.5, 4.0])
    assert merit["dynasor"]["ratio_per_repeat"] == pytest.approx([2.5 / 1.2, 2.0], abs=1e-3)
    assert merit["dynasor"]["ratio_to_sglang"] == pytest.approx((2.5 / 1.2 + 2.0) / 2, abs=1e-3)
    assert merit["dynasor"]["ratio_spread"] == pytest.approx([2.0, 2.5 / 1.2], abs=1e-3)
    assert merit["dynasor"]["method"] == "median of 2 repeats"
    # accuracy at the measured rate of the merit: dynasor's median at 4/s is 80% < 90%, so 2/s
    acc = merit["dynasor"]["accuracy_at_merit"]
    assert (acc["rate"], acc["correct"], acc["total"]) == (2.0, 14, 20)
    assert acc["ci"] == pytest.approx(list(wilson(14, 20)), abs=1e-3)
    assert merit["sglang"]["accuracy_at_merit"]["rate"] == 1.0


def test_one_repeat_reads_as_before() -> None:
    records = [r for r in two_repeats() if r["repeat"] == 0]
    for r in records:
        del r["repeat"]  # files written before repeats existed
    summary = summarize(records, {}, slo_scale=1.0)
    merit = summary["max_rate_at_target"]
    assert merit["dynasor"]["method"] == "interpolated"
    assert merit["dynasor"]["ratio_to_sglang"] == pytest.approx(2.5 / 1.2, abs=1e-3)
    assert summary["runs"]["dynasor"]["4.0"]["spread"]["attainment"] == [0.6, 0.6]
    assert "[" not in markdown(summary).split("## Per run")[1].split("## On time")[0]
    assert "median of" not in one_line(summary)


def test_markdown_shows_ranges_per_repeat_figures_and_accuracy_ci() -> None:
    summary = summarize(two_repeats(), {"program": "sc", "dataset": "synth:add1"}, 1.0)
    text = markdown(summary)
    assert "| sglang | 1.6 [1.2–2] | 1 | 1.2 (1×), 2 (1×) |" in text
    assert "| sglang | 2.0 | 75% [50%–100%] |" in text
    assert wilson(14, 20) == pytest.approx((0.481, 0.855), abs=1e-3)
    assert "70% (48%–86%) 14/20 at 2/s" in text  # rounded to 3 digits, then shown
    assert one_line(summary).startswith("max rate with ≥90% on time at SLO 1× (median of 2")


def test_accuracy_per_program_of_a_mixed_workload() -> None:
    records = [
        rec("sglang", 1.0, 0, True, i < 3, program="sc" if i % 2 else "mcts") for i in range(8)
    ]
    stats = summarize(records, {}, 1.0)["runs"]["sglang"]["1.0"]
    by = stats["accuracy_by_program"]
    assert (by["sc"]["correct"], by["sc"]["total"]) == (1, 4)
    assert (by["mcts"]["correct"], by["mcts"]["total"]) == (2, 4)
    assert "## Accuracy per program" in markdown({**summarize(records, {}, 1.0)})


def test_plots_take_the_ranges(tmp_path: Path) -> None:
    records = two_repeats()
    paths = write_all(summarize(records, {}, 1.0), records, tmp_path)
    assert set(paths) == set(FIGURES)
    assert all(Path(p).stat().st_size > 0 for p in paths.values())
