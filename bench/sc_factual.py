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
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from dynasor_sgl import lang as dl
from dynasor_sgl.launch.cluster import run_cluster
from dynasor_sgl.launch.config import LaunchConfig
from dynasor_sgl.policy.config import PolicyConfig
from dynasor_sgl.replay.sampled import SampledRun, replay_policy

QUESTIONS = (
    ("What is the capital of France?", "Paris"),
    ("How many legs does a spider have?", "8"),
    ("What is the largest planet in the solar system?", "Jupiter"),
)
GENERAL = "You are a helpful assistant. Answer the question, then end with: The answer is <answer>."
# name -> sampling params over the program's own; "math" is the shipped program as it is
VARIANTS: dict[str, dict[str, Any]] = {
    "math prompt, T 0.7 (shipped)": {"temperature": 0.7},
    "no system prompt, T 0.7": {"system_prompt": " ", "temperature": 0.7},
    "general prompt, T 0.7": {"system_prompt": GENERAL, "temperature": 0.7},
    "general prompt, T 0.4": {"system_prompt": GENERAL, "temperature": 0.4},
}
TO_CAP = {"thresholds": {}, "stop_when_decided": False, "cap": 20}
RULES: dict[str, dict[str, Any]] = {
    "shipped": {},
    "posterior 0.8, every 5": {"rule": "posterior", "confidence": 0.8},
    "decided, every sample": {"pace": 1, "initial": 1},
}


def record(router: str, variant: str, question: str, gold: str) -> dict[str, Any]:
    start = time.monotonic()
    params = {**VARIANTS[variant], "max_tokens": 128}
    r = dl.run_program("self-consistency", question, router=router, policy=TO_CAP, params=params)
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


def collect(out: Path) -> None:
    done = {(r["variant"], r["q"]) for r in read(out)}
    todo = [(v, q, g) for v in VARIANTS for q, g in QUESTIONS if (v, q) not in done]
    if not todo:
        return
    cfg = LaunchConfig(port=38700, workers=1, log_level="warning", startup_timeout=600)
    with run_cluster(cfg) as cluster, out.open("a") as f:
        for variant, question, gold in todo:
            f.write(json.dumps(record(cluster.url, variant, question, gold)) + "\n")
            f.flush()


def read(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


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
    args = ap.parse_args()
    if not args.replay_only:
        collect(args.out)
    print(f"| variant | question | samples right | {' | '.join(RULES)} |")
    print("|---|---|---|" + "---|" * len(RULES))
    for rec in read(args.out):
        right = sum(a == rec["gold"] for a in rec["answers"])
        cells = " | ".join(replay(rec).values())
        print(f"| {rec['variant']} | {rec['q']} | {right}/{len(rec['answers'])} | {cells} |")


if __name__ == "__main__":
    main()
