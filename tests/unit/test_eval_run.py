"""The evaluation runner and `dynasor-sgl eval` / `calibrate` end to end.

First with an injected fake `run_program` (canned results, one question failing) to pin what
is recorded and what a resume retries; then through the CLI against the real router app over
HTTP in front of the fake SGLang worker (`lang_harness`), in process with CliRunner and as an
interrupted subprocess. The fake worker's text holds no answer, so every answer there is None:
these tests are about the mechanics (records, resume, reports), not accuracy.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from lang_harness import Served, serve_router

from dynasor_sgl.cli.main import main
from dynasor_sgl.eval.datasets import Item, load_dataset
from dynasor_sgl.eval.results import ResultsFile, read_records
from dynasor_sgl.eval.runner import EvalSpec, Evaluation
from dynasor_sgl.eval.session import EvalRun, run_eval
from dynasor_sgl.lang import BackendError, ProgramResult
from dynasor_sgl.policy.config import load_policy_file

pytestmark = [pytest.mark.io, pytest.mark.filterwarnings("ignore:Error in stream_executor")]

SC_ROWS = ("baseline", "paper", "oracle")  # stored; "dynasor" is derived for the reports
SETTINGS = {"program": "self-consistency", "dataset": "hand", "policy": {"cap": 5}}

# -- the runner with a fake run_program --------------------------------------------------------

ITEMS = [
    Item("q1", "What is 1 + 1?", "2"),
    Item("q2", "What is 2 + 2?", "4"),
    Item("q3", "What is 3 + 3?", "6"),
    Item("q4", "What is 4 + 4?", "8"),
]
ANSWERS = {  # what each question's five samples answer
    "What is 1 + 1?": ["2"] * 5,
    "What is 2 + 2?": ["3", "4", "4", "4", "4"],
    "What is 3 + 3?": ["6"] * 5,
    "What is 4 + 4?": ["7"] * 5,
}


class FakeRuns:
    """A `run_program` that returns canned full-budget SC results; questions in `failing`
    end in status "error" (or raise `exc`, if set). Records every call."""

    def __init__(self, failing: tuple[str, ...] = (), exc: Exception | None = None) -> None:
        self.failing = failing
        self.exc = exc
        self.calls: list[dict[str, Any]] = []
        self.aborted: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, name: str, question: str, **kwargs: Any) -> ProgramResult:
        with self._lock:
            self.calls.append({"name": name, "question": question, **kwargs})
        pid = kwargs["program_id"]
        cap = kwargs["policy"]["cap"]
        if question in self.failing:
            if self.exc is not None:
                raise self.exc
            return ProgramResult(
                name,
                pid,
                question,
                "error",
                None,
                "error",
                0,
                cap,
                [],
                {"total": 0},
                None,
                0.01,
                error="worker died",
            )
        answers = ANSWERS.get(question, ["0"] * cap)[:cap]
        sample_tokens = [10 + i for i in range(len(answers))]
        total = 3 + sum(sample_tokens)  # 3 tokens of shared prefill
        tokens = {"reasoning": total, "probe": 0, "reward": 0, "total": total}
        return ProgramResult(
            name,
            pid,
            question,
            "ok",
            answers[0],
            "cap",
            len(answers),
            cap,
            [{"step": cap, "entropy": 1.0}],
            tokens,
            dict(tokens),
            0.01,
            details={"answers": answers, "sample_tokens": sample_tokens},
        )

    def abort(self, program_id: str) -> None:
        self.aborted.append(program_id)


def evaluation(path: Path, fake: FakeRuns, concurrency: int = 2) -> Evaluation:
    spec = EvalSpec("self-consistency", "sc", policy={"cap": 5}, concurrency=concurrency)
    return Evaluation(spec, ITEMS, ResultsFile(path, SETTINGS), fake, fake.abort)


def by_key(path: Path) -> dict[tuple[str, str], dict[str, Any]]:
    _, records = read_records(path)
    keys = Counter((r["question_id"], r["row"]) for r in records)
    assert max(keys.values()) == 1, f"a (question, row) twice: {keys}"
    return {(r["question_id"], r["row"]): r for r in records}


def test_evaluation_records_a_failed_question_as_errors_and_retries_only_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "run.jsonl"
    fake = FakeRuns(failing=("What is 3 + 3?",))
    reported: list[dict[str, Any]] = []
    evaluation(path, fake).run(reported.extend)

    # one live full-budget run per question, with every sample drawn at once
    assert sorted(c["question"] for c in fake.calls) == sorted(i.question for i in ITEMS)
    assert {json.dumps(c["policy"], sort_keys=True) for c in fake.calls} == {
        json.dumps(
            {"cap": 5, "detect_at": 5, "detect_every": 0, "initial": 5, "pace": 5}, sort_keys=True
        )
    }
    records = by_key(path)
    assert set(records) == {(i.id, p) for i in ITEMS for p in SC_ROWS}
    assert len(reported) == len(records)
    for (qid, _), r in records.items():
        assert r["status"] == ("error" if qid == "q3" else "ok"), r
    assert records[("q3", "baseline")]["error"] == "worker died"
    assert records[("q3", "paper")]["error"] == "worker died"
    # replayed from the canned samples: q2's first five are 3,4,4,4,4
    assert records[("q2", "baseline")]["answer"] == "3"  # the fake's own "answer"
    assert records[("q2", "paper")]["answer"] == "4" and records[("q2", "paper")]["correct"]
    assert records[("q2", "oracle")]["steps"] == 3  # 3 | 3,4 (tie: 3) | 3,4,4 -> 4 from then on
    assert records[("q4", "paper")]["correct"] is False
    assert records[("q1", "oracle")]["tokens"]["total"] == 3 + 10

    again = ResultsFile(path, SETTINGS)
    assert again.dropped == 3
    retry = FakeRuns()
    spec = EvalSpec("self-consistency", "sc", policy={"cap": 5}, concurrency=2)
    resumed = Evaluation(spec, ITEMS, again, retry, retry.abort)
    assert [i.id for i in resumed.pending()] == ["q3"]
    resumed.run(lambda _: None)
    assert [c["question"] for c in retry.calls] == ["What is 3 + 3?"]
    final = by_key(path)
    assert len(final) == 12 and all(r["status"] == "ok" for r in final.values())
    assert final[("q1", "baseline")] == records[("q1", "baseline")]  # kept, not re-run


def test_a_results_file_from_before_the_rows_were_named_resumes_as_it_is(
    tmp_path: Path,
) -> None:
    path = tmp_path / "run.jsonl"
    evaluation(path, FakeRuns()).run(lambda _: None)
    new = by_key(path)
    # As such a file was written: the label under "policy", the fixed-threshold replay
    # named "dynasor".
    old = [
        {**{k: v for k, v in r.items() if k != "row"}, "policy": "dynasor" if p == "paper" else p}
        for (_, p), r in new.items()
    ]
    header = {"kind": "run", "settings": SETTINGS}
    path.write_text("".join(json.dumps(r) + "\n" for r in [header, *old]))
    again = FakeRuns()
    resumed = evaluation(path, again)
    assert resumed.pending() == []
    resumed.run(lambda _: None)
    assert again.calls == [] and by_key(path) == new  # nothing run again, rewritten with "row"
    assert all("policy" not in r for r in read_records(path)[1])


def test_a_question_whose_run_raises_is_an_error_and_the_run_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    fake = FakeRuns(failing=("What is 3 + 3?",), exc=BackendError("router unreachable"))
    evaluation(path, fake, concurrency=1).run(lambda _: None)
    records = by_key(path)
    assert len(records) == 12  # every question was tried, the failing one as errors
    failed = {k: r for k, r in records.items() if r["status"] == "error"}
    assert {q for q, _ in failed} == {"q3"}
    assert all("router unreachable" in r["error"] for r in failed.values())
    retry = FakeRuns()
    spec = EvalSpec("self-consistency", "sc", policy={"cap": 5}, concurrency=1)
    Evaluation(spec, ITEMS, ResultsFile(path, SETTINGS), retry, retry.abort).run(lambda _: None)
    assert [c["question"] for c in retry.calls] == ["What is 3 + 3?"]
    final = by_key(path)
    assert len(final) == 12 and all(r["status"] == "ok" for r in final.values())


def test_summary_counts_the_errors_of_the_run(tmp_path: Path) -> None:
    items = load_dataset("synth:add1", limit=3)
    fake = FakeRuns(failing=(items[1].question,))
    spec = EvalSpec("self-consistency", "sc", policy={"cap": 5}, concurrency=1)
    run = EvalRun(spec, "synth:add1", tmp_path / "run.jsonl", "fake", limit=3)
    summary = run_eval(run, fake, fake.abort)
    assert summary["questions"] == 2
    assert summary["errors"] > 0


# -- the CLI against the router app and the fake worker ----------------------------------------


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    with serve_router() as s:
        yield s


def eval_args(out: Path, url: str, dataset: str = "synth:add1") -> list[str]:
    return [
        "eval",
        "--dataset",
        dataset,
        "--limit",
        "6",
        "--cap",
        "5",
        "--set",
        "max_tokens=4",
        "--out",
        str(out),
        "--router",
        url,
        "--concurrency",
        "2",
    ]


def invoke(args: list[str]) -> Result:
    return CliRunner().invoke(main, args)


def outputs(out: Path) -> dict[str, Path]:
    stem = out.with_suffix("")
    return {
        name: stem.with_name(stem.name + suffix)
        for name, suffix in (
            ("summary", ".summary.json"),
            ("markdown", ".summary.md"),
            ("plot", ".accuracy_vs_tokens.png"),
            ("histogram", ".certaindex.png"),
        )
    }


@pytest.fixture(scope="module")
def first_run(served: Served, tmp_path_factory: pytest.TempPathFactory) -> tuple[Result, Path]:
    """One uninterrupted eval run of the 6 questions (shared by the tests below)."""
    out = tmp_path_factory.mktemp("first") / "run.jsonl"
    return invoke(eval_args(out, served.url)), out


def test_cli_eval_end_to_end(first_run: tuple[Result, Path]) -> None:
    res, out = first_run
    assert res.exit_code == 0, res.output
    records = by_key(out)
    questions = {i.id for i in load_dataset("synth:add1", limit=6)}
    assert set(records) == {(q, p) for q in questions for p in SC_ROWS}
    assert all(r["status"] == "ok" for r in records.values())
    for q in questions:  # 5 samples of 4 tokens each, the others replayed from them
        base = records[(q, "baseline")]
        assert base["mode"] == "live" and base["steps"] == 5
        assert base["tokens"]["total"] == base["router_tokens"]["total"] > 0
        assert base["details"]["answers"] == [None] * 5
        assert records[(q, "paper")]["mode"] == records[(q, "oracle")]["mode"] == "replay"
        assert records[(q, "oracle")]["steps"] == 1  # all None: settled from the first sample
    # under the default (cpu) preset the "paper" row is still the paper's stop rule
    settings = json.loads(out.read_text().splitlines()[0])["settings"]
    assert not {"rule", "confidence"} & set(settings["policy"])
    paths = outputs(out)
    summary = json.loads(paths["summary"].read_text())
    assert summary["questions"] == 6 and set(summary["rows"]) == {"dynasor", *SC_ROWS}
    # six questions certify nothing: the self-calibrated row runs to the full budget
    assert summary["rows"]["dynasor"]["mean_tokens"] == summary["rows"]["baseline"]["mean_tokens"]
    assert [f["certified"] for f in summary["bound"]["folds"]] == [False, False]
    text = paths["markdown"].read_text()
    assert "| row | mode | accuracy (95% CI) |" in text and "nothing certified" in text
    for name in ("plot", "histogram"):
        assert paths[name].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    last = res.stdout.strip().splitlines()[-1]
    assert last.startswith("6 questions: Dynasor 0.0% at ")
    assert last.endswith(f"report {paths['markdown']}")


def test_cli_eval_interrupted_then_resumed(
    served: Served, first_run: tuple[Result, Path], tmp_path: Path
) -> None:
    out = tmp_path / "interrupted.jsonl"
    cmd = [sys.executable, "-m", "dynasor_sgl.cli.main", *eval_args(out, served.url)]
    # ~4 s a question, 3 rounds of 2: the SIGINT lands long before the run could end (at 0.3 s
    # a token a loaded machine once finished every question before the signal arrived).
    served.fake.token_delay = 1.0
    try:
        # A job started in the background of a non-interactive shell (as a CI script may be)
        # inherits SIGINT ignored, and Python then installs no KeyboardInterrupt handler: give
        # the child the default a user's terminal would.
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        deadline = time.monotonic() + 60
        while not (out.exists() and '"question_id"' in out.read_text()):
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"no record appeared (rc {proc.returncode}): {proc.communicate()}")
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        served.fake.token_delay = 0.005
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "Error" not in stderr, stderr
    message = [line for line in stderr.splitlines() if "Interrupted" in line]
    assert message == [
        f"Interrupted; finished records are in {out}. Re-run the same command to resume."
    ]
    assert stdout == ""

    lines = out.read_text().splitlines()
    rows = [json.loads(line) for line in lines]  # every line is whole JSON
    assert rows[0]["kind"] == "run"
    partial = by_key(out)  # no (question, row) twice
    done = {k: r for k, r in partial.items() if r["status"] == "ok"}
    # Interrupted after the first record (exit 130 above); how many more finished before the
    # signal landed depends on timing, so only the lower bound is checked.
    assert len(done) >= 1

    res = invoke(eval_args(out, served.url))
    assert res.exit_code == 0, res.output
    assert res.stdout.strip().splitlines()[-1].startswith("6 questions")
    final = by_key(out)
    assert len(final) == 18 and all(r["status"] == "ok" for r in final.values())
    for key, r in done.items():  # finished before the interrupt: kept, not run again
        assert final[key] == r
    resumed = json.loads(outputs(out)["summary"].read_text())
    reference = json.loads(outputs(first_run[1])["summary"].read_text())
    assert resumed["questions"] == reference["questions"] == 6
    assert resumed["rows"] == reference["rows"]


def test_cli_eval_report_only_rewrites_the_reports_from_the_file(
    first_run: tuple[Result, Path], tmp_path: Path
) -> None:
    out = tmp_path / "run.jsonl"
    out.write_bytes(first_run[1].read_bytes())
    res = invoke(["eval", "--report-only", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert res.stdout.strip().splitlines()[-1].startswith("6 questions: Dynasor")
    assert out.read_bytes() == first_run[1].read_bytes()  # the file left as it is
    rewritten = json.loads(outputs(out)["summary"].read_text())
    reference = json.loads(outputs(first_run[1])["summary"].read_text())
    assert rewritten["rows"] == reference["rows"] and rewritten["bound"] == reference["bound"]
    missing = invoke(["eval", "--report-only", "--out", str(tmp_path / "none.jsonl")])
    assert missing.exit_code == 1 and "does not exist" in missing.output
    no_dataset = invoke(["eval", "--out", str(tmp_path / "new.jsonl")])
    assert no_dataset.exit_code == 1 and "--dataset is required" in no_dataset.output


def test_cli_eval_malformed_dataset_is_one_error_line(served: Served, tmp_path: Path) -> None:
    data = tmp_path / "data.jsonl"
    data.write_text(
        json.dumps({"id": "a", "question": "What is 1 + 1?", "answer": "2"})
        + "\n"
        + json.dumps({"id": "b", "question": "What is 2 + 2?", "answer": "4"})
        + "\n"
        + '{"id": "c", "question": \n'
    )
    out = tmp_path / "run.jsonl"
    res = invoke(eval_args(out, served.url, dataset=str(data)))
    assert res.exit_code == 1
    assert "Traceback" not in res.output
    errors = [line for line in res.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and f"{data}:3: not valid JSON" in errors[0], res.output
    assert not out.exists()


def test_cli_calibrate_writes_a_policy_file_run_accepts(
    first_run: tuple[Result, Path], tmp_path: Path
) -> None:
    policy_file = tmp_path / "policy.json"
    res = invoke(["calibrate", str(first_run[1]), "--out", str(policy_file)])
    assert res.exit_code == 0, res.output
    assert res.output.startswith("6 runs: ") and res.output.rstrip().endswith(
        f"wrote {policy_file}"
    )
    policy = load_policy_file(policy_file)
    assert set(policy) == {"sc"} and policy["sc"]["cap"] == 5
    assert 1 <= policy["sc"]["detect_at"] <= 5


def test_cli_calibrate_without_labels_writes_the_full_budget_when_nothing_is_certified(
    first_run: tuple[Result, Path], tmp_path: Path
) -> None:
    # 6 runs cannot certify a disagreement rate of 2% (114 programs with none would): the
    # policy file says run to the cap, and the line says what 6 runs could certify.
    policy_file = tmp_path / "policy.json"
    res = invoke(
        ["calibrate", str(first_run[1]), "--target", "full-budget", "--out", str(policy_file)]
    )
    assert res.exit_code == 0, res.output
    line = res.output.strip()
    assert line.startswith("6 runs, label-free (eps 0.02, delta 0.1): run to the cap (6 programs")
    assert "0/6 answers differ from the full budget" in line and line.endswith(str(policy_file))
    assert load_policy_file(policy_file) == {"sc": {"cap": 5, "detect_at": 5}}
    report = json.loads(policy_file.with_suffix(".calibration.json").read_text())
    assert report["target"] == "full-budget" and report["fit"]["programs"] == 6


def test_cli_calibrate_without_baseline_runs_is_one_error_line(tmp_path: Path) -> None:
    results = tmp_path / "r.jsonl"
    results.write_text(json.dumps({"question_id": "q", "policy": "dynasor", "status": "ok"}))
    res = invoke(["calibrate", str(results), "--out", str(tmp_path / "p.json")])
    assert res.exit_code == 1
    assert res.output.startswith(f"Error: {results} has no full-budget self-consistency runs")
    assert not (tmp_path / "p.json").exists()


def test_live_programs_run_dynasor_first_then_the_baseline(tmp_path: Path) -> None:
    fake = FakeRuns()
    spec = EvalSpec("cot-probe", "cot", policy={"cap": 128}, concurrency=1)
    settings = {**SETTINGS, "program": "cot-probe"}
    Evaluation(
        spec, ITEMS[:2], ResultsFile(tmp_path / "run.jsonl", settings), fake, fake.abort
    ).run(lambda _: None)
    order = [(c["question"], c["policy"].get("detect_at")) for c in fake.calls]
    # The Dynasor run keeps the program's own detection (no override); the baseline reads
    # only at the cap.
    assert order == [
        (ITEMS[0].question, None),
        (ITEMS[0].question, 128),
        (ITEMS[1].question, None),
        (ITEMS[1].question, 128),
    ]
    records = by_key(tmp_path / "run.jsonl")
    assert set(records) == {(i.id, p) for i in ITEMS[:2] for p in ("baseline", "dynasor")}
    assert all(r["mode"] == "live" for r in records.values())
