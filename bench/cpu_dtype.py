"""The CPU worker's dtype: whole self-consistency programs on bf16 and float32 workers, interleaved.

Why: on a CPU without native bf16 (no AVX-512 BF16, no AMX) torch's bf16 matrix multiply takes
a slow path (docs/results/cpu-dtype.md), so a float32 worker may serve more tokens/s under load
but read twice the weight bytes per decode step. This measures the trade where users feel it:
the shipped self-consistency program (cap --cap, run to the cap so both dtypes do the same
work, --max-tokens a sample) through the router and one worker, k programs started at once for
each k of --at-once. Each round starts one cluster per dtype, in ABBA order over the rounds
(bf16, float32 | float32, bf16 | ...), so the machine's drift falls on both; every visit runs
the same questions (paired), after one warm-up program. Writes one JSONL line per program
(appended: an interrupted run resumes at the next whole visit) and a JSON summary beside it,
and prints a table: latency median and range, delivered tokens/s of each batch, per dtype and
k, and the per-question latency ratio float32 / bf16. Takes one cluster at a time: run it under the
machine's SGLang lock.

    flock /work/sglang.lock .venv/bin/python bench/cpu_dtype.py --rounds 2 \
        --out docs/results/cpu-dtype/programs.jsonl
    .venv/bin/python bench/cpu_dtype.py --out docs/results/cpu-dtype/programs.jsonl --report-only
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from dynasor_sgl import lang as dl
from dynasor_sgl.eval.datasets import synthetic
from dynasor_sgl.launch.cluster import run_cluster
from dynasor_sgl.launch.config import LaunchConfig
from dynasor_sgl.online.results import read_rows, rows_before_append
from dynasor_sgl.online.systems import RUN_TO_CAP
from dynasor_sgl.policy.presets import with_preset

DTYPES = ("bfloat16", "float32")


def visits(rounds: int) -> list[tuple[int, str]]:
    """(round, dtype) in ABBA order."""
    return [(r, d) for r in range(rounds) for d in (DTYPES if r % 2 == 0 else DTYPES[::-1])]


def run_visit(
    url: str, questions: list[str], at_once: list[int], cap: int, max_tokens: int
) -> list[dict[str, Any]]:
    policy = with_preset("cpu", "sc", {"cap": cap, **RUN_TO_CAP})

    def one(question: str) -> Any:
        return dl.run_program(
            "self-consistency",
            question,
            router=url,
            policy=policy,
            params={"max_tokens": max_tokens},
        )

    one("What is 1 + 1?")  # warm-up: compiles, fills the prompt's shared prefix
    rows: list[dict[str, Any]] = []
    used = 0
    for k in at_once:
        batch = questions[used : used + k]
        used += k
        start = time.monotonic()
        with ThreadPoolExecutor(k) as pool:
            results = list(pool.map(one, batch))
        wall = time.monotonic() - start
        for q, r in zip(batch, results, strict=True):
            rows.append(
                {
                    "k": k,
                    "question": q,
                    "status": "ok" if r.error is None else "error",
                    "error": r.error,
                    "s": round(r.elapsed_s, 3),
                    "tokens": r.tokens["total"],
                    "samples": r.steps,
                    "batch_wall_s": round(wall, 3),
                }
            )
    return rows


def collect(out: Path, rounds: int, at_once: list[int], cap: int, max_tokens: int) -> None:
    done = {(r["round"], r["dtype"]) for r in rows_before_append(out)}
    questions = [item.question for item in synthetic("add1", sum(at_once), seed=7)]
    out.parent.mkdir(parents=True, exist_ok=True)
    for rnd, dtype in visits(rounds):
        if (rnd, dtype) in done:
            continue
        cfg = LaunchConfig(
            port=38730,
            workers=1,
            log_level="warning",
            startup_timeout=900,
            sglang_args=("--dtype", dtype),
        )
        with run_cluster(cfg) as cluster:
            visit = run_visit(cluster.url, questions, at_once, cap, max_tokens)
        with out.open("a") as f:
            for row in visit:
                f.write(json.dumps({"round": rnd, "dtype": dtype, **row}) + "\n")
        print(f"round {rnd} {dtype}: done", flush=True)


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in rows if r["status"] == "ok"]
    out: dict[str, Any] = {"programs": len(rows), "errors": len(rows) - len(ok), "cells": []}
    for k in sorted({r["k"] for r in ok}):
        cell: dict[str, Any] = {"k": k}
        for dtype in DTYPES:
            rs = [r for r in ok if r["k"] == k and r["dtype"] == dtype]
            if not rs:
                continue
            # One batch: the programs of one round started together (their shared wall time).
            tokens: dict[tuple[int, float], int] = {}
            for r in rs:
                batch = (r["round"], r["batch_wall_s"])
                tokens[batch] = tokens.get(batch, 0) + r["tokens"]
            cell[dtype] = {
                "n": len(rs),
                "median_s": statistics.median(r["s"] for r in rs),
                "min_s": min(r["s"] for r in rs),
                "max_s": max(r["s"] for r in rs),
                "tok_s": [round(t / wall, 1) for (_, wall), t in sorted(tokens.items())],
            }
        pairs = [
            (a["s"], b["s"])
            for a in ok
            for b in ok
            if a["k"] == k == b["k"]
            and a["round"] == b["round"]
            and a["question"] == b["question"]
            and (a["dtype"], b["dtype"]) == DTYPES
        ]
        if pairs:
            cell["ratio_float32_over_bf16"] = statistics.median(f / b for b, f in pairs)
        out["cells"].append(cell)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--rounds", type=int, default=2, help="visits per dtype (default 2)")
    ap.add_argument("--at-once", default="1,1,4", help="programs started at once, per batch")
    ap.add_argument("--cap", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--report-only", action="store_true", help="read --out, run nothing")
    args = ap.parse_args()
    if not args.report_only:
        at_once = [int(k) for k in args.at_once.split(",")]
        collect(args.out, args.rounds, at_once, args.cap, args.max_tokens)
    summary = summarize(read_rows(args.out))
    args.out.with_suffix(".summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"{summary['programs']} programs, {summary['errors']} errors")
    print("| at once | dtype | programs | latency median [range] s | tokens/s per batch |")
    print("|---|---|---|---|---|")
    for cell in summary["cells"]:
        for dtype in DTYPES:
            c = cell.get(dtype)
            if c:
                print(
                    f"| {cell['k']} | {dtype} | {c['n']} | {c['median_s']:.1f} "
                    f"[{c['min_s']:.1f}–{c['max_s']:.1f}] | {c['tok_s']} |"
                )
        if "ratio_float32_over_bf16" in cell:
            print(
                f"| {cell['k']} | float32 / bf16, per question | | "
                f"×{cell['ratio_float32_over_bf16']:.2f} (median) | |"
            )


if __name__ == "__main__":
    main()
