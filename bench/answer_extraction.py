"""Extraction accuracy on the labelled answer corpus, today's extractor against an older one.

For every text of tests/data/answer_corpus.jsonl (real outputs of the embedded model, labelled
by hand: the answer the text means, or null when it gives none) the extractor is right when
its answer and the label are equivalent (`answers.equivalent`: math-verify), or both are None.
The older extractor is read from git (default: 7a0f04c, the hand-written regex that kept
trailing words) and judged with the same equivalence. Writes bench/results/answer_extraction.json
and prints a table by source.

    .venv/bin/python bench/answer_extraction.py [--before REV]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import types
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dynasor_sgl.answers import equivalence as answers

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "tests" / "data" / "answer_corpus.jsonl"
RESULTS = ROOT / "bench" / "results" / "answer_extraction.json"

Extractors = dict[str, Callable[[str], str | None]]


def load(path: Path = CORPUS) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def right(extracted: str | None, label: str | None) -> bool:
    if extracted is None or label is None:
        return extracted is None and label is None
    return answers.equivalent(extracted, label)


def old_extractors(rev: str) -> Extractors:
    """`extract_answer` / `extract_probe_answer` of `answers.py` as it was at `rev`."""
    source = subprocess.run(
        # the module's path at that revision, before answers/ became a package
        ["git", "show", f"{rev}:src/dynasor_sgl/answers.py"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    module = types.ModuleType(f"answers_{rev}")
    exec(compile(source, f"answers@{rev}", "exec"), module.__dict__)
    return {"answer": module.extract_answer, "probe": module.extract_probe_answer}


def score(rows: list[dict[str, Any]], extractors: Extractors) -> dict[str, Any]:
    by_source: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    misses = []
    for row in rows:
        got = extractors[row["extractor"]](row["text"])
        ok = right(got, row["label"])
        kind = row["source"].split(":")[1] if row["source"].endswith(":words") else "numbers"
        for key in (row["source"].split(":")[0], kind, "all"):
            by_source[key][0] += ok
            by_source[key][1] += 1
        if not ok:
            misses.append({"id": row["id"], "label": row["label"], "got": got})
    return {
        "accuracy": {k: round(c / n, 4) for k, (c, n) in sorted(by_source.items())},
        "counts": {k: n for k, (_, n) in sorted(by_source.items())},
        "misses": misses,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", default="7a0f04c", help="git revision of the older extractor")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    rows = [r for r in load() if "label" in r]
    now: Extractors = {"answer": answers.extract_answer, "probe": answers.extract_probe_answer}
    result = {
        "corpus": str(CORPUS.relative_to(ROOT)),
        "texts": len(rows),
        "before": {"rev": args.before, **score(rows, old_extractors(args.before))},
        "after": score(rows, now),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'texts':<10}{'n':>5}{'before':>9}{'after':>8}")
    for key, n in result["after"]["counts"].items():
        b, a = result["before"]["accuracy"][key], result["after"]["accuracy"][key]
        print(f"{key:<10}{n:>5}{100 * b:>8.1f}%{100 * a:>7.1f}%")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
