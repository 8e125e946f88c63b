"""The label-free calibration held out by recording: each results file's runs served with the
rule fitted, label free, on the *other* files' runs only.

`dynasor-sgl calibrate --target full-budget` cross-fits within its calibration set by question
folds; on 100-question recordings a fold is too small to certify anything at ε 0.02 (at least
194 programs with no disagreement). This script asks the question a deployment asks instead:
given everything recorded so far, does the rule it certifies hold on a recording it never saw?
For each file, the other files' full-budget SC runs are pooled and fitted with the same code
as `calibrate` (`replay.selfcal.sc_families` / `fit`, ε and δ as given); the chosen rule is
replayed over the held file's runs (`replay.sampled.replay_policy`, no SGLang). A question id
in two files is refused (its runs would calibrate themselves). Prints a Markdown table (tokens
saved against the full budget, answers that differ from it, accuracy with its Wilson 95%
interval beside the full budget's) and writes JSON.

    .venv/bin/python bench/selfcal_holdout.py docs/results/sc-example/add1.jsonl \
        docs/results/sc-example/apples.jsonl RUN3.jsonl [--epsilon 0.02] [--delta 0.1] \
        [--out holdout.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from dynasor_sgl.answers.equivalence import equivalent
from dynasor_sgl.eval.report import wilson
from dynasor_sgl.eval.results import read_records
from dynasor_sgl.policy import risk
from dynasor_sgl.replay import selfcal
from dynasor_sgl.replay.engine import same_answer
from dynasor_sgl.replay.sampled import RecordedRun, full_budget_runs, replay_cap, replay_policy


def load(paths: list[Path]) -> dict[Path, list[RecordedRun]]:
    """Each file's full-budget runs; a question id in two files is a ValueError."""
    runs: dict[Path, list[RecordedRun]] = {}
    seen: dict[str, Path] = {}
    for path in paths:
        runs[path] = full_budget_runs(read_records(path)[1])
        for r in runs[path]:
            if seen.setdefault(r.question_id, path) != path:
                raise ValueError(
                    f"question {r.question_id!r} is in {seen[r.question_id]} and {path}"
                )
    return runs


def held_out(
    held: list[RecordedRun], pool: list[RecordedRun], epsilon: float, delta: float
) -> dict[str, Any]:
    """The rule fitted on `pool`, replayed on `held`: saved, differ, correct (against the full
    budget's correct)."""
    cap = max(len(r.run.answers) for r in pool + held)
    families = selfcal.sc_families(cap, confidences=all(r.run.confidences for r in pool + held))
    fitted = selfcal.fit(pool, families, epsilon, delta)
    full = [replay_cap(r.run, cap) for r in held]
    outs = (
        full
        if fitted.candidate is None
        else [replay_policy(r.run, fitted.candidate.config) for r in held]
    )
    labelled = [i for i, r in enumerate(held) if r.gold is not None]
    return {
        "calibration_programs": len(pool),
        "families": len(families),
        "min_programs": risk.min_programs(epsilon, delta / len(families)),
        "rule": None if fitted.candidate is None else f"{fitted.family}: {fitted.candidate.label}",
        "programs": len(held),
        "saved": 1 - sum(o.tokens for o in outs) / sum(f.tokens for f in full),
        "differ": sum(not same_answer(o.answer, f.answer) for o, f in zip(outs, full, strict=True)),
        "labelled": len(labelled),
        "correct": sum(equivalent(outs[i].answer, held[i].gold) for i in labelled),
        "correct_full": sum(equivalent(full[i].answer, held[i].gold) for i in labelled),
    }


def table(rows: dict[str, dict[str, Any]], epsilon: float, delta: float) -> str:
    def acc(k: int, n: int) -> str:
        lo, hi = wilson(k, n)
        return f"{k}/{n} ({lo:.0%}–{hi:.0%})" if n else "–"

    lines = [
        f"Held out by recording, label free at ε {epsilon}, δ {delta}:",
        "",
        "| held out | calibrated on | rule certified | saved | differ | correct | full budget |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        lines.append(
            f"| {name} | {r['calibration_programs']} | {r['rule'] or 'none (full budget)'} | "
            f"{r['saved']:.1%} | {r['differ']}/{r['programs']} | "
            f"{acc(r['correct'], r['labelled'])} | {acc(r['correct_full'], r['labelled'])} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, nargs="+", help="eval results (JSONL), 2 or more")
    parser.add_argument("--epsilon", type=float, default=risk.DEFAULT_EPSILON)
    parser.add_argument("--delta", type=float, default=risk.DEFAULT_DELTA)
    parser.add_argument("--out", type=Path, help="JSON of the table")
    args = parser.parse_args()
    if len(args.results) < 2:
        parser.error("held out by recording needs at least 2 results files")
    runs = load(args.results)
    rows = {
        str(path): held_out(
            mine,
            [r for other, rs in runs.items() if other != path for r in rs],
            args.epsilon,
            args.delta,
        )
        for path, mine in runs.items()
    }
    if args.out:
        args.out.write_text(
            json.dumps({"epsilon": args.epsilon, "delta": args.delta, "rows": rows}, indent=2)
            + "\n"
        )
    print(table(rows, args.epsilon, args.delta))


if __name__ == "__main__":
    main()
