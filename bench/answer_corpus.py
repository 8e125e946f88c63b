"""Generate the texts of the labelled answer corpus (tests/data/answer_corpus.jsonl).

Real outputs of the embedded model, in the shipped programs' own prompt formats:
  - `sc:TASK`: a self-consistency sample (the shipped system prompt + a built-in task's
    question, temperature 0.7) for every built-in task;
  - `sc:words`: the same prompt on questions whose answer is a word, yes/no or an option;
  - `probe:TASK`: a Certaindex probe (the CoT program's probe suffix after a chunk of
    reasoning, greedy, constrained to close the box), extracted with `extract_probe_answer`;
  - `step:TASK`: the last line of a tree-search solution (one step at a time, as the beam,
    REBASE and MCTS programs sample them).
Each line gets `"label": null`; the labels are then written by hand (the answer the text
means, or null when it gives none) and the file is committed as test data. With `--label
FILE` the labels of an older corpus are kept for texts that are unchanged.

    .venv/bin/python bench/answer_corpus.py --launch --out /tmp/corpus.jsonl
    .venv/bin/python bench/answer_corpus.py --router URL --out /tmp/corpus.jsonl
"""

from __future__ import annotations

import argparse
import json
import random
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import sglang as sgl

from dynasor_sgl.eval.datasets import TASKS, synthetic
from dynasor_sgl.lang.probe import PROBE_REGEX, PROBE_SUFFIX
from dynasor_sgl.programs.steps import STEP_STOP, SYSTEM

# Questions whose answers are words, yes/no or options: what `extract_answer` must handle
# beyond numbers (the MCTS `null` answer came from "The capital of France is Paris.").
WORD_QUESTIONS = (
    "What is the capital of France?",
    "What is the capital of Japan?",
    "What is the capital of Italy?",
    "What color is the sky on a clear day?",
    "What color is grass?",
    "What animal says moo?",
    "What is the opposite of hot?",
    "What is the largest planet in our solar system?",
    "Which is heavier, a kilogram of iron or a gram of feathers?",
    "Is the sun a star? Answer yes or no.",
    "Is 7 an even number? Answer yes or no.",
    "Can fish breathe under water? Answer yes or no.",
    "Which number is larger? (A) 3 (B) 9 (C) 5. Answer with the letter.",
    "Which is a fruit? (A) carrot (B) apple (C) potato. Answer with the letter.",
    "Which animal can fly? (A) dog (B) cat (C) bird. Answer with the letter.",
    "What is the chemical symbol for water?",
    "What do bees make?",
    "What is frozen water called?",
    "In which season does snow usually fall?",
    "What is the first letter of the English alphabet?",
)


@sgl.function
def sample(s, question, max_tokens, temperature):
    s += sgl.system(SYSTEM)
    s += sgl.user(question)
    s += sgl.assistant(sgl.gen("text", max_tokens=max_tokens, temperature=temperature))


@sgl.function
def probe(s, question, reasoning_tokens):
    s += sgl.system(SYSTEM)
    s += sgl.user(question)
    s += sgl.assistant_begin()
    s += sgl.gen("reasoning", max_tokens=reasoning_tokens, temperature=0.6)
    s += PROBE_SUFFIX + sgl.gen("text", max_tokens=20, temperature=0.0, regex=PROBE_REGEX)


@sgl.function
def solution(s, question, max_steps):
    s += sgl.system(SYSTEM)
    s += sgl.user(question)
    s += sgl.assistant_begin()
    last = ""
    for i in range(max_steps):
        s += sgl.gen(f"step{i}", max_tokens=48, temperature=0.7, stop=STEP_STOP)
        text = s[f"step{i}"]
        if text.strip():
            last = text
        if "boxed" in text or s.get_meta_info(f"step{i}")["finish_reason"]["type"] != "stop":
            break
        s += STEP_STOP
    s.set_var("text", last)


def _jobs(per_task: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    jobs: list[dict[str, Any]] = []
    for task in TASKS:
        items = synthetic(task, per_task, seed=seed)
        for i, item in enumerate(items):
            kind = ("sc", "sc", "probe", "step")[i % 4]
            jobs.append(
                {"source": f"{kind}:{task}", "question": item.question, "gold": item.answer}
            )
    for question in WORD_QUESTIONS:
        for kind in ("sc", "sc", "probe"):
            jobs.append({"source": f"{kind}:words", "question": question, "gold": None})
    rng.shuffle(jobs)
    return jobs


def _run(jobs: list[dict[str, Any]], threads: int, out: Path) -> None:
    """Run the jobs kind by kind, appending each kind's texts to `out` as soon as it ends (a
    kind already in `out` is skipped, so a failed run resumes)."""
    done = {r["source"].split(":")[0] for r in _read(out)}
    args = {
        "sc": lambda j: {"question": j["question"], "max_tokens": 64, "temperature": 0.7},
        "probe": lambda j: {"question": j["question"], "reasoning_tokens": 32},
        "step": lambda j: {"question": j["question"], "max_steps": 4},
    }
    functions = {"sc": sample, "probe": probe, "step": solution}
    for kind, function in functions.items():
        group = [j for j in jobs if j["source"].split(":")[0] == kind]
        if kind in done or not group:
            continue
        states = function.run_batch(
            [args[kind](j) for j in group], num_threads=threads, progress_bar=True
        )
        with out.open("a", encoding="utf-8") as f:
            for job, state in zip(group, states, strict=True):
                if state.error() is None:
                    extractor = "probe" if kind == "probe" else "answer"
                    row = {**job, "text": str(state["text"]), "extractor": extractor}
                    f.write(json.dumps(row, ensure_ascii=False) + "\n")


def _read(path: Path | None) -> list[dict[str, Any]]:
    if path is None or not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--router", default="http://127.0.0.1:30000")
    ap.add_argument("--launch", action="store_true", help="start the embedded model for the run")
    ap.add_argument("--per-task", type=int, default=48, help="texts per built-in task")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--threads", type=int, default=16)
    ap.add_argument("--label", type=Path, help="an older corpus whose labels are kept")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    from dynasor_sgl.launch.embedded import launch_embedded

    raw = args.out.with_suffix(".raw.jsonl")
    with ExitStack() as stack:
        url = launch_embedded(stack) if args.launch else args.router
        sgl.set_default_backend(sgl.RuntimeEndpoint(url))
        _run(_jobs(args.per_task, args.seed), args.threads, raw)
    old = {(r["question"], r["text"]): r.get("label") for r in _read(args.label)}
    with args.out.open("w", encoding="utf-8") as f:
        for i, row in enumerate(_read(raw)):
            label = old.get((row["question"], row["text"]))
            f.write(json.dumps({"id": i, **row, "label": label}, ensure_ascii=False) + "\n")
    print(f"wrote {i + 1} texts to {args.out}")


if __name__ == "__main__":
    main()
