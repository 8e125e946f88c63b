"""Program traces: what each knob unit of a program generated, to replay through the policy.

A trace is one program at its cap: per unit, its tokens, its answer as a cluster label
(samples with the same label are equivalent; `NO_ANSWER` never agrees with anything), and a
reward where the algorithm has one. Labels stand for answers already clustered, so replaying a
trace decides without math-verify (`Report.clusters`). Traces come from a `dynasor-sgl eval`
results file (self-consistency baseline records keep every sample's answer and tokens), or
are synthetic (`synthetic.py`), labelled so, or are rebuilt from an online benchmark's own
program records (`record_trace`: what that very program used and generated, for validating
the simulator like for like). Pure except `load_eval_traces`.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dynasor_sgl.online.workload import DEFAULT_DIFFICULTY, difficulty_of
from dynasor_sgl.policy.machine import EARLY_STOPS

logger = logging.getLogger(__name__)

NO_ANSWER = -1  # an empty or unparseable answer: its own cluster


@dataclass(frozen=True)
class Unit:
    """One knob unit of a program: tokens generated, answer label, reward (None: none)."""

    tokens: int
    label: int = NO_ANSWER
    reward: float | None = None


@dataclass(frozen=True)
class Trace:
    """One program at its cap. prompt_tokens: its shared prompt (prefilled once per worker).
    gold: the label of the right answer (None: no unit got it right). source: where it comes
    from ("eval:<file>" or "synthetic:<workload>"). max_new: the max_new_tokens its requests
    were sent with (0: the run's own setting). warm_tokens: prompt tokens the worker's cache
    held when it started (a prefix every program shares, or the same prompt run earlier)."""

    question_id: str
    algorithm: str
    prompt_tokens: int
    units: tuple[Unit, ...]
    gold: int | None
    source: str
    max_new: int = 0
    warm_tokens: int = 0

    def __post_init__(self) -> None:
        if not self.units:
            raise ValueError(f"trace {self.question_id} has no units")
        if not 0 <= self.warm_tokens <= self.prompt_tokens:
            raise ValueError(f"trace {self.question_id}: warm_tokens outside 0..prompt_tokens")
        if self.prompt_tokens < 0 or any(u.tokens < 0 for u in self.units):
            raise ValueError(f"trace {self.question_id} has a negative token count")

    def truncated(self, cap: int) -> Trace:
        """The same program at a smaller cap (its first `cap` units)."""
        return dataclasses.replace(self, units=self.units[: max(1, cap)])

    def answers(self, k: int) -> dict[str, str | None]:
        """The first k units' answers by branch id (`s<i>`), as the program reports them."""
        return {f"s{i}": _text(u.label) for i, u in enumerate(self.units[:k])}

    def clusters(self, k: int) -> list[list[str]]:
        """The first k units' branches grouped by label (each unanswered one alone)."""
        groups: dict[int, list[str]] = {}
        alone = []
        for i, u in enumerate(self.units[:k]):
            if u.label == NO_ANSWER:
                alone.append([f"s{i}"])
            else:
                groups.setdefault(u.label, []).append(f"s{i}")
        return [*groups.values(), *alone]

    def rewards(self, k: int) -> dict[str, float]:
        return {f"s{i}": u.reward for i, u in enumerate(self.units[:k]) if u.reward is not None}

    def majority(self, k: int) -> int | None:
        """The label of the largest cluster among the first k units (ties: the earliest
        label seen), or None if no unit answered."""
        counts: dict[int, int] = {}
        for u in self.units[:k]:
            if u.label != NO_ANSWER:
                counts[u.label] = counts.get(u.label, 0) + 1
        return max(counts, key=lambda lb: counts[lb]) if counts else None

    def difficulty(self) -> int:
        """1 when every unit is right, 3 when none is, 2 when mixed (the online workload's)."""
        if self.gold is None:
            return 3
        return difficulty_of([u.label == self.gold for u in self.units])


def _text(label: int) -> str | None:
    return None if label == NO_ANSWER else str(label)


def labels_of(answers: Sequence[str | None], gold: str | None) -> tuple[list[int], int | None]:
    """Cluster labels of `answers` (math-verify equivalence, `answers.cluster`) and the label
    equivalent to `gold` (None if none is)."""
    from dynasor_sgl.answers.equivalence import cluster, equivalent, normalize

    labels = [NO_ANSWER] * len(answers)
    gold_label = None
    for n, group in enumerate(cluster(answers)):
        if not normalize(answers[group[0]]):
            continue
        for i in group:
            labels[i] = n
        if gold is not None and gold_label is None and equivalent(answers[group[0]], gold):
            gold_label = n
    return labels, gold_label


def load_eval_traces(path: str | Path) -> list[Trace]:
    """Self-consistency traces from the finished baseline records of an eval results file
    (records without per-sample answers and tokens are skipped). No usable record: ValueError."""
    from dynasor_sgl.eval.results import read_records
    from dynasor_sgl.replay.sampled import full_budget_runs

    if not Path(path).is_file():
        raise ValueError(f"trace file {path} does not exist")
    _, records = read_records(path)
    traces = []
    for recorded in full_budget_runs(records):
        run = recorded.run
        labels, gold = labels_of(run.answers, recorded.gold)
        units = tuple(Unit(t, lb) for t, lb in zip(run.sample_tokens, labels, strict=True))
        prompt = max(1, run.shared_tokens)
        source = f"eval:{Path(path).name}"
        traces.append(Trace(recorded.question_id, "sc", prompt, units, gold, source))
    if not traces:
        raise ValueError(f"{path} has no finished self-consistency baseline records to replay")
    logger.info("%d traces from %s", len(traces), path)
    return traces


SHORT_SAMPLE_TOKENS = 10  # a sample that answers before max_new (the embedded model's typical)


def split_tokens(total: int, units: int, max_new: int) -> list[int]:
    """`total` generated tokens over `units` samples, bimodal as the samples are: as many at
    `max_new` as leave the others about `SHORT_SAMPLE_TOKENS` each, those split evenly; the
    full ones go to every other unit first, so each round has its share. Sums to `total`
    clipped to [0, units × max_new]."""
    if units <= 0:
        return []
    total = max(0, min(total, units * max_new))
    spare = max_new - SHORT_SAMPLE_TOKENS
    full = units if spare <= 0 else round((total - units * SHORT_SAMPLE_TOKENS) / spare)
    full = max(0, min(units, full))
    while full and total < full * max_new:
        full -= 1
    order = list(range(0, units, 2)) + list(range(1, units, 2))
    out = [0] * units
    for i in order[:full]:
        out[i] = max_new
    shorts, rest = order[full:], total - full * max_new
    for k, i in enumerate(shorts):
        out[i] = rest // len(shorts) + (1 if k < rest % len(shorts) else 0)
    return out


def record_trace(rec: Mapping[str, Any], cap: int, max_new: int) -> Trace:
    """The trace of one real self-consistency program record of `dynasor-sgl bench online`: its own
    steps and generated tokens (`split_tokens`), its prompt (prompt tokens per request) and how
    much of it was cached when it started (the prompt less what its first request prefilled: its
    prefill less one recomputed token per later request), and answer labels that make the policy
    decide as it did: a certaindex stop (threshold, posterior or a decided vote) at its `steps`
    (all agree), else no agreement (every unit its own answer) so only the cap or the router
    ends it. A program the router stopped at its deadline is not pinned there: the record is
    what it would have done without the stop up to `steps`, and units past them get its mean
    tokens, so the simulated router's own deadline stop decides where it ends. The program's
    answer is label 0; gold is 0 when it was right."""
    detail = rec.get("tokens_detail") or {}
    steps = max(1, min(cap, int(rec.get("steps") or cap)))
    own = split_tokens(int(detail.get("generated", 0)), steps, max_new)
    mean = round(sum(own) / steps) if own else max_new
    tokens = own + [mean] * (cap - steps)
    agreed = rec.get("exit_reason") in EARLY_STOPS
    labels = [0 if agreed and i < steps else i for i in range(cap)]
    requests = max(1, int(detail.get("requests", 1)))
    prefill = int(detail.get("prefill", 0))
    prompt = max(1, round((prefill + int(detail.get("cached", 0))) / requests))
    warm = max(0, min(prompt, prompt - (prefill - (requests - 1))))
    units = tuple(Unit(t, lb) for t, lb in zip(tokens, labels, strict=True))
    gold = 0 if rec.get("correct") else None
    qid = str(rec.get("question_id", rec.get("index", "?")))
    source = f"record:{rec.get('system')}@{rec.get('rate')}#{rec.get('index')}"
    return Trace(qid, "sc", prompt, units, gold, source, max_new, warm)


__all__ = [
    "DEFAULT_DIFFICULTY",
    "NO_ANSWER",
    "Trace",
    "Unit",
    "labels_of",
    "load_eval_traces",
    "record_trace",
    "split_tokens",
]
