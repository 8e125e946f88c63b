"""Self-calibration online, the pure book (`dynasor_sgl.replay.selfcal_book`): hand-computed
runs give the rule and the bound; a key short of runs keeps the defaults; exploration takes its
share, reproducibly, and runs to the cap; the book survives a JSON round trip."""

from __future__ import annotations

import json
import math

import pytest

from dynasor_sgl.policy import risk
from dynasor_sgl.policy.config import PolicyConfig
from dynasor_sgl.policy.machine import Action, ProgramPolicy, Report, StopReason
from dynasor_sgl.replay.sampled import RecordedRun, SampledRun
from dynasor_sgl.replay.selfcal_book import CalibrationBook, serve_recorded
from dynasor_sgl.replay.selfcal_key import BookSettings, Key, explore_run
from dynasor_sgl.router.calibration_file import load_book, write_atomically

CAP = 10
KEY = Key("sc", "m", None, CAP)
BASE = PolicyConfig.for_algorithm("sc", cap=CAP)
# 3 × "3" then 7 × "7": every rule that stops at 3 samples answers 3, the full budget 7. Read
# once at 5 (3 against 2) the entropy certaindex is 1 − H(0.6, 0.4) / ln 5 = 0.582, so
# thresholds 1.0 .. 0.6 go on to the cap (no loss) and 0.55 and below stop wrong.
SPLIT = ["3"] * 3 + ["7"] * 7
LOOSE = BookSettings(explore=1.0, epsilon=0.3, delta=0.1)


def recorded(i: int, answers: list[str | None]) -> RecordedRun:
    return RecordedRun(f"p{i}", None, SampledRun(tuple(answers), (10,) * len(answers), 100))


def feed(book: CalibrationBook, runs: int, answers: list[str | None], key: Key = KEY) -> None:
    for i in range(runs):
        base = PolicyConfig.for_algorithm("sc", cap=key.cap)
        assigned = book.assign(key, base, {"cap": key.cap})
        assert assigned is not None and assigned.explored
        state = book.state(key)
        assert state is not None
        book.record(key, explore_run(recorded(i, answers), assigned.in_force, state.families))


def test_the_bound_needs_eleven_programs_at_a_loose_epsilon() -> None:
    # δ is shared by the four families: (1 − 0.3)^n ≤ 0.1 / 4 first holds at n = 11
    assert 0.7**10 > 0.1 / 4 >= 0.7**11
    assert risk.min_programs(0.3, 0.1 / 4) == 11
    book = CalibrationBook(LOOSE)
    feed(book, 10, SPLIT)
    view = book.view()["keys"][0]
    assert (view["runs"], view["min_programs"], view["state"]) == (10, 11, "defaults")
    assert view["candidate"] is None and view["threshold"] is None
    assert book.assign(KEY, BASE, {}) is not None


def test_hand_computed_runs_choose_the_loosest_threshold_that_never_disagreed() -> None:
    book = CalibrationBook(LOOSE)
    key = Key("sc", "m", None, 15)
    # 3 × "3" then 12 × "7" at cap 15. At 5 samples (3 against 2) the entropy certaindex is
    # 0.582, so thresholds 0.55 and below stop wrong there; at 10 (3 against 7) it is
    # 1 − H(0.3, 0.7) / ln 10 = 0.735, so read every 5 thresholds 0.7 .. 0.6 stop right at 10,
    # where read once at 5 they run to the cap. The posterior, read every 5, stops at 10 at
    # best too, and so does the full-budget posterior (0.633 at 5, so 0.6 stops wrong there;
    # 0.989 at 10): tied with entropy every 5, the family listed first wins.
    feed(book, 11, ["3"] * 3 + ["7"] * 12, key)
    view = book.view()["keys"][0]
    assert view["state"] == "fitted"
    assert (view["family"], view["candidate"], view["threshold"]) == (
        "entropy, every 5",
        "entropy 0.6",
        0.6,
    )
    assert view["certifiable_epsilon"] == pytest.approx(1 - (0.1 / 4) ** (1 / 11))
    assert view["disagreement"] == 0.0  # the defaults (0.7 at 5, then every 5) stop right at 10
    assigned = CalibrationBook.from_json(book.to_json(), BookSettings(0.0, 0.3, 0.1)).assign(
        key, BASE, {"cap": 15}
    )
    assert assigned is not None and (assigned.rule, assigned.explored) == ("fitted", False)
    config = assigned.config
    assert (config.rule, config.thresholds, config.detect_every) == (
        "threshold",
        {"entropy": 0.6},
        5,
    )


def test_settled_runs_choose_the_cheapest_family_and_a_bad_default_is_seen() -> None:
    book = CalibrationBook(LOOSE)
    # the defaults read at 5: five "3" are certain, so they stop with 3; the cap (12) says 7
    feed(book, 11, ["3"] * 5 + ["7"] * 7, Key("sc", "m", None, 12))
    assert book.view()["keys"][0]["disagreement"] == 1.0
    settled = CalibrationBook(LOOSE)
    feed(settled, 11, ["7"] * CAP)
    view = settled.view()["keys"][0]
    # every rule agrees and stops at its first reading, 5; the first family of those tied wins
    assert (view["family"], view["candidate"]) == ("entropy, once at 5", "entropy 0.3")
    assert view["disagreement"] == 0.0


def test_a_key_with_too_few_programs_keeps_the_routers_defaults() -> None:
    book = CalibrationBook(BookSettings(explore=0.0))
    policy_file = PolicyConfig.for_algorithm("sc", cap=CAP, thresholds={"entropy": 0.4})
    assigned = book.assign(KEY, policy_file, {})
    assert assigned is not None
    assert (assigned.rule, assigned.explored) == ("defaults", False)
    assert assigned.config == policy_file  # the policy file still applies
    assert book.view()["keys"][0]["min_programs"] == math.ceil(
        math.log(0.1 / 4) / math.log(0.98) - 1e-12
    )


@pytest.mark.parametrize("share, explored", [(0.0, []), (0.1, [9, 19, 29]), (1.0, list(range(30)))])
def test_exploration_takes_its_share_reproducibly(share: float, explored: list[int]) -> None:
    def picks() -> list[int]:
        book = CalibrationBook(BookSettings(explore=share))
        return [i for i in range(30) if book.assign(KEY, BASE, {}).explored]  # type: ignore[union-attr]

    assert picks() == explored == picks()


def test_an_explored_program_never_stops_before_its_cap() -> None:
    assigned = CalibrationBook(LOOSE).assign(KEY, BASE, {})
    assert assigned is not None and assigned.explored and assigned.rule == "explore"
    policy = ProgramPolicy(assigned.config)
    used = policy.initial_grant
    while used < CAP:  # unanimous answers: the defaults would stop at 5
        decision = policy.decide(Report(used=used, answers={f"s{i}": "7" for i in range(used)}))
        assert decision.action is not Action.STOP
        used += decision.grant
    last = policy.decide(Report(used=CAP, answers={f"s{i}": "7" for i in range(CAP)}))
    assert (last.action, last.reason) == (Action.STOP, StopReason.CAP)


def test_only_self_consistency_without_a_clients_own_rule_calibrates() -> None:
    book = CalibrationBook(LOOSE)
    assert book.assign(KEY, BASE, {"thresholds": {"entropy": 0.5}}) is None
    assert book.assign(KEY, BASE, {"step": 2}) is None  # the old name of pace
    cot = PolicyConfig.for_algorithm("cot")
    assert book.assign(Key("cot", "m", None, cot.cap), cot, {}) is None
    assert book.assign(KEY, BASE, {"cap": CAP, "seed": 3}) is not None
    assert [k["cap"] for k in book.view()["keys"]] == [CAP]


def test_keys_and_runs_are_bounded() -> None:
    book = CalibrationBook(BookSettings(explore=1.0, max_runs=3, max_keys=2))
    for task in ("a", "b", "c"):
        book.assign(Key("sc", "m", task, CAP), BASE, {})
    assert [k["task"] for k in book.view()["keys"]] == ["a", "b"]
    feed(book, 5, SPLIT, Key("sc", "m", "a", CAP))
    assert book.view()["keys"][0]["runs"] == 3


def test_the_book_survives_a_file_round_trip(tmp_path: object) -> None:
    path = str(tmp_path) + "/calibration.json"  # type: ignore[operator]
    book = CalibrationBook(LOOSE)
    feed(book, 10, SPLIT)
    write_atomically(path, book.to_json())
    again = load_book(path, LOOSE)
    assert again.view() == book.view()
    # it goes on counting where it stopped: the next program is the 11th
    assert again.keys[KEY.name].registered == 10
    assert load_book(path + ".missing", LOOSE).view()["keys"] == []
    stale = book.to_json()
    stale["keys"][0]["candidates"] = [["an old grid"]]  # replayed again under today's grid
    assert CalibrationBook.from_json(json.loads(json.dumps(stale)), LOOSE).view() == book.view()


@pytest.mark.parametrize(
    "content, message",
    [("[]", "expected a JSON object"), ('{"format": 9, "keys": []}', "format"), ("{", "cannot")],
)
def test_a_bad_calibration_file_is_a_value_error_naming_it(
    tmp_path: object, content: str, message: str
) -> None:
    path = str(tmp_path) + "/bad.json"  # type: ignore[operator]
    with open(path, "w") as f:
        f.write(content)
    with pytest.raises(ValueError, match=message) as caught:
        load_book(path, LOOSE)
    assert "bad.json" in str(caught.value)


@pytest.mark.parametrize(
    "settings, name",
    [({"explore": 1.5}, "explore"), ({"epsilon": 0.0}, "epsilon"), ({"max_runs": 0}, "max_runs")],
)
def test_bad_settings_name_themselves(settings: dict[str, float], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        BookSettings(**settings)  # type: ignore[arg-type]


@pytest.mark.parametrize("cap", [1, 2, 3])
def test_a_small_cap_calibrates_too(cap: int) -> None:
    key = Key("sc", "m", None, cap)
    book = CalibrationBook(LOOSE)
    feed(book, 11, ["7"] * cap, key)
    view = book.view()["keys"][0]
    assert view["runs"] == 11 and view["state"] == "fitted"


def test_recorded_runs_served_in_order_learn_then_save() -> None:
    book = CalibrationBook(LOOSE)
    settled = [recorded(i, ["7"] * CAP) for i in range(13)]
    learning = serve_recorded(book, KEY, BASE, settled[:11])
    assert [s.rule for s in learning] == ["explore"] * 11
    assert {s.tokens for s in learning} == {100 + 10 * CAP}  # the whole run
    applied = CalibrationBook.from_json(book.to_json(), BookSettings(0.0, 0.3, 0.1))
    served = serve_recorded(applied, KEY, BASE, settled[11:])
    # fitted: entropy read at 5 samples, which agree: 100 shared + 5 x 10 tokens
    assert [(s.rule, s.tokens, s.answer, s.disagrees) for s in served] == [
        ("fitted", 150, "7", False)
    ] * 2
