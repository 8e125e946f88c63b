"""The decided-vote stop on recorded full-budget self-consistency runs: tokens saved, answers
changed.

Replays, over each recorded run's own samples (`dynasor-sgl eval` results of the baseline at
the full budget), the shipped SC policy with and without `stop_when_decided` (stop once the
leading answer can no longer be overturned within the cap), the rule alone, and both read
after every sample (pace 1: samples drawn one at a time, which costs latency). Tokens saved are
against the full budget; "differ" counts questions whose answer is not the full budget's; the
accuracy uses the recorded gold answers. Writes `<results>.decided.json`, prints a table. No
SGLang: replay only. `--sweep` replays instead each fixed rule at the shipped pace (every 5,
with the decided vote) over a grid of thresholds: how far any one threshold goes on the runs
(in-sample: which threshold to pick is the calibration's job), written to `<results>.sweep.json`.

    .venv/bin/python bench/sc_decided.py docs/results/sc-confidence/add1.jsonl
    .venv/bin/python bench/sc_decided.py --sweep docs/results/sc-confidence/add1.jsonl
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from dynasor_sgl.answers.equivalence import equivalent
from dynasor_sgl.policy.config import PolicyConfig
from dynasor_sgl.policy.presets import with_preset
from dynasor_sgl.replay.engine import same_answer
from dynasor_sgl.replay.sampled import RecordedRun, full_budget_runs, replay_cap, replay_policy

ROWS: dict[str, dict[str, Any]] = {
    "shipped before (entropy 0.7 every 5)": {"stop_when_decided": False},
    "shipped now (+ decided)": {},
    "decided alone": {"thresholds": {}},
    "decided alone, pace 1": {"thresholds": {}, "pace": 1, "initial": 1},
    "shipped now, pace 1": {"pace": 1},
    # the embedded model's default (`--preset cpu`): the label-free calibration's rule
    "cpu preset (posterior 0.8, every 5)": with_preset("cpu", "sc", {}),
}

SWEEP: dict[str, dict[str, Any]] = {
    **{f"posterior {c}": {"rule": "posterior", "confidence": c} for c in (0.5, 0.6, 0.7, 0.8, 0.9)},
    **{f"entropy {t}": {"thresholds": {"entropy": t}} for t in (0.3, 0.4, 0.5, 0.6, 0.7)},
}


def measure(runs: list[RecordedRun], overrides: dict[str, Any]) -> dict[str, Any]:
    """One row: the share of the full budget's tokens saved, answers that differ from it, and
    accuracy where a gold answer is known."""
    config = PolicyConfig.for_algorithm("sc", **overrides)
    outs = [replay_policy(r.run, config) for r in runs]
    full = [replay_cap(r.run, config.cap) for r in runs]
    labelled = [(o, r) for o, r in zip(outs, runs, strict=True) if r.gold is not None]
    return {
        "saved": 1 - sum(o.tokens for o in outs) / sum(f.tokens for f in full),
        "differ": sum(not same_answer(o.answer, f.answer) for o, f in zip(outs, full, strict=True)),
        "correct": sum(equivalent(o.answer, r.gold) for o, r in labelled),
        "labelled": len(labelled),
        "programs": len(runs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, nargs="+", help="eval results (JSONL)")
    parser.add_argument("--sweep", action="store_true", help="a grid of fixed thresholds")
    args = parser.parse_args()
    table, suffix = (SWEEP, ".sweep.json") if args.sweep else (ROWS, ".decided.json")
    for path in args.results:
        records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        runs = full_budget_runs(records)
        rows = {label: measure(runs, overrides) for label, overrides in table.items()}
        out = path.with_suffix(suffix)
        out.write_text(json.dumps(rows, indent=2) + "\n")
        print(f"{path.name}: {len(runs)} full-budget programs -> {out}")
        for label, row in rows.items():
            print(
                f"  {label:38s} saved {row['saved']:6.1%}  differ {row['differ']}/"
                f"{row['programs']}  correct {row['correct']}/{row['labelled']}"
            )


if __name__ == "__main__":
    main()
