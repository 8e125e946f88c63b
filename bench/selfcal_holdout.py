"""The label-free calibration held out by recording: each results file's runs served with the
rule fitted, label free, on the *other* files' runs only.

`dynasor-sgl calibrate --target full-budget` cross-fits within its calibration set by question
folds; on 100-question recordings a fold is too small to certify anything at ε 0.02 (at least
194 programs with no disagreement). This script asks the question a deployment asks instead:
given everything recorded so far, does the rule it certifies hold on a recording it never saw?
For each file, the other files' full-budget SC runs are pooled and fitted with the same code
as `calibrate` (`replay.selfcal.sc_families` / `score` / `fit`, ε and δ as given), and the
held file's runs are read at the chosen rule from the same scores (no SGLang). A question id
in two files is refused, as `calibrate` refuses it (its runs would calibrate themselves).
Prints a Markdown table (tokens saved against the full budget, answers that differ from it,
accuracy with its Wilson 95% interval beside the full budget's) and writes JSON.

    .venv/bin/python bench/selfcal_holdout.py docs/results/sc-example/add1.jsonl \
        docs/results/sc-example/apples.jsonl RUN3.jsonl [--epsilon 0.02] [--delta 0.1] \
        [--out holdout.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from dynasor_sgl.eval.calibrate import records_by_file
from dynasor_sgl.eval.report import wilson
from dynasor_sgl.policy import risk
from dynasor_sgl.replay import selfcal
from dynasor_sgl.replay.sampled import RecordedRun, full_budget_runs


def held_out_by_file(
    files: list[list[RecordedRun]], epsilon: float, delta: float
) -> list[dict[str, Any]]:
    """Per file, the rule fitted on the other files' runs and measured on its own: saved,
    differ and correct against the full budget. Every family is replayed once over all runs
    (`selfcal.score`, as `calibrate` does); each fit and measurement reads its rows."""
    runs = [r for mine in files for r in mine]
    cap = max(len(r.run.answers) for r in runs)
    families = selfcal.sc_families(cap, confidences=all(r.run.confidences for r in runs))
    scores = [selfcal.score(f, runs) for f in families]
    part = np.repeat(np.arange(len(files)), [len(mine) for mine in files])
    rows = []
    for k, mine in enumerate(files):
        pool, held = np.flatnonzero(part != k), np.flatnonzero(part == k)
        fitted = selfcal.fit(
            [runs[int(i)] for i in pool],
            families,
            epsilon,
            delta,
            [selfcal.Scores(s.losses[pool], s.tokens[pool], s.correct[pool]) for s in scores],
        )
        full = selfcal.full_budget(mine)
        if fitted.candidate is None:
            tokens, differ, correct = full.tokens, 0, full.correct
        else:
            at = next(i for i, f in enumerate(families) if f.name == fitted.family)
            s, col = scores[at], families[at].candidates.index(fitted.candidate)
            right = s.correct[held, col]
            tokens, differ = float(s.tokens[held, col].sum()), int(s.losses[held, col].sum())
            correct = None if np.isnan(right).any() else int(right.sum())
        rows.append(
            {
                "calibration_programs": len(pool),
                "families": len(families),
                "min_programs": risk.min_programs(epsilon, delta / len(families)),
                "rule": None
                if fitted.candidate is None
                else f"{fitted.family}: {fitted.candidate.label}",
                "programs": len(mine),
                "saved": 1 - tokens / full.tokens,
                "differ": differ,
                "correct": correct,
                "correct_full": full.correct,
            }
        )
    return rows


def table(rows: dict[str, dict[str, Any]], epsilon: float, delta: float) -> str:
    def acc(k: int | None, n: int) -> str:
        if k is None:
            return "–"
        lo, hi = wilson(k, n)
        return f"{k}/{n} ({lo:.0%}–{hi:.0%})"

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
            f"{acc(r['correct'], r['programs'])} | {acc(r['correct_full'], r['programs'])} |"
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
    files = records_by_file(args.results)
    measured = held_out_by_file(
        [full_budget_runs(records) for _, records in files], args.epsilon, args.delta
    )
    rows = {str(path): row for (path, _), row in zip(files, measured, strict=True)}
    if args.out:
        args.out.write_text(
            json.dumps({"epsilon": args.epsilon, "delta": args.delta, "rows": rows}, indent=2)
            + "\n"
        )
    print(table(rows, args.epsilon, args.delta))


if __name__ == "__main__":
    main()
