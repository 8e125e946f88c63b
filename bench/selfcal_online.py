"""Self-calibration online, measured: N self-consistency programs through a launched cluster
(`dynasor_sgl.launch.cluster.run_cluster`, what `dynasor-sgl launch` runs) with exploration on.

Seeded workload (a built-in task), programs submitted in order from a pool of clients. Writes,
per program, its rule (explore / defaults / fitted / full budget), tokens, samples, exit and
answer, and the router's calibration at the end; the summary compares the first half of the
programs with the second: tokens per program (explored runs included), accuracy against the
task's gold answers (the router never sees them), and the disagreement of the rule in force
with the full budget on the explored programs of each half (out of sample: the rule in force
never saw the run). Must run under `flock /work/sglang.lock` on a shared machine.

    flock /work/sglang.lock .venv/bin/python bench/selfcal_online.py --programs 200 \
        --explore 0.2 --epsilon 0.2 --cap 10 --out bench/results/selfcal-online.json
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from statistics import mean
from typing import Any

import httpx

from dynasor_sgl import lang as dl
from dynasor_sgl.answers.equivalence import equivalent
from dynasor_sgl.eval.datasets import synthetic
from dynasor_sgl.launch.cluster import run_cluster
from dynasor_sgl.launch.config import LaunchConfig
from dynasor_sgl.launch.worker import free_ports
from dynasor_sgl.router.config import RouterConfig


def run_one(url: str, question: str, args: argparse.Namespace) -> dict[str, Any]:
    params = {"max_tokens": args.max_tokens, "temperature": args.temperature}
    result = dl.run_program(
        "self-consistency", question, router=url, policy={"cap": args.cap}, params=params
    )
    shown = httpx.get(f"{url}/programs/{result.program_id}", timeout=60).json()
    return {
        "program_id": result.program_id,
        "ok": result.ok,
        "answer": result.answer,
        "steps": result.steps,
        "exit_reason": result.exit_reason,
        "tokens": shown["tokens"]["total"],
        "calibration": shown["calibration"],
    }


def halves(rows: list[dict[str, Any]], runs: dict[str, bool]) -> dict[str, Any]:
    def part(chosen: list[dict[str, Any]]) -> dict[str, Any]:
        explored = [r for r in chosen if r["program_id"] in runs]
        rules: dict[str, int] = {}
        for r in chosen:
            rule = (r["calibration"] or {}).get("rule", "none")
            rules[rule] = rules.get(rule, 0) + 1
        return {
            "programs": len(chosen),
            "tokens_per_program": mean(r["tokens"] for r in chosen),
            "accuracy": mean(r["correct"] for r in chosen),
            "mean_samples": mean(r["steps"] for r in chosen),
            "rules": rules,
            "explored_recorded": len(explored),
            "disagreement_in_force": (
                mean(runs[r["program_id"]] for r in explored) if explored else None
            ),
        }

    half = len(rows) // 2
    return {"first": part(rows[:half]), "last": part(rows[half:]), "all": part(rows)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--programs", type=int, default=200)
    ap.add_argument("--task", default="add1")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cap", type=int, default=10)
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--temperature", type=float, default=0.7)
    ap.add_argument("--explore", type=float, default=0.1)
    ap.add_argument("--epsilon", type=float, default=0.02)
    ap.add_argument("--delta", type=float, default=0.1)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--port", type=int, default=38900, help="the first port tried")
    ap.add_argument("--out", type=Path, default=Path("bench/results/selfcal-online.json"))
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    items = synthetic(args.task, args.programs, args.seed)
    folder = Path(tempfile.mkdtemp(prefix="selfcal-"))
    cal = folder / "calibration.json"
    cfg = LaunchConfig(
        port=free_ports("127.0.0.1", args.port, 1)[0],
        log_level="warning",
        log_dir=str(folder),
        router_config=RouterConfig(
            explore=args.explore,
            calibration_file=str(cal),
            calibration_epsilon=args.epsilon,
            calibration_delta=args.delta,
        ),
    )
    started = time.monotonic()
    with run_cluster(cfg, progress=print) as cluster:
        with ThreadPoolExecutor(args.clients) as pool:
            jobs = [pool.submit(run_one, cluster.url, it.question, args) for it in items]
            rows = []
            for i, (job, item) in enumerate(zip(jobs, items, strict=True)):
                row = job.result()
                row.update(index=i, correct=bool(equivalent(row["answer"], item.answer)))
                rows.append(row)
                print(i, row["calibration"], row["steps"], row["tokens"], flush=True)
        book = httpx.get(f"{cluster.url}/calibration", timeout=60).json()
    saved = json.loads(cal.read_text()) if cal.exists() else {"keys": []}
    runs = {r["id"]: r["in_force_loss"] for k in saved["keys"] for r in k["runs"]}
    out = {
        "settings": vars(args) | {"out": str(args.out)},
        "wall_s": time.monotonic() - started,
        "summary": halves(rows, runs),
        "calibration": book,
        "programs": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))
    s = out["summary"]
    print(
        f"tokens/program first {s['first']['tokens_per_program']:.0f} "
        f"last {s['last']['tokens_per_program']:.0f}; accuracy {s['first']['accuracy']:.2f} "
        f"-> {s['last']['accuracy']:.2f}; disagreement in force "
        f"{s['first']['disagreement_in_force']} -> {s['last']['disagreement_in_force']}"
    )


if __name__ == "__main__":
    main()
