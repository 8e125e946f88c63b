"""The allocation policy: config validation, decisions, invariants and replayed streams."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dynasor_sgl.policy.certaindex import full_budget_posterior
from dynasor_sgl.policy.machine import (
    DEFAULTS,
    Action,
    PolicyConfig,
    ProgramPolicy,
    Report,
    StopReason,
)


def sc_report(used: int, values: Sequence[str | None], slack: int = 0) -> Report:
    return Report(used=used, answers={f"b{i}": a for i, a in enumerate(values)}, slack=slack)


def test_defaults_follow_table_3() -> None:
    sc = PolicyConfig.for_algorithm("sc")
    assert (sc.detect_at, sc.cap, dict(sc.thresholds)) == (5, 20, {"entropy": 0.7})
    mcts = PolicyConfig.for_algorithm("mcts")
    assert (mcts.detect_at, dict(mcts.thresholds), mcts.reward_mode) == (3, {"reward": 0.4}, "mean")
    rebase = PolicyConfig.for_algorithm("rebase")
    assert (rebase.detect_at, dict(rebase.thresholds), rebase.reward_mode) == (
        16,
        {"entropy": 0.75},
        "max",
    )
    cot = PolicyConfig.for_algorithm("cot", probe_window=2)
    assert cot.probe_window == 2 and cot.detect_every == 64
    assert set(DEFAULTS) == {"sc", "mcts", "rebase", "cot", "beam", "bon"}
    assert PolicyConfig.from_dict(sc.to_dict()) == sc


@pytest.mark.parametrize(
    ("kwargs", "names"),
    [
        ({"cap": 0}, "cap"),
        ({"cap": 4, "initial": 1, "detect_at": 5}, "detect_at"),
        ({"initial": 30}, "initial"),
        ({"thresholds": {"entropy": 1.5}}, "entropy"),
        ({"thresholds": {"vibes": 0.5}}, "vibes"),
        ({"rule": "magic"}, "magic"),
        ({"confidence": 1.0}, "confidence"),
        ({"trim": "random"}, "random"),
        ({"detect_every": -1}, "detect_every"),
        ({"algorithm": "dfs"}, "dfs"),
    ],
)
def test_config_rejects_bad_values(kwargs: dict[str, Any], names: str) -> None:
    with pytest.raises(ValueError, match=names):
        PolicyConfig(**kwargs)


def test_config_rejects_unknown_keys() -> None:
    with pytest.raises(ValueError, match="colour"):
        PolicyConfig.from_dict({"cap": 5, "colour": "red"})
    with pytest.raises(ValueError, match="algorithm"):
        PolicyConfig.for_algorithm("nope")


def test_old_step_key_is_read_as_pace_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="dynasor_sgl.policy.config"):
        old = PolicyConfig.from_dict({"cap": 8, "initial": 2, "step": 3})
        via_defaults = PolicyConfig.for_algorithm("sc", step=2)
    assert old.pace == 3 and via_defaults.pace == 2
    assert "'step' is deprecated; use 'pace'" in caplog.text
    assert "step" not in old.to_dict() and old.to_dict()["pace"] == 3
    with pytest.raises(ValueError, match="give only 'pace'"):
        PolicyConfig.from_dict({"step": 3, "pace": 4})


def test_old_report_keys_are_read_as_used(caplog: pytest.LogCaptureFixture) -> None:
    from dynasor_sgl.replay.labelled import LabelledRun
    from dynasor_sgl.router.program_api import ReportIn

    with caplog.at_level("WARNING"):
        assert ReportIn.model_validate({"step": 3}).used == 3
        run = LabelledRun.from_dict(
            {"program_id": "p", "correct": "1", "records": [{"step": 2, "tokens": 5}]}
        )
    assert run.records[0].used == 2
    assert "'step' is deprecated; use 'used'" in caplog.text
    with pytest.raises(ValueError, match="step"):  # both names: the old one is an unknown key
        ReportIn.model_validate({"step": 3, "used": 3})


def test_sc_threshold_stop_and_continue() -> None:
    unanimous = ProgramPolicy(PolicyConfig.for_algorithm("sc"))
    d = unanimous.decide(sc_report(5, ["7"] * 5))
    assert d.action == Action.STOP and d.reason == StopReason.THRESHOLD
    assert d.values["entropy"] == 1.0 and d.grant == 0
    split = ProgramPolicy(PolicyConfig.for_algorithm("sc", detect_every=0))  # the paper's
    d = split.decide(sc_report(5, ["7"] * 4 + ["8"]))
    # Read once and not certain: no later reading can stop it, so the rest comes at once.
    assert d.action == Action.CONTINUE and d.grant == 15
    assert d.values["entropy"] == pytest.approx(0.689, abs=1e-3)
    # Read once (the paper's static threshold): unanimity at 10 no longer stops it.
    assert split.decide(sc_report(10, ["7"] * 10)).action == Action.CONTINUE
    d = split.decide(sc_report(20, ["7"] * 20))
    assert d.action == Action.STOP and d.reason == StopReason.CAP
    # The default reads again after every batch of 5: unanimity at 10 stops it there.
    sequential = ProgramPolicy(PolicyConfig.for_algorithm("sc"))
    d = sequential.decide(sc_report(5, ["7"] * 4 + ["8"]))
    assert d.action == Action.CONTINUE and d.grant == 5
    d = sequential.decide(sc_report(10, ["7"] * 10))
    assert d.action == Action.STOP and d.reason == StopReason.THRESHOLD


def test_before_detection_nothing_is_read() -> None:
    policy = ProgramPolicy(PolicyConfig(detect_at=5, initial=2, pace=1))
    d = policy.decide(sc_report(2, ["1", "1"], slack=10))
    assert d.action == Action.CONTINUE and d.values == {} and d.expand == 0


def test_expand_needs_slack_and_respects_cap() -> None:
    past = PolicyConfig(cap=20, detect_at=5, pace=5, detect_every=5, expand_past_readings=True)
    policy = ProgramPolicy(past)
    assert policy.decide(sc_report(5, ["1", "2", "3", "1", "2"])).grant == 5  # no slack
    d = policy.decide(sc_report(10, [str(i) for i in range(10)], slack=100))
    assert d.action == Action.EXPAND and d.expand == 5 and d.grant == 10  # 10 + 10 = cap
    d = policy.decide(sc_report(17, [str(i) for i in range(17)], slack=100))
    assert d.grant == 3 and d.expand == 0


def test_expansion_stops_at_the_next_pending_reading_by_default() -> None:
    # Reading every 5 at a pace of 5: slack adds nothing, so an idle router still reads at 10.
    policy = ProgramPolicy(PolicyConfig(cap=20, detect_at=5, pace=5, detect_every=5))
    d = policy.decide(sc_report(5, ["1", "2", "3", "1", "2"], slack=100))
    assert d.action == Action.CONTINUE and d.grant == 5 and d.expand == 0
    d = policy.decide(sc_report(10, ["1"] * 9 + ["2"], slack=100))
    assert d.action == Action.STOP and d.reason == StopReason.THRESHOLD
    # A pace below the reading interval: expansion fills up to the reading, not past it.
    slow = ProgramPolicy(PolicyConfig(cap=40, detect_at=4, pace=2, detect_every=8))
    d = slow.decide(sc_report(4, ["1", "2", "3", "4"], slack=100))
    assert d.action == Action.EXPAND and d.grant == 8 and d.expand == 6  # 4 + 8 = next reading
    # Read once (no reading pending): the rest of the cap comes at once with or without slack.
    once = ProgramPolicy(PolicyConfig(cap=20, detect_at=5, pace=5))
    assert once.decide(sc_report(5, ["1", "2", "3", "1", "2"], slack=100)).grant == 15


def test_boolean_keys_must_be_booleans() -> None:
    for key in ("stop_when_decided", "expand_past_readings"):
        with pytest.raises(ValueError, match=key):
            PolicyConfig(**{key: "no"})  # type: ignore[arg-type]


def test_mcts_reward_rule_and_missing_signal() -> None:
    policy = ProgramPolicy(PolicyConfig.for_algorithm("mcts"))
    assert policy.decide(Report(used=3, rewards={"a": 0.2, "b": 0.3})).action == Action.CONTINUE
    policy = ProgramPolicy(PolicyConfig.for_algorithm("mcts", detect_every=1))
    assert policy.decide(Report(used=3)).action == Action.CONTINUE  # no rewards: not certain
    d = policy.decide(Report(used=4, rewards={"a": 0.5, "b": 0.4}))
    assert d.action == Action.STOP and d.values["reward"] == pytest.approx(0.45)


def test_combined_thresholds_all_must_pass() -> None:
    cfg = PolicyConfig(
        cap=10, detect_at=3, detect_every=1, pace=1, thresholds={"entropy": 0.99, "reward": 0.4}
    )
    policy = ProgramPolicy(cfg)
    d = policy.decide(
        Report(
            used=3, answers={"a": "1", "b": "1", "c": "1"}, rewards={"a": 0.1, "b": 0.2, "c": 0.3}
        )
    )
    assert d.action == Action.CONTINUE
    d = policy.decide(
        Report(
            used=4,
            answers={"a": "1", "b": "1", "c": "1", "d": "1"},
            rewards={"a": 0.5, "b": 0.5, "c": 0.5, "d": 0.5},
        )
    )
    assert d.action == Action.STOP


def test_precomputed_values_are_used() -> None:
    policy = ProgramPolicy(PolicyConfig(cap=10, detect_at=2, initial=2))
    d = policy.decide(Report(used=2, values={"entropy": 0.9, "unrelated": 0.0}))
    assert d.action == Action.STOP and d.values == {"entropy": 0.9}


def test_cot_probe_consistency_with_hesitation() -> None:
    policy = ProgramPolicy(PolicyConfig.for_algorithm("cot", probe_window=2))
    steps = [
        (64, ["3"], ["3}"]),
        (128, ["3", "5"], ["3}", "5}"]),
        (192, ["3", "5", "5"], ["3}", "5}", "5} wait"]),
    ]
    for step, probes, texts in steps:
        d = policy.decide(Report(used=step, probe_answers=probes, probe_texts=texts))
        assert d.action == Action.CONTINUE and d.grant == 64
    answers, texts = ["3", "5", "5", "5"], ["3}", "5}", "5} wait", "5}"]
    d = policy.decide(Report(used=256, probe_answers=answers, probe_texts=texts))
    assert d.action == Action.CONTINUE  # the hesitant probe is still inside the window
    d = policy.decide(Report(used=320, probe_answers=[*answers, "5"], probe_texts=[*texts, "5}"]))
    assert d.action == Action.STOP and d.values["consistency"] == 1.0


def test_trim_minority_and_lowest_reward() -> None:
    minority = ProgramPolicy(PolicyConfig(trim="minority", trim_fraction=0.5, detect_at=5))
    d = minority.decide(sc_report(5, ["1", "1", "1", "2", None]))
    assert d.action == Action.TRIM and d.trim == ("b3", "b4") and d.grant == 5
    tie = ProgramPolicy(PolicyConfig(trim="minority", detect_at=5))
    assert tie.decide(sc_report(5, ["1", "1", "2", "2", "3"])).trim == ()
    lowest = ProgramPolicy(PolicyConfig.for_algorithm("beam"))
    d = lowest.decide(Report(used=4, rewards={"a": 0.9, "b": 0.1, "c": 0.5, "d": 0.2}))
    assert d.trim == ("b", "d")
    single = ProgramPolicy(PolicyConfig.for_algorithm("beam", trim_fraction=1.0))
    assert single.decide(Report(used=4, rewards={"a": 0.3, "b": 0.1})).trim == ("b",)


reports = st.lists(
    st.tuples(
        st.integers(0, 8),
        st.lists(st.sampled_from(["1", "2", None]), max_size=6),
        st.integers(0, 12),
    ),
    min_size=1,
    max_size=15,
)


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 30),
    st.integers(1, 6),
    st.integers(0, 3),
    st.sampled_from(["threshold", "posterior"]),
    reports,
)
def test_never_exceeds_cap_never_expands_when_stopped(  # type: ignore[no-untyped-def]
    cap, pace, every, rule, stream
) -> None:
    cfg = PolicyConfig(
        cap=cap,
        initial=min(pace, cap),
        pace=pace,
        detect_at=min(3, cap),
        detect_every=every,
        rule=rule,
    )
    policy = ProgramPolicy(cfg)
    used, stopped = 0, False
    for extra, values, slack in stream:
        d = policy.decide(sc_report(used, values, slack))
        if stopped:
            assert d.action == Action.STOP and d.expand == 0 and d.grant == 0
            continue
        if d.action == Action.STOP:
            stopped = True
            assert d.grant == 0 and d.expand == 0
            continue
        assert used + d.grant <= cap
        assert 0 <= d.expand <= slack and d.grant >= 1
        pending = policy._next_detect
        if d.expand and pending != float("inf"):
            assert used + d.grant <= pending  # expansion never skips a reading
        used += min(extra, d.grant)  # a program may use less than its grant
    if used >= cap:
        assert policy.decide(sc_report(used, [])).action == Action.STOP


def stabilizing_stream(noise: list[str], final: str, total: int) -> list[str]:
    return noise + [final] * (total - len(noise))


def replay(policy: ProgramPolicy, stream: list[str]) -> tuple[int, StopReason | None]:
    for n in range(1, len(stream) + 1):
        d = policy.decide(sc_report(n, stream[:n]))
        if d.action == Action.STOP:
            return n, d.reason
    raise AssertionError("policy never stopped")


def beta_tail(v1: int, v2: int) -> float:
    """P(p1 > 1/2) for p1 ~ Beta(v1+1, v2+1): P(Binomial(v1+v2+1, 1/2) <= v1)."""
    m = v1 + v2 + 1
    return sum(math.comb(m, j) for j in range(v1 + 1)) / 2**m


def test_replay_threshold_and_beta_rules_on_a_stabilizing_stream() -> None:
    # Answers alternate 1/2 for 4 samples, then settle on 1: counts after n are (n-2, 2).
    stream = stabilizing_stream(["1", "2", "1", "2"], "1", 20)
    base: dict[str, Any] = {"cap": 20, "initial": 2, "pace": 1, "detect_at": 2, "detect_every": 1}
    n, reason = replay(ProgramPolicy(PolicyConfig(**base, thresholds={"entropy": 0.7})), stream)
    expected = next(
        k
        for k in range(5, 21)
        if 1 - (-((k - 2) / k) * math.log((k - 2) / k) - (2 / k) * math.log(2 / k)) / math.log(k)
        >= 0.7
    )
    assert (n, reason) == (expected, StopReason.THRESHOLD) and n == 8
    posterior = PolicyConfig(**base, rule="posterior", confidence=0.95)
    n, reason = replay(ProgramPolicy(posterior), stream)
    expected = next(k for k in range(2, 21) if beta_tail(k - 2, 2) >= 0.95)
    assert (n, reason) == (expected, StopReason.POSTERIOR) and n == 10
    assert beta_tail(8, 2) == pytest.approx(1 - 67 / 2048)


def test_the_full_budget_posterior_reads_the_samples_left() -> None:
    # Counts (n - 2, 2) after n samples, as above. The full-budget posterior of a read at n is
    # the chance the leader still wins with cap - n samples left, and a budget this small
    # settles the vote before it settles which answer is most likely: the majority posterior
    # (whatever the cap) stops later.
    stream = stabilizing_stream(["1", "2", "1", "2"], "1", 20)
    base: dict[str, Any] = {"initial": 2, "pace": 1, "detect_at": 2, "detect_every": 1}
    stops = {}
    for cap in (12, 20):
        config = PolicyConfig(
            **base, cap=cap, rule="posterior", posterior_of="full_budget", confidence=0.95
        )
        n, reason = replay(ProgramPolicy(config), stream[:cap])
        expected = next(
            k for k in range(2, cap + 1) if full_budget_posterior([k - 2, 2], cap - k) >= 0.95
        )
        assert (n, reason) == (expected, StopReason.POSTERIOR)
        stops[cap] = n
        majority = PolicyConfig(**base, cap=cap, rule="posterior", confidence=0.95)
        assert replay(ProgramPolicy(majority), stream[:cap])[0] == 10
    assert stops[12] <= stops[20] < 10
    with pytest.raises(ValueError, match="posterior_of"):
        PolicyConfig(rule="posterior", posterior_of="mode")  # type: ignore[arg-type]


def test_replay_cot_stops_window_after_stabilization() -> None:
    for settle, window in [(1, 2), (4, 2), (4, 3), (7, 3)]:
        probes = [str(10 + k) for k in range(settle - 1)] + ["42"] * 12
        policy = ProgramPolicy(PolicyConfig.for_algorithm("cot", probe_window=window))
        for k in range(1, len(probes) + 1):
            d = policy.decide(Report(used=64 * k, probe_answers=probes[:k]))
            if d.action == Action.STOP:
                break
        assert d.action == Action.STOP and k == settle + window - 1


def test_unsettled_stream_runs_to_cap() -> None:
    stream = [str(i % 4) for i in range(20)]
    cfg = PolicyConfig(cap=20, initial=2, pace=1, detect_at=2, detect_every=1)
    assert replay(ProgramPolicy(cfg), stream) == (20, StopReason.CAP)


def test_a_detection_point_waits_for_data_of_every_thresholded_signal() -> None:
    # MCTS reads mean reward at 3 iterations; before any solution finished there is none.
    policy = ProgramPolicy(PolicyConfig.for_algorithm("mcts", cap=10))
    assert policy.decide(Report(used=3)).action is Action.CONTINUE
    assert policy.history == []  # not used up
    decision = policy.decide(Report(used=4, rewards={"n1": 0.9}))
    assert decision.action is Action.STOP and decision.values == {"reward": 0.9}


def test_a_small_cap_pulls_the_first_grant_and_detection_down() -> None:
    config = PolicyConfig.for_algorithm("beam", cap=8)
    assert (config.cap, config.initial, config.detect_at) == (8, 4, 8)
    with pytest.raises(ValueError, match="detect_at=12 exceeds cap=8"):
        PolicyConfig.for_algorithm("beam", cap=8, detect_at=12)


def test_injected_clusters_decide_like_clustering_the_answers() -> None:
    """A caller that has the equivalence classes already (a simulator) gets the same decision
    without math-verify."""
    answers = {"a": "7", "b": "7.0", "c": "8", "d": "7", "e": r"\frac{14}{2}"}
    clusters = [["a", "b", "d", "e"], ["c"]]
    for config in (PolicyConfig.for_algorithm("sc"), PolicyConfig(rule="posterior")):
        plain = ProgramPolicy(config).decide(Report(used=5, answers=answers))
        given = ProgramPolicy(config).decide(Report(used=5, answers=answers, clusters=clusters))
        assert plain == given
    split = ProgramPolicy(PolicyConfig.for_algorithm("sc"))
    d = split.decide(Report(used=5, answers=answers, clusters=[["a", "b"], ["c", "d"], ["e"]]))
    assert d.action is Action.CONTINUE and d.values["entropy"] < 0.7


def test_a_decided_vote_stops_exactly_when_the_runner_up_cannot_catch_up() -> None:
    config = PolicyConfig.for_algorithm("sc", thresholds={}, stop_when_decided=True)
    # 15 drawn, 5 left: 11 vs 4 could still tie? 4 + 5 = 9 < 11: decided.
    d = ProgramPolicy(config).decide(sc_report(15, ["7"] * 11 + ["8"] * 4))
    assert d.action == Action.STOP and d.reason == StopReason.DECIDED
    # 10 vs 5 with 5 left: the runner-up can still tie at 10, so it goes on.
    d = ProgramPolicy(config).decide(sc_report(15, ["7"] * 10 + ["8"] * 5))
    assert d.action == Action.CONTINUE and d.grant == 5
    # Junk never leads: 15 different fragments and no answer, 5 left.
    junk = [f"fragment {i}" for i in range(10)] + [None] * 5
    assert ProgramPolicy(config).decide(sc_report(15, junk)).action == Action.CONTINUE
    # Scattered junk does not hold back a leader the junk cannot overturn: 9 of 15, 5 left.
    d = ProgramPolicy(config).decide(sc_report(15, ["Paris"] * 9 + junk[:6]))
    assert d.reason == StopReason.DECIDED
    off = PolicyConfig.for_algorithm("sc", thresholds={}, stop_when_decided=False)
    assert ProgramPolicy(off).decide(sc_report(15, ["7"] * 15)).action == Action.CONTINUE
    assert PolicyConfig.for_algorithm("sc").stop_when_decided  # on by default for SC


@settings(max_examples=300, deadline=None)
@given(
    cap=st.integers(2, 12),
    votes=st.lists(st.sampled_from(["1", "2", "3", None]), min_size=24, max_size=24),
    seen=st.integers(1, 11),
)
def test_a_decided_stop_never_changes_the_full_budget_answer(
    cap: int, votes: list[str | None], seen: int
) -> None:
    from dynasor_sgl.search.votes import majority_vote

    drawn = votes[: min(seen, cap - 1)]
    config = PolicyConfig.for_algorithm("sc", thresholds={}, stop_when_decided=True, cap=cap)
    d = ProgramPolicy(config).decide(sc_report(len(drawn), drawn))
    if d.reason == StopReason.DECIDED:
        now = majority_vote(drawn).answer
        left = cap - len(drawn)
        # Any rest, and the worst one: every sample left joins the strongest rival.
        rivals = [a for a in ("1", "2", "3") if a != now]
        worst = max(rivals, key=lambda a: (drawn.count(a), a))
        for tail in (votes[len(drawn) : cap], [worst] * left):
            assert majority_vote(drawn + tail).answer == now
