"""Confidence trimming (DeepConf online) replayed over a full-budget self-consistency run.

A run recorded with `record_topk` keeps every sample's token confidences, and trimming is a
pure function of them: the samples are fed, in order, through the same
`trimming.ConfidenceTrimmer` the router uses (the first `warmup` that finish set the
threshold; a later sample is cut at the first token whose group confidence falls below it).
A cut sample leaves the vote and the certaindex reports and costs only the tokens it had
generated; the answer is the vote of the kept samples weighted by their mean token
confidence, as the live program's. A stop rule (the policy's) can end the run early as well,
read where the live program would read it (`dynasor_sgl.replay.engine`).

Replay is the ideal of the live path: the router cuts a branch when the chunk that crossed
the threshold reaches it, and the worker stops a few tokens after the abort, so live trimming
costs slightly more tokens than replayed. Pure: no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from dynasor_sgl.policy.machine import PolicyConfig, Report
from dynasor_sgl.policy.trimming import ConfidenceTrimmer
from dynasor_sgl.replay.engine import replay_run
from dynasor_sgl.replay.sampled import Outcome, SampledRun
from dynasor_sgl.search.votes import weighted_vote


def cut_points(confidences: Sequence[Sequence[float]], config: PolicyConfig) -> list[int | None]:
    """For each sample in order, the generated tokens after which trimming with the policy's
    knobs (`confidence_window` ≥ 1, `confidence_percentile`, `warmup`) cuts it (None: it runs
    to its end)."""
    trimmer = ConfidenceTrimmer(
        config.confidence_window, config.confidence_percentile, config.warmup
    )
    cuts: list[int | None] = []
    for sample in confidences:
        branch = trimmer.branch()
        cut = next((t for t, c in enumerate(sample, 1) if trimmer.feed(branch, [c])), None)
        if cut is None:
            trimmer.finished(branch, aborted=False)
        cuts.append(cut)
    return cuts


def mean_confidence(sample: Sequence[float]) -> float:
    """A sample's weight in the vote: its mean token confidence (0.0 with no tokens)."""
    return math.fsum(sample) / len(sample) if sample else 0.0


def weighted_answer(run: SampledRun, kept: Sequence[int]) -> str | None:
    """The confidence-weighted vote of the samples `kept` (indices)."""
    assert run.confidences is not None
    answers = [run.answers[j] for j in kept]
    weights = [mean_confidence(run.confidences[j]) for j in kept]
    return weighted_vote(answers, weights).answer


def replay_weighted_cap(run: SampledRun, cap: int) -> Outcome:
    """Confidence weighting alone: the weighted vote of the first `cap` samples."""
    k = min(cap, len(run.answers))
    return Outcome(weighted_answer(run, range(k)), k, run.tokens_at(k), "cap")


def replay_trimmed(run: SampledRun, config: PolicyConfig) -> Outcome:
    """The live SC program under `config`: its confidence trimming and its stop (a config read
    only at its cap gives trimming alone); needs recorded confidences."""
    if run.confidences is None:
        raise ValueError("this run has no token confidences (record it with record_topk > 0)")
    confidences = run.confidences
    cuts = cut_points(confidences, config)

    def report_at(i: int) -> Report:
        kept = {f"s{j}": run.answers[j] for j in range(i + 1) if cuts[j] is None}
        return Report(used=i + 1, answers=kept)

    end = replay_run(config, range(1, len(run.answers) + 1), report_at)
    drawn = range(end.used)
    tokens = run.shared_tokens + sum(
        run.sample_tokens[j] - (len(confidences[j]) - c if (c := cuts[j]) is not None else 0)
        for j in drawn
    )
    kept = [j for j in drawn if cuts[j] is None]
    return Outcome(weighted_answer(run, kept), end.used, tokens, end.exit_reason, end.certaindex)
