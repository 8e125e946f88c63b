"""Self-consistency runs sampled to the full budget, and what other policies would have done.

A full-budget SC run draws `cap` samples; its first k samples are a valid run that stopped at k
(samples are exchangeable). So the Dynasor policy, the baseline at any smaller cap and the oracle
are all computed from the same samples: the policy through `dynasor_sgl.replay.engine` (the engine
calibration uses too), reporting where the live program would (initial, then every `pace`).
Tokens are the run's shared prompt prefill plus the samples drawn. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dynasor_sgl.policy.machine import PolicyConfig, Report
from dynasor_sgl.replay.engine import first_at, oracle_index, replay_run
from dynasor_sgl.search.votes import majority_vote


@dataclass(frozen=True)
class SampledRun:
    """A full-budget SC run: per-sample answers and tokens, plus tokens shared by all samples
    (the prompt's prefill); where recorded, each sample's token confidences (DeepConf's c_t
    per generated token, `record_topk`), from which confidence trimming is replayed."""

    answers: tuple[str | None, ...]
    sample_tokens: tuple[int, ...]
    shared_tokens: int
    confidences: tuple[tuple[float, ...], ...] | None = None

    def __post_init__(self) -> None:
        if len(self.answers) != len(self.sample_tokens) or not self.answers:
            raise ValueError("a sampled run needs as many token counts as answers, at least one")
        if self.confidences is not None and len(self.confidences) != len(self.answers):
            raise ValueError("a sampled run needs as many confidence lists as answers")

    def tokens_at(self, k: int) -> int:
        return self.shared_tokens + sum(self.sample_tokens[:k])

    def answer_at(self, k: int) -> str | None:
        return majority_vote(list(self.answers[:k])).answer


@dataclass(frozen=True)
class Outcome:
    """What a policy would have returned: answer, samples drawn (`used`, knob units), tokens,
    exit reason, and the certaindex read on the way."""

    answer: str | None
    used: int
    tokens: int
    exit_reason: str
    certaindex: list[dict[str, Any]] = field(default_factory=list)


def replay_policy(run: SampledRun, config: PolicyConfig) -> Outcome:
    """The live SC program's path under `config`: report at initial, initial+pace, ..."""

    def report_at(i: int) -> Report:
        return Report(used=i + 1, answers={f"s{j}": run.answers[j] for j in range(i + 1)})

    points = range(1, len(run.answers) + 1)
    end = replay_run(config, points, report_at)
    drawn = end.used
    return Outcome(
        run.answer_at(drawn), drawn, run.tokens_at(drawn), end.exit_reason, end.certaindex
    )


def replay_cap(run: SampledRun, cap: int) -> Outcome:
    """The even-budget baseline at `cap` samples: majority of the first `cap` (the fixed cap of
    `replay.holdout.fixed_cap`, stopped by the same `first_at`)."""
    k = first_at(range(1, len(run.answers) + 1), cap) + 1
    return Outcome(run.answer_at(k), k, run.tokens_at(k), "cap")


def replay_oracle(run: SampledRun) -> Outcome:
    """Stop at the earliest k after which the majority answer never changes again."""
    majorities = [run.answer_at(k) for k in range(1, len(run.answers) + 1)]
    k = oracle_index(majorities) + 1
    return Outcome(majorities[k - 1], k, run.tokens_at(k), "oracle")


def sampled_run(details: dict[str, Any], total_tokens: int) -> SampledRun:
    """The SampledRun of a self-consistency result's details and token total."""
    sample_tokens = tuple(int(t) for t in details["sample_tokens"])
    answers: Sequence[str | None] = details["answers"]
    recorded = details.get("token_confidences")
    confidences = tuple(tuple(float(c) for c in cs) for cs in recorded) if recorded else None
    return SampledRun(tuple(answers), sample_tokens, total_tokens - sum(sample_tokens), confidences)


@dataclass(frozen=True)
class RecordedRun:
    """A question's full-budget SC run as an eval results file keeps it: the question's id, its
    correct answer where known (None: unlabelled, as served traffic is), and the samples."""

    question_id: str
    gold: str | None
    run: SampledRun

    def full_answer(self) -> str | None:
        """The answer the program gives at its full budget: the majority of every sample."""
        return self.run.answer_at(len(self.run.answers))


def row_of(record: Mapping[str, Any]) -> str | None:
    """An eval record's row: "baseline", "dynasor", "paper" or "oracle" (a label of the
    evaluation, not a program policy). Files written before the rename call it "policy", and
    their replayed "dynasor" record is the fixed-threshold replay, today's "paper" row."""
    if "row" in record:
        return None if record["row"] is None else str(record["row"])
    label = record.get("policy")
    if not isinstance(label, str):
        return None
    return "paper" if label == "dynasor" and record.get("mode") == "replay" else label


def is_baseline(record: Mapping[str, Any]) -> bool:
    """Whether an eval record is a finished full-budget ("baseline") run, of any program."""
    return row_of(record) == "baseline" and record.get("status") == "ok"


def is_full_budget(record: Mapping[str, Any]) -> bool:
    """The one filter for replayable full-budget runs among eval records: a finished baseline
    record that kept every sample's answer and tokens (self-consistency's)."""
    details = record.get("details") or {}
    return is_baseline(record) and "answers" in details and "sample_tokens" in details


def full_budget_runs(records: Iterable[Mapping[str, Any]]) -> list[RecordedRun]:
    """The full-budget runs among eval records (`is_full_budget`), in file order."""
    return [
        RecordedRun(
            str(r["question_id"]),
            None if r.get("gold") is None else str(r["gold"]),
            sampled_run(r["details"], int((r.get("tokens") or {}).get("total", 0))),
        )
        for r in records
        if is_full_budget(r)
    ]
