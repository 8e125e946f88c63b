"""Expansion on an idle router: should slack let an uncertain program skip its pending readings?

Runs the shipped self-consistency program (cpu preset, cap 20, read at 5 then every 5) on a
built-in task's questions through one worker and the router (`run_cluster`), twice per
question: once with `expand_past_readings` off (an expansion stops at the next reading, the
default) and once on (an uncertain program on an idle router gets the rest of its cap at once,
the behaviour before). The two variants alternate per question in ABBA order so that the
machine's drift falls on both. `--clients K` runs K programs at once (K = 1: the router is idle
between programs, the case the question is about). Writes JSONL (one line per program,
appended: an interrupted run resumes) and a JSON summary beside it, and prints a table: samples,
tokens, latency and accuracy per variant, and the per-question latency and token ratios.
Takes one cluster: run it under the machine's SGLang lock.

    flock /work/sglang.lock .venv/bin/python bench/sc_expand.py --limit 30 \
        --out docs/results/sc-expand/idle.jsonl
    .venv/bin/python bench/sc_expand.py --out docs/results/sc-expand/idle.jsonl --report-only
"""

from __future__ import annotations

import argparse
import json
import statistics
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from dynasor_sgl import lang as dl
from dynasor_sgl.answers.equivalence import equivalent
from dynasor_sgl.eval.datasets import synthetic
from dynasor_sgl.launch.cluster import run_cluster
from dynasor_sgl.launch.config import LaunchConfig
from dynasor_sgl.online.results import read_rows, rows_before_append
from dynasor_sgl.policy.presets import with_preset

VARIANTS = {"stop at the next reading (default)": False, "expand past readings": True}


def jobs(task: str, start: int, limit: int) -> list[tuple[int, str, str, str]]:
    """(index, variant, question, gold) in ABBA order over the questions."""
    names = list(VARIANTS)
    items = synthetic(task, start + limit)[start:]
    out = []
    for i, item in enumerate(items):
        order = names if i % 2 == 0 else names[::-1]
        out += [(start + i, v, item.question, item.answer) for v in order]
    return out


def run_one(router: str, variant: str, question: str, gold: str, index: int) -> dict[str, Any]:
    policy = with_preset("cpu", "sc", {"expand_past_readings": VARIANTS[variant]})
    r = dl.run_program(
        "self-consistency", question, router=router, policy=policy, params={"max_tokens": 48}
    )
    return {
        "index": index,
        "variant": variant,
        "status": r.status,
        "error": r.error,
        "right": r.answer is not None and equivalent(r.answer, gold),
        "samples": r.steps,
        "exit": r.exit_reason,
        "tokens": r.tokens["total"],
        "s": round(r.elapsed_s, 2),
        "readings": [c.get("used") for c in r.certaindex],
    }


def collect(out: Path, task: str, start: int, limit: int, clients: int, router: str | None) -> None:
    done = {(r["index"], r["variant"]) for r in rows_before_append(out) if r["status"] == "ok"}
    todo = [j for j in jobs(task, start, limit) if (j[0], j[1]) not in done]
    if not todo:
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    if router:
        serve(out, router, todo, clients)
        return
    cfg = LaunchConfig(port=38710, workers=1, log_level="warning", startup_timeout=600)
    with run_cluster(cfg) as cluster:
        serve(out, cluster.url, todo, clients)


def serve(out: Path, router: str, todo: list[tuple[int, str, str, str]], clients: int) -> None:
    def one(job: tuple[int, str, str, str]) -> dict[str, Any]:
        index, variant, question, gold = job
        return run_one(router, variant, question, gold, index)

    with out.open("a") as f, ThreadPoolExecutor(clients) as pool:
        for rec in pool.map(one, todo):
            rec["clients"] = clients
            f.write(json.dumps(rec) + "\n")
            f.flush()


def summarize(recs: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in recs if r["status"] == "ok"]
    by = {v: {r["index"]: r for r in ok if r["variant"] == v} for v in VARIANTS}
    base, other = (by[v] for v in VARIANTS)
    paired = sorted(set(base) & set(other))
    out: dict[str, Any] = {"questions": len(paired), "errors": len(recs) - len(ok)}
    for name, rows in by.items():
        rs = [rows[i] for i in paired]
        if not rs:
            continue
        exits: dict[str, int] = {}
        for r in rs:
            exits[r["exit"]] = exits.get(r["exit"], 0) + 1
        out[name] = {
            "right": sum(r["right"] for r in rs),
            "mean_samples": statistics.mean(r["samples"] for r in rs),
            "mean_tokens": statistics.mean(r["tokens"] for r in rs),
            "median_s": statistics.median(r["s"] for r in rs),
            "mean_s": statistics.mean(r["s"] for r in rs),
            "exits": exits,
        }
    if paired:
        out["latency_ratio_median"] = statistics.median(
            base[i]["s"] / other[i]["s"] for i in paired
        )
        out["token_ratio_median"] = statistics.median(
            base[i]["tokens"] / other[i]["tokens"] for i in paired
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--task", default="add1")
    ap.add_argument(
        "--start", type=int, default=100, help="first question (default: past eval's 100)"
    )
    ap.add_argument("--limit", type=int, default=30)
    ap.add_argument("--clients", type=int, default=1)
    ap.add_argument("--router", help="a running router's URL (default: start one worker)")
    ap.add_argument("--report-only", action="store_true", help="read --out, run nothing")
    args = ap.parse_args()
    if not args.report_only:
        collect(args.out, args.task, args.start, args.limit, args.clients, args.router)
    summary = summarize(read_rows(args.out))
    args.out.with_suffix(".summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"{summary['questions']} questions, {summary['errors']} errors")
    print("| variant | right | samples | tokens | latency median (mean) s | exits |")
    print("|---|---|---|---|---|---|")
    for name in VARIANTS:
        s = summary.get(name)
        if s:
            print(
                f"| {name} | {s['right']}/{summary['questions']} | {s['mean_samples']:.1f} "
                f"| {s['mean_tokens']:.0f} | {s['median_s']:.1f} ({s['mean_s']:.1f}) "
                f"| {s['exits']} |"
            )
    if summary["questions"]:
        print(
            f"per question, default / past: latency x{summary['latency_ratio_median']:.2f}, "
            f"tokens x{summary['token_ratio_median']:.2f} (medians)"
        )


if __name__ == "__main__":
    main()
