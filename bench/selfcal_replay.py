"""Self-calibration online, replayed: recorded full-budget SC runs served in order through the
router's calibration book (`dynasor_sgl.replay.selfcal_book.serve_recorded`), no SGLang.

The programs are the full-budget runs of eval results files (every sample's answer and
tokens, cap 20), shuffled with a seed into one stream under one calibration key (no task
tag). Each explored program draws its whole run and is recorded before the next registers;
any other stops where its rule stops on its own samples. Since every run is complete, the
disagreement with the full budget is known for *every* program, not only the explored ones.
Settings are phases: `--phase EXPLORE:PROGRAMS` (a restart on the same calibration file
between phases, as `--calibration` keeps it). Writes JSON and prints a table: tokens per
program, disagreement and accuracy for the first and the second half of the stream.

    .venv/bin/python bench/selfcal_replay.py docs/results/sc-confidence/add1.jsonl \
        docs/results/sc-confidence/apples.jsonl --epsilon 0.1 --phase 1.0:100 --phase 0.1:100
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path
from statistics import mean
from typing import Any

from dynasor_sgl.answers.equivalence import equivalent
from dynasor_sgl.eval.results import read_records
from dynasor_sgl.policy.config import PolicyConfig
from dynasor_sgl.replay.sampled import RecordedRun, full_budget_runs
from dynasor_sgl.replay.selfcal_book import CalibrationBook, Served, serve_recorded
from dynasor_sgl.replay.selfcal_key import BookSettings, Key


def stream(paths: list[str], seed: int) -> list[RecordedRun]:
    runs = [r for p in paths for r in full_budget_runs(read_records(p)[1])]
    random.Random(seed).shuffle(runs)
    return runs


def part(served: list[Served], runs: dict[str, RecordedRun]) -> dict[str, Any]:
    rules: dict[str, int] = {}
    for s in served:
        rules[s.rule] = rules.get(s.rule, 0) + 1
    full = [runs[s.program_id].run.tokens_at(len(runs[s.program_id].run.answers)) for s in served]
    return {
        "programs": len(served),
        "tokens_per_program": mean(s.tokens for s in served),
        "full_budget_tokens_per_program": mean(full),
        "saved": 1 - sum(s.tokens for s in served) / sum(full),
        "disagreement": mean(s.disagrees for s in served),
        "accuracy": mean(bool(equivalent(s.answer, runs[s.program_id].gold)) for s in served),
        "full_budget_accuracy": mean(
            bool(equivalent(runs[s.program_id].full_answer(), runs[s.program_id].gold))
            for s in served
        ),
        "rules": rules,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", nargs="+")
    ap.add_argument("--phase", action="append", default=[], help="EXPLORE:PROGRAMS")
    ap.add_argument("--epsilon", type=float, default=0.02)
    ap.add_argument("--delta", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("bench/results/selfcal-replay.json"))
    args = ap.parse_args()
    runs = stream(args.results, args.seed)
    cap = len(runs[0].run.answers)
    key, base = Key("sc", "recorded", None, cap), PolicyConfig.for_algorithm("sc", cap=cap)
    book, served, start = CalibrationBook(BookSettings(0.0, args.epsilon, args.delta)), [], 0
    for phase in args.phase or ["0.1:200"]:
        explore, count = phase.split(":")
        settings = BookSettings(float(explore), args.epsilon, args.delta)
        book = CalibrationBook.from_json(book.to_json(), settings)  # a restart on the file
        served += serve_recorded(book, key, base, runs[start : start + int(count)])
        start += int(count)
    by_id = {r.question_id: r for r in runs}
    half = len(served) // 2
    summary = {
        "first": part(served[:half], by_id),
        "last": part(served[half:], by_id),
        "all": part(served, by_id),
    }
    out = {
        "settings": vars(args) | {"out": str(args.out)},
        "summary": summary,
        "calibration": book.view(),
        "programs": [s.__dict__ for s in served],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))
    for name, s in summary.items():
        print(
            f"{name}: {s['programs']} programs, {s['tokens_per_program']:.0f} tokens/program "
            f"(full {s['full_budget_tokens_per_program']:.0f}, saved {100 * s['saved']:.1f}%), "
            f"disagreement {100 * s['disagreement']:.1f}%, accuracy {100 * s['accuracy']:.1f}% "
            f"(full {100 * s['full_budget_accuracy']:.1f}%), rules {s['rules']}"
        )
    key_view = book.view()["keys"][0]
    print(f"rule: {key_view['state']} {key_view['family']} {key_view['candidate']}")


if __name__ == "__main__":
    main()
