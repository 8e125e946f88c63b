"""Easy factual questions through self-consistency on the embedded model: which of the prompt,
the sampling temperature and the stop rule decide whether it answers before its cap.

Runs each question to its cap (no certaindex stop, no decided-vote stop) once per variant (a
system prompt and a temperature), on one worker and the router (`run_cluster`), and records
every sample's extracted answer and the tokens. Then replays, over those samples, the stop rules
a user could ship (the shipped default, a posterior rule, the decided vote read after every
sample) and reports where each stops and with what answer. Writes JSONL (one line per run,
appended: an interrupted run resumes where it stopped) and prints a table. Takes one cluster:
run it under the machine's SGLang lock.

    flock /work/sglang.lock .venv/bin/python bench/sc_factual.py --out /tmp/factual.jsonl
    .venv/bin/python bench/sc_factual.py --out docs/results/sc-factual.jsonl --replay-only

`--task add1` asks instead a built-in task's first `--limit` questions of the shipped program
with and without the worked example (interleaved per question; `--cap` samples of 48 tokens):
what the example does to the math the recorded results were made on.

    flock /work/sglang.lock .venv/bin/python bench/sc_factual.py --task add1 --limit 30 \
        --cap 10 --out docs/results/sc-factual-add1.jsonl
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from dynasor_sgl import lang as dl
from dynasor_sgl.answers.equivalence import equivalent
from dynasor_sgl.eval.datasets import synthetic
from dynasor_sgl.launch.cluster import run_cluster
from dynasor_sgl.launch.config import LaunchConfig
from dynasor_sgl.online.results import read_rows, rows_before_append
from dynasor_sgl.policy.config import PolicyConfig
from dynasor_sgl.policy.presets import with_preset
from dynasor_sgl.programs.steps import EXAMPLE
from dynasor_sgl.replay.sampled import SampledRun, replay_policy

QUESTIONS = (
    ("What is the capital of France?", "Paris"),
    ("How many legs does a spider have?", "8"),
    ("What is the largest planet in the solar system?", "Jupiter"),
)
# asked only of the variants after the first four (recorded before these were added)
MORE_QUESTIONS = (
    ("How many days are there in a week?", "7"),
    ("What is the capital of Italy?", "Rome"),
    ("What is the boiling point of water in degrees Celsius?", "100"),
)
GENERAL = "You are a helpful assistant. Answer the question, then end with: The answer is <answer>."
CAREFUL = (
    "You are a careful assistant. Think step by step, then give the final answer in \\boxed{}."
)
SHORT = "Answer the question. Give the final answer in \\boxed{}."
# name -> params over the program's own; "few_shot": [] keeps out the worked example the
# program has held since these were recorded ("shipped before" is the program before that)
VARIANTS: dict[str, dict[str, Any]] = {
    "math prompt, T 0.7 (shipped before)": {"temperature": 0.7, "few_shot": []},
    "no system prompt, T 0.7": {"system_prompt": " ", "temperature": 0.7, "few_shot": []},
    "general prompt, T 0.7": {"system_prompt": GENERAL, "temperature": 0.7, "few_shot": []},
    "general prompt, T 0.4": {"system_prompt": GENERAL, "temperature": 0.4, "few_shot": []},
    "careful prompt, T 0.7": {"system_prompt": CAREFUL, "temperature": 0.7, "few_shot": []},
    "short boxed prompt, T 0.7": {"system_prompt": SHORT, "temperature": 0.7, "few_shot": []},
    "math prompt + one general example, T 0.7 (shipped now)": {
        "few_shot": [EXAMPLE],
        "temperature": 0.7,
    },
}


def asked(variant: str) -> tuple[tuple[str, str], ...]:
    """The questions a variant is asked: the later ones only of the shipped program and of the
    variants added with them."""
    return QUESTIONS if variant in tuple(VARIANTS)[1:4] else QUESTIONS + MORE_QUESTIONS


TO_CAP = {"thresholds": {}, "stop_when_decided": False, "cap": 20}
RULES: dict[str, dict[str, Any]] = {
    "shipped (cpu preset)": with_preset("cpu", "sc", {}),
    "policy table (entropy 0.7, every 5)": {},
    "decided, every sample": {"pace": 1, "initial": 1},
}


def record(
    router: str,
    variant: str,
    question: str,
    gold: str,
    policy: dict[str, Any] = TO_CAP,
    max_tokens: int = 128,
) -> dict[str, Any]:
    start = time.monotonic()
    params = {**VARIANTS[variant], "max_tokens": max_tokens}
    r = dl.run_program("self-consistency", question, router=router, policy=policy, params=params)
    return {
        "variant": variant,
        "q": question,
        "gold": gold,
        "answer": r.answer,
        "exit": r.exit_reason,
        "answers": r.details.get("answers"),
        "sample_tokens": r.details.get("sample_tokens"),
        "tokens": r.tokens["total"],
        "s": round(time.monotonic() - start, 1),
    }


TASK_VARIANTS = (
    "math prompt, T 0.7 (shipped before)",
    "math prompt + one general example, T 0.7 (shipped now)",
)


def collect_task(out: Path, task: str, limit: int, cap: int) -> None:
    done = {(r["variant"], r["q"]) for r in rows_before_append(out)}
    items = synthetic(task, limit)
    todo = [(v, it) for it in items for v in TASK_VARIANTS if (v, it.question) not in done]
    if not todo:
        return
    cfg = LaunchConfig(port=38700, workers=1, log_level="warning", startup_timeout=600)
    policy = {**TO_CAP, "cap": cap}
    with run_cluster(cfg) as cluster, out.open("a") as f:
        for variant, item in todo:
            rec = record(cluster.url, variant, item.question, item.answer, policy, 48)
            rec["right"] = [equivalent(a, item.answer) for a in rec["answers"]]
            rec["vote_right"] = equivalent(rec["answer"], item.answer)
            f.write(json.dumps(rec) + "\n")
            f.flush()


def task_table(out: Path) -> None:
    print("| variant | questions | samples right | vote right | tokens per program |")
    print("|---|---|---|---|---|")
    rows = read_rows(out)
    for variant in TASK_VARIANTS:
        recs = [r for r in rows if r["variant"] == variant]
        if not recs:
            continue
        samples = [x for r in recs for x in r["right"]]
        print(
            f"| {variant} | {len(recs)} | {sum(samples)}/{len(samples)} "
            f"| {sum(r['vote_right'] for r in recs)}/{len(recs)} "
            f"| {sum(r['tokens'] for r in recs) / len(recs):.0f} |"
        )


def collect(out: Path) -> None:
    done = {(r["variant"], r["q"]) for r in rows_before_append(out)}
    todo = [(v, q, g) for v in VARIANTS for q, g in asked(v) if (v, q) not in done]
    if not todo:
        return
    cfg = LaunchConfig(port=38700, workers=1, log_level="warning", startup_timeout=600)
    with run_cluster(cfg) as cluster, out.open("a") as f:
        for variant, question, gold in todo:
            f.write(json.dumps(record(cluster.url, variant, question, gold)) + "\n")
            f.flush()


def replay(rec: dict[str, Any]) -> dict[str, str]:
    answers = tuple(rec["answers"])
    tokens = tuple(rec.get("sample_tokens") or [rec["tokens"] // len(answers)] * len(answers))
    run = SampledRun(answers, tokens, 0)
    cells = {}
    for name, overrides in RULES.items():
        out = replay_policy(run, PolicyConfig.for_algorithm("sc", **overrides))
        cells[name] = f"{out.answer} at {out.used} ({out.exit_reason})"
    return cells


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--replay-only", action="store_true", help="read --out, run nothing")
    ap.add_argument("--task", help="a built-in task's questions instead (e.g. add1)")
    ap.add_argument("--limit", type=int, default=30)
    ap.add_argument("--cap", type=int, default=10)
    args = ap.parse_args()
    if args.task:
        if not args.replay_only:
            collect_task(args.out, args.task, args.limit, args.cap)
        task_table(args.out)
        return
    if not args.replay_only:
        collect(args.out)
    print(f"| variant | question | samples right | {' | '.join(RULES)} |")
    print("|---|---|---|" + "---|" * len(RULES))
    for rec in read_rows(args.out):
        right = sum(equivalent(a, rec["gold"]) for a in rec["answers"] if a is not None)
        cells = " | ".join(replay(rec).values())
        print(f"| {rec['variant']} | {rec['q']} | {right}/{len(rec['answers'])} | {cells} |")


if __name__ == "__main__":
    main()
