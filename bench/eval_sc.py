"""Tokens Certaindex saves at equal accuracy: self-consistency on a built-in task.

Runs `dynasor-sgl eval` (through its library code) on the embedded model: the full-budget
baseline live, the Dynasor policy and the oracle replayed over the same samples. Then a
held-out check of calibration (2-fold by a hash of the question id, as `calibrate --holdout
0.5`: pick thresholds on half the questions, apply them to the other half, both ways round),
so the calibrated saving is not measured on the questions it was tuned on.
Writes bench/results/eval_sc.json (+ the eval's JSONL, Markdown and PNGs next to it) and prints
one line.
    .venv/bin/python bench/eval_sc.py --launch [--limit 12 --cap 10]   # small (make bench)
    .venv/bin/python bench/eval_sc.py --router URL --limit 100 --cap 20
"""

from __future__ import annotations

import argparse
import json
import logging
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from dynasor_sgl.eval.calibrate import calibrate_held_out, labelled_runs
from dynasor_sgl.eval.results import read_records
from dynasor_sgl.eval.runner import EvalSpec
from dynasor_sgl.eval.session import EvalRun, one_line, run_eval
from dynasor_sgl.replay.sampled import full_budget_runs, replay_oracle

RESULTS = Path(__file__).parent / "results"


def heldout(records: list[dict[str, Any]], margin: float) -> dict[str, Any]:
    """2-fold calibration (`calibrate_held_out`, as `calibrate --holdout 0.5`): thresholds from
    one half, accuracy and tokens on the other, both ways round; the oracle beside it."""
    report = calibrate_held_out(labelled_runs(records), 0.5, margin=margin)
    oracle = sum(replay_oracle(r.run).tokens for r in full_budget_runs(records))
    full, n = report.full.tokens, report.n_held
    saved = 1 - report.policy.tokens / full if full else 0.0
    oracle_saved = 1 - oracle / full if full else 0.0
    return {
        "margin": margin,
        "folds": list(report.folds),
        "questions": n,
        "accuracy": report.policy.accuracy,
        "baseline_accuracy": report.full.accuracy,
        "mean_tokens": report.policy.tokens / n,
        "baseline_mean_tokens": full / n,
        "saved_vs_baseline": saved,
        "oracle_saved": oracle_saved,
        "fraction_of_oracle_saving": saved / oracle_saved if oracle_saved else None,
    }


def _args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--router", default="http://127.0.0.1:30000")
    ap.add_argument("--launch", action="store_true", help="start the embedded model for the run")
    ap.add_argument("--dataset", default="synth:facts")
    ap.add_argument("--limit", type=int, default=12)
    ap.add_argument("--cap", type=int, default=10)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--temperature", type=float, default=0.4)
    ap.add_argument("--concurrency", type=int, default=6)
    ap.add_argument("--margin", type=float, default=0.02)
    ap.add_argument("--out", type=Path, default=RESULTS / "eval_sc.jsonl")
    return ap.parse_args()


def main() -> None:
    args = _args()
    logging.basicConfig(level=logging.WARNING)
    from dynasor_sgl.lang import RouterClient, run_program
    from dynasor_sgl.launch.embedded import launch_embedded

    spec = EvalSpec(
        "self-consistency",
        "sc",
        {"cap": args.cap, "initial": min(5, args.cap), "detect_at": min(5, args.cap)},
        {"max_tokens": args.max_tokens, "temperature": args.temperature},
        args.concurrency,
    )
    with ExitStack() as stack:
        url = launch_embedded(stack) if args.launch else args.router
        client = RouterClient(url)
        run = EvalRun(spec, args.dataset, args.out, url, args.limit)
        summary = run_eval(
            run, lambda name, q, **kw: run_program(name, q, router=client, **kw), client.abort
        )
    _, records = read_records(args.out)
    summary["heldout_calibration"] = heldout(records, args.margin)
    path = args.out.with_suffix(".json")
    path.write_text(json.dumps(summary, indent=2) + "\n")
    h = summary["heldout_calibration"]
    print(one_line(summary))
    print(
        f"held-out calibration (margin {args.margin}): {100 * h['accuracy']:.1f}% vs baseline "
        f"{100 * h['baseline_accuracy']:.1f}%, saved {100 * h['saved_vs_baseline']:.1f}% "
        f"(oracle {100 * h['oracle_saved']:.1f}%); wrote {path}"
    )


if __name__ == "__main__":
    main()
