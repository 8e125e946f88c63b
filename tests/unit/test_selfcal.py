"""Label-free calibration on hand-made full-budget runs (`dynasor_sgl.replay.selfcal`): the loss
is disagreement with the run's own full-budget answer, no label needed; the chosen rule is
certified; cross-fitting never lets a question calibrate its own decision."""

from __future__ import annotations

import pytest

from dynasor_sgl.policy.config import PolicyConfig
from dynasor_sgl.replay import selfcal
from dynasor_sgl.replay.sampled import RecordedRun, SampledRun

CAP = 10


def run(qid: str, answers: list[str | None], gold: str | None = None) -> RecordedRun:
    return RecordedRun(qid, gold, SampledRun(tuple(answers), (10,) * len(answers), 100))


SETTLED = ["7"] * CAP  # every sample agrees: any rule keeps the full-budget answer


def once_at_5() -> selfcal.Family:
    """Entropy read once at 5: 1.0 (all five agree) then 0.5."""
    return selfcal.Family(
        "once at 5",
        tuple(
            selfcal.Candidate(
                f"entropy {t}",
                PolicyConfig.for_algorithm(
                    "sc", cap=CAP, detect_at=5, initial=5, detect_every=0, thresholds={"entropy": t}
                ),
            )
            for t in (1.0, 0.5)
        ),
    )


def test_the_loss_is_disagreement_with_the_full_budget_not_with_a_label() -> None:
    # "3" x 5 then "7" x 5: stopping at 5 answers "3"; the full budget's 5-5 tie goes to the
    # earliest, "3" too: no loss, whatever the gold says (here "7").
    tie = run("tie", ["3"] * 5 + ["7"] * 5, gold="7")
    # "3" x 4, "7" x 6: stopping at 5 ("3" x 4, "7" x 1) answers "3"; the full budget "7".
    late = run("late", ["3"] * 4 + ["7"] * 6, gold="7")
    scores = selfcal.score(once_at_5(), [tie, late])
    # entropy of the first five: tie 1.0 (all "3"): both thresholds stop at 5;
    # late: 4-1 split, certaindex 0.689: 1.0 reads on to the cap, 0.5 stops at 5.
    assert scores.losses.tolist() == [[0, 0], [0, 1]]
    assert scores.tokens.tolist() == [[150, 150], [200, 150]]
    assert scores.correct.tolist() == [[0, 0], [1, 0]]


def test_a_calibration_set_certifies_the_most_permissive_safe_rule() -> None:
    # 22 settled runs: no loss anywhere; 0.9^22 = 0.098 <= 0.1, so at eps 0.1 both candidates
    # are certified and the looser (entropy 0.5) is chosen; at eps 0.02 nothing is (0.98^22).
    runs = [run(f"q{i}", SETTLED) for i in range(22)]
    loose = selfcal.fit(runs, [once_at_5()], epsilon=0.1, delta=0.1)
    assert loose.family == "once at 5" and loose.candidate is not None
    assert loose.candidate.label == "entropy 0.5"
    strict = selfcal.fit(runs, [once_at_5()], epsilon=0.02, delta=0.1)
    assert strict.candidate is None and strict.certified == {"once at 5": None}
    assert strict.to_dict()["certifiable_epsilon"] == pytest.approx(1 - 0.1 ** (1 / 22))


def test_a_rule_that_disagrees_too_often_is_not_certified() -> None:
    # 22 runs where stopping at 5 on a 4-1 split answers "3" and the full budget "7": the
    # loose candidate loses on every run; the strict one (read on to the cap) on none.
    runs = [run(f"q{i}", ["3"] * 4 + ["7"] * 6) for i in range(22)]
    fitted = selfcal.fit(runs, [once_at_5()], epsilon=0.1, delta=0.1)
    assert fitted.candidate is not None and fitted.candidate.label == "entropy 1.0"


def test_cross_fitting_decides_each_fold_on_the_other_folds_only() -> None:
    # Fold membership is a hash of the id: pick 30 ids in each of the two folds. Fold 0 holds
    # runs that mislead an early stop, fold 1 settled runs. Fold 1 alone would certify the
    # loose rule; decided on fold 0 (where the loose rule loses), it gets the strict one.
    # Fold 0, decided on fold 1, gets the loose rule, stops at 5 and disagrees on all 30: a
    # question's own samples never protect it.
    ids = [f"q{i}" for i in range(400)]
    zero = [q for q in ids if selfcal.fold_of(q, 2) == 0][:30]
    one = [q for q in ids if selfcal.fold_of(q, 2) == 1][:30]
    runs = [run(q, ["3"] * 4 + ["7"] * 6) for q in zero] + [run(q, SETTLED) for q in one]
    out = selfcal.cross_fit(runs, [once_at_5()], epsilon=0.1, delta=0.1, folds=2)
    measured = out["self_calibrated"]
    assert measured["n"] == 60 and measured["disagreements"] == 30
    # fold 0 stops at 5 on its 4-1 split; fold 1's five agree, so even the strict rule stops
    assert measured["tokens"] == 60 * 150
    assert out["full_budget"]["tokens"] == 60 * 200
    assert [f["candidate"] and f["candidate"]["label"] for f in out["fits"]] == [
        "entropy 0.5",  # fold 0's decision, fitted on fold 1
        "entropy 1.0",  # fold 1's decision, fitted on fold 0
    ]


def test_the_default_families_replay_and_keep_their_order() -> None:
    families = selfcal.sc_families(20, confidences=True)
    assert [f.name for f in families] == [
        "entropy, once at 5",
        "entropy, every 5",
        "posterior, every 5",
        "full-budget posterior, every 5",
        "confidence trimming",
    ]
    sequential = [c.config for f in families[1:4] for c in f.candidates]
    # read at the shipped pace: at 5, then every 5, drawn in batches of 5
    assert {(c.detect_at, c.detect_every, c.initial, c.pace) for c in sequential} == {(5, 5, 5, 5)}
    assert {c.config.detect_at for f in selfcal.sc_families(3) for c in f.candidates} == {3}
    entropy = [c.config.thresholds["entropy"] for c in families[0].candidates]
    assert entropy == sorted(entropy, reverse=True)  # conservative first
    assert len(selfcal.sc_families(20)) == 4  # no confidences recorded: no trimming
    events = [c.config.posterior_of for f in families[2:4] for c in f.candidates]
    assert events == ["majority"] * 10 + ["full_budget"] * 10
