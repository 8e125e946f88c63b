"""Which detection rule saves tokens on held-out questions: once (the paper) or sequential.

Reads an eval results file of self-consistency (its full-budget baseline runs, every sample's
answer and tokens) and, 2-fold (questions split in halves by a hash of their id; thresholds
chosen on one half, measured on the other, then the other way round), compares - the paper's
rule with a calibrated threshold: read once at 5 samples; - sequential detection: read at 5,
then every 1, 2 or 5 samples (searched); - the full search: any first reading, any of those
periods; at several accuracy margins (`dynasor_sgl.eval.calibrate.calibrate_held_out`, the held-
out procedure `calibrate --holdout` runs), beside every fixed cap over all questions. Writes
JSON next to the results file and prints a table. No SGLang: replay only.

    .venv/bin/python bench/sc_detection.py docs/results/sc-add1/add1.jsonl
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dynasor_sgl.eval.calibrate import calibrate_held_out, labelled_runs
from dynasor_sgl.eval.results import read_records
from dynasor_sgl.replay.holdout import fixed_cap
from dynasor_sgl.replay.labelled import LabelledRun

RULES: dict[str, dict[str, Any]] = {
    "once at 5 (paper)": {"detect_ats": [5], "detect_every": 0},
    "at 5, then every 1/2/5": {"detect_ats": [5], "detect_every": [0, 1, 2, 5]},
    "any first reading, every 0/1/2/5": {"detect_every": [0, 1, 2, 5]},
}
MARGINS = (0.0, 0.02, 0.05)


def two_fold(runs: Sequence[LabelledRun], margin: float, options: dict[str, Any]) -> dict:
    """Pooled held-out accuracy and mean tokens of the rule calibrated on the other half."""
    report = calibrate_held_out(runs, 0.5, margin=margin, **options)
    n = report.n_held
    return {
        "accuracy": report.policy.accuracy,
        "mean_tokens": report.policy.tokens / n,
        "full_accuracy": report.full.accuracy,
        "full_mean_tokens": report.full.tokens / n,
        "saved": 1 - report.policy.tokens / report.full.tokens,
        "chosen": [
            {"thresholds": f["thresholds"], "at": f["detect_at"], "every": f["detect_every"]}
            for f in report.folds
        ],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", type=Path)
    args = ap.parse_args()
    _, records = read_records(args.results)
    runs = labelled_runs(records)  # the full-budget runs, labelled
    table = {
        name: {str(m): two_fold(runs, m, options) for m in MARGINS}
        for name, options in RULES.items()
    }
    cap = max(r.records[-1].used for r in runs)
    caps = {}
    for k in range(1, cap + 1):
        point = fixed_cap(runs, k)
        caps[k] = {"accuracy": point.accuracy, "mean_tokens": point.tokens / len(runs)}
    out = args.results.with_name(args.results.stem + ".detection.json")
    out.write_text(json.dumps({"questions": len(runs), "rules": table, "caps": caps}, indent=2))
    print(f"{len(runs)} questions, 2-fold held out (accuracy / mean tokens / saved vs full)")
    for name, rows in table.items():
        for margin, row in rows.items():
            print(
                f"  {name:34s} margin {float(margin):.2f}: {100 * row['accuracy']:.1f}% / "
                f"{row['mean_tokens']:.0f} / {100 * row['saved']:.1f}% "
                f"(full {100 * row['full_accuracy']:.1f}% / {row['full_mean_tokens']:.0f})"
            )
    print("  fixed caps: " + ", ".join(f"{k}: {100 * c['accuracy']:.0f}%" for k, c in caps.items()))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
