"""`dynasor-sgl eval` on the real worker: a small self-consistency run, its records and reports,
and a resume that adds nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e


def eval_cmd(router_url: str, out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "dynasor_sgl.cli.main",
        "eval",
        "--dataset",
        "synth:facts",
        "--limit",
        "3",
        "--cap",
        "5",
        "--set",
        "max_tokens=16",
        "--set",
        "temperature=0.4",
        "--router",
        router_url,
        "--out",
        str(out),
        "--concurrency",
        "3",
    ]


def test_eval_writes_records_and_reports_and_resumes_without_duplicates(
    router_url: str, tmp_path: Path
) -> None:
    out = tmp_path / "sc.jsonl"
    proc = subprocess.run(eval_cmd(router_url, out), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1].startswith("3 questions: Dynasor")
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    records = [r for r in rows if r.get("kind") != "run"]
    keys = [(r["question_id"], r["row"]) for r in records]
    assert len(keys) == len(set(keys)) == 9  # 3 questions x baseline, paper, oracle
    for r in records:
        assert r["status"] == "ok" and isinstance(r["correct"], bool)
        assert "math-verify" in r["checker"]
    base = [r for r in records if r["row"] == "baseline"]
    assert all(r["tokens"]["total"] == r["router_tokens"]["total"] for r in base)
    assert all(len(r["details"]["answers"]) == 5 for r in base)
    # every sample's token confidences, one per generated token, for the trimming replay
    for r in base:
        details = r["details"]
        lengths = [len(c) for c in details["token_confidences"]]
        assert lengths == details["completion_tokens"] and all(0 < n <= 16 for n in lengths)
        assert all(c >= 0 for cs in details["token_confidences"] for c in cs)
    summary = json.loads((tmp_path / "sc.summary.json").read_text())
    assert summary["questions"] == 3 and summary["errors"] == 0
    assert len(summary["curves"]["confidence_trim_by_percentile"]) == 5
    assert len(summary["curves"]["weighted_by_cap"]) == 5
    assert summary["rows"]["oracle"]["mean_tokens"] <= summary["rows"]["baseline"]["mean_tokens"]
    # three questions certify nothing: the self-calibrated row is the full budget
    assert summary["rows"]["dynasor"]["mean_tokens"] == summary["rows"]["baseline"]["mean_tokens"]
    for name in ("sc.summary.md", "sc.accuracy_vs_tokens.png", "sc.certaindex.png"):
        assert (tmp_path / name).stat().st_size > 0
    again = subprocess.run(eval_cmd(router_url, out), capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert out.read_text().splitlines() == [json.dumps(r) for r in rows]  # nothing re-run
