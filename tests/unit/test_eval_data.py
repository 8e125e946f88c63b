"""Evaluation inputs and outputs: datasets (JSONL, GSM8K gold, built-in tasks) and the
resumable results file (append, resume, torn lines, retried errors, settings, no duplicates)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dynasor_sgl.eval.datasets import (
    _FACTS,
    TASKS,
    DatasetError,
    Fields,
    Item,
    gold,
    load_dataset,
    read_jsonl,
    synthetic,
)
from dynasor_sgl.eval.results import ResultsError, ResultsFile, read_records

SETTINGS = {
    "program": "self-consistency",
    "dataset": "synth:add1",
    "limit": 3,
    "seed": 0,
    "policy": {"cap": 5},
    "params": {"max_tokens": 4},
}


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


# -- datasets: JSONL ---------------------------------------------------------------------------


def test_jsonl_with_custom_fields(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "d.jsonl",
        [
            json.dumps({"qid": 7, "problem": "What is 2 + 2?", "solution": 4, "extra": "x"}),
            "",
            json.dumps({"qid": "b", "problem": "What is 3 + 3?", "solution": "6"}),
        ],
    )
    items = read_jsonl(path, Fields(question="problem", answer="solution", id="qid"))
    assert items == [Item("7", "What is 2 + 2?", "4"), Item("b", "What is 3 + 3?", "6")]


def test_jsonl_without_an_id_field_uses_line_numbers(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "d.jsonl",
        [
            json.dumps({"question": "q one", "answer": "1"}),
            "   ",
            json.dumps({"question": "q three", "answer": "3"}),
        ],
    )
    assert [i.id for i in read_jsonl(path, Fields(id=None))] == ["1", "3"]


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("Natalia sold 48 clips.\nThen 24 more.\n#### 72", "72"),
        ("#### 42", "42"),
        ("a #### b #### 1,234 ", "1,234"),
        ("  plain 5 ", "plain 5"),
        (18, "18"),
    ],
)
def test_gsm8k_gold_is_what_follows_the_last_marker(answer: Any, expected: str) -> None:
    assert gold(answer) == expected


def test_gsm8k_style_file(tmp_path: Path) -> None:
    row = {"question": "Tom has 3 apples and gets 4 more.", "answer": "3 + 4 = 7\n#### 7"}
    path = write_lines(tmp_path / "gsm.jsonl", [json.dumps(row)])
    [item] = read_jsonl(path, Fields(id=None))
    assert item.answer == "7" and item.question == row["question"]


def test_malformed_line_names_the_file_and_line(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "bad.jsonl",
        [
            json.dumps({"id": "a", "question": "q", "answer": "1"}),
            "",
            '{"id": "b", "question": "q", ',
        ],
    )
    with pytest.raises(DatasetError) as err:
        read_jsonl(path)
    assert str(err.value).startswith(f"{path}:3: not valid JSON")


def test_line_that_is_not_an_object_is_refused(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "list.jsonl", ['["q", "a"]'])
    with pytest.raises(DatasetError, match=r":1: expected a JSON object, got list"):
        read_jsonl(path)


def test_missing_field_names_the_line_and_the_field(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "d.jsonl",
        [
            json.dumps({"id": "a", "question": "q", "answer": "1"}),
            json.dumps({"id": "b", "question": "q"}),
        ],
    )
    with pytest.raises(DatasetError) as err:
        read_jsonl(path)
    message = str(err.value)
    assert message.startswith(f"{path}:2: missing field 'answer'")
    with pytest.raises(DatasetError, match=r":1: missing field 'problem'"):
        read_jsonl(path, Fields(question="problem"))


def test_empty_question_is_refused(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "d.jsonl", [json.dumps({"question": "  ", "answer": "1"})])
    with pytest.raises(DatasetError, match=r":1: field 'question' must be a non-empty string"):
        read_jsonl(path)


def test_duplicate_ids_are_refused(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "d.jsonl",
        [
            json.dumps({"id": 1, "question": "q", "answer": "1"}),
            json.dumps({"id": "1", "question": "r", "answer": "2"}),
        ],
    )
    with pytest.raises(DatasetError, match=r"duplicate id '1'"):
        read_jsonl(path)


def test_empty_file_has_no_questions(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text("\n\n")
    with pytest.raises(DatasetError, match=r"empty.jsonl: no questions"):
        read_jsonl(path)


def test_missing_file_is_a_dataset_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"cannot read .*nope.jsonl"):
        load_dataset(str(tmp_path / "nope.jsonl"))


def test_limit_takes_the_first_questions(tmp_path: Path) -> None:
    rows = [json.dumps({"id": f"q{i}", "question": f"q {i}", "answer": str(i)}) for i in range(5)]
    path = write_lines(tmp_path / "d.jsonl", rows)
    assert [i.id for i in load_dataset(str(path), limit=2)] == ["q0", "q1"]
    assert len(load_dataset(str(path), limit=50)) == 5
    assert len(load_dataset(str(path))) == 5
    with pytest.raises(DatasetError, match="limit must be >= 1, got 0"):
        load_dataset(str(path), limit=0)


# -- datasets: built-in tasks ------------------------------------------------------------------


@pytest.mark.parametrize("task", sorted(TASKS))
def test_synth_is_deterministic_and_correct(task: str) -> None:
    items = load_dataset(f"synth:{task}", limit=20, seed=3)
    assert items == load_dataset(f"synth:{task}", limit=20, seed=3)
    assert len(items) == 20 and len({i.id for i in items}) == 20
    for item in items:
        if task == "facts":
            assert any(q in item.question and item.answer == str(a) for q, a in _FACTS), item
            continue
        numbers = [int(w.strip("?")) for w in item.question.split() if w.strip("?").isdigit()]
        expected = numbers[0] + 1 if task == "next" else sum(numbers)
        assert item.answer == str(expected), item


def test_synth_seeds_differ() -> None:
    one = [i.question for i in synthetic("add2", 20, seed=0)]
    two = [i.question for i in synthetic("add2", 20, seed=1)]
    assert one != two


def test_synth_default_size_and_limit() -> None:
    assert len(load_dataset("synth:add1")) == 100
    assert load_dataset("synth:add1", limit=3) == synthetic("add1", 3)


def test_unknown_task_names_the_choices() -> None:
    with pytest.raises(DatasetError, match=r"unknown built-in task 'mul'.*'add1'"):
        load_dataset("synth:mul", limit=3)


# -- results file ------------------------------------------------------------------------------


def rec(qid: str, row: str, status: str = "ok", **extra: Any) -> dict[str, Any]:
    return {
        "question_id": qid,
        "row": row,
        "status": status,
        "tokens": {"total": 10},
        **extra,
    }


def lines_of(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def keys_in(path: Path) -> list[tuple[str, str]]:
    return [(r["question_id"], r["row"]) for r in lines_of(path) if "question_id" in r]


def test_append_is_on_disk_at_once(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "run.jsonl"
    results = ResultsFile(path, SETTINGS)
    assert lines_of(path) == [{"kind": "run", "settings": SETTINGS}]
    results.append([rec("q1", "baseline"), rec("q1", "dynasor")])
    # read back while the ResultsFile is still open: appends are flushed, not buffered
    assert keys_in(path) == [("q1", "baseline"), ("q1", "dynasor")]
    assert results.has("q1", "baseline") and not results.has("q2", "baseline")


def test_reopening_resumes_with_done(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    ResultsFile(path, SETTINGS).append([rec("q1", "baseline"), rec("q2", "baseline")])
    again = ResultsFile(path, SETTINGS)
    assert set(again.done) == {("q1", "baseline"), ("q2", "baseline")}
    assert again.dropped == 0
    assert again.done[("q2", "baseline")] == rec("q2", "baseline")
    assert keys_in(path) == [("q1", "baseline"), ("q2", "baseline")]


def test_torn_last_line_is_dropped(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    ResultsFile(path, SETTINGS).append([rec("q1", "baseline")])
    whole = json.dumps(rec("q2", "baseline"))
    with path.open("a") as f:
        f.write(whole[: len(whole) // 2])  # a crash mid-write: half a line, no newline
    again = ResultsFile(path, SETTINGS)
    assert set(again.done) == {("q1", "baseline")}
    again.append([rec("q2", "baseline")])
    # every line parses: the new record did not land on the end of the torn one
    assert keys_in(path) == [("q1", "baseline"), ("q2", "baseline")]


def test_error_records_are_dropped_on_reopen_so_they_are_retried(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    results = ResultsFile(path, SETTINGS)
    results.append([rec("q1", "baseline"), rec("q2", "baseline", "error", error="boom")])
    assert keys_in(path) == [("q1", "baseline"), ("q2", "baseline")]  # the error is on disk
    assert not results.has("q2", "baseline")
    again = ResultsFile(path, SETTINGS)
    assert again.dropped == 1 and not again.has("q2", "baseline")
    assert keys_in(path) == [("q1", "baseline")]
    again.append([rec("q2", "baseline")])
    assert [r["status"] for r in lines_of(path)[1:]] == ["ok", "ok"]


def test_other_settings_are_refused_and_the_file_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    ResultsFile(path, SETTINGS).append([rec("q1", "baseline")])
    before = path.read_bytes()
    with pytest.raises(ResultsError, match=r"other settings.*another --out"):
        ResultsFile(path, {**SETTINGS, "policy": {"cap": 6}})
    assert path.read_bytes() == before


def test_settings_survive_the_json_round_trip(tmp_path: Path) -> None:
    settings = {**SETTINGS, "policy": {"cap": 5, "thresholds": {"entropy": 0.65}}, "limit": None}
    ResultsFile(tmp_path / "run.jsonl", settings)
    assert ResultsFile(tmp_path / "run.jsonl", settings).dropped == 0


def test_appending_a_done_key_is_a_no_op(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    results = ResultsFile(path, SETTINGS)
    results.append([rec("q1", "baseline", answer="1")])
    results.append([rec("q1", "baseline", answer="2"), rec("q1", "oracle")])
    assert keys_in(path) == [("q1", "baseline"), ("q1", "oracle")]
    assert results.done[("q1", "baseline")]["answer"] == "1"
    ResultsFile(path, SETTINGS).append([rec("q1", "baseline", answer="3")])
    assert keys_in(path) == [("q1", "baseline"), ("q1", "oracle")]
    assert read_records(path)[1][0]["answer"] == "1"


def test_one_append_with_a_key_twice_writes_it_once(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    results = ResultsFile(path, SETTINGS)
    results.append([rec("q1", "baseline", answer="1"), rec("q1", "baseline", answer="2")])
    assert keys_in(path) == [("q1", "baseline")]


def test_read_records_of_a_missing_file(tmp_path: Path) -> None:
    assert read_records(tmp_path / "none.jsonl") == (None, [])
