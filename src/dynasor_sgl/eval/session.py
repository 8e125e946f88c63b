"""One `dynasor-sgl eval` run from start to reports: dataset, results file, progress, outputs.

Writes next to the results file (`<out>.jsonl`): `<out>.summary.json`, `<out>.summary.md`,
`<out>.accuracy_vs_tokens.png` and `<out>.certaindex.png`. The progress bar shows questions
done, accuracy and mean tokens so far (the configured policy's row), and the ETA. For
self-consistency the self-calibrated "dynasor" row is derived here, from every question's
full-budget run on disk (`eval.selfcalibrated`), when the reports are written.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from dynasor_sgl.eval import plots
from dynasor_sgl.eval.datasets import Fields, load_dataset
from dynasor_sgl.eval.report import markdown, summarize
from dynasor_sgl.eval.results import ResultsError, ResultsFile, read_records
from dynasor_sgl.eval.runner import CHECKER, EvalSpec, Evaluation
from dynasor_sgl.eval.selfcalibrated import ROW, self_calibrated

logger = logging.getLogger(__name__)

REWRITTEN = "none (reports rewritten from the results file, `eval --report-only`)"


@dataclass(frozen=True)
class EvalRun:
    """Everything one eval run needs (the CLI builds it from its options)."""

    spec: EvalSpec
    dataset: str
    out: Path
    router: str
    limit: int | None = None
    seed: int = 0
    fields: Fields = field(default_factory=Fields)

    def settings(self) -> dict[str, Any]:
        """What must match for a results file to be resumed."""
        return {
            "program": self.spec.program,
            "dataset": self.dataset,
            "limit": self.limit,
            "seed": self.seed,
            "policy": dict(self.spec.policy),
            "params": dict(self.spec.params),
        }

    def outputs(self) -> dict[str, Path]:
        stem = self.out.with_suffix("") if self.out.suffix == ".jsonl" else self.out
        return {
            name: stem.with_name(stem.name + suffix)
            for name, suffix in (
                ("summary", ".summary.json"),
                ("markdown", ".summary.md"),
                ("plot", ".accuracy_vs_tokens.png"),
                ("histogram", ".certaindex.png"),
            )
        }


class _Progress:
    """tqdm with accuracy and tokens of one row (`shown`) so far."""

    def __init__(self, total: int, initial: int, shown: str) -> None:
        self.bar = tqdm(total=total, initial=initial, unit="q", dynamic_ncols=True)
        self.shown = shown
        self.correct = self.n = self.tokens = self.errors = 0
        self._lock = threading.Lock()

    def update(self, records: list[dict[str, Any]]) -> None:
        with self._lock:
            for r in records:
                if r.get("status") == "error":
                    self.errors += 1
                elif r.get("row") == self.shown:
                    self.n += 1
                    self.correct += bool(r.get("correct"))
                    self.tokens += int(r["tokens"]["total"])
            if self.n:
                self.bar.set_postfix(
                    acc=f"{self.correct / self.n:.2f}",
                    tokens=f"{self.tokens / self.n:.0f}",
                    errors=self.errors,
                    refresh=False,
                )
            self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def run_eval(
    run: EvalRun, run_program: Callable[..., Any], abort: Callable[[str], Any]
) -> dict[str, Any]:
    """Evaluate, resuming `run.out` if it exists, then write the reports; the summary."""
    items = load_dataset(run.dataset, run.fields, run.limit, run.seed)
    results = ResultsFile(run.out, run.settings())
    if results.dropped:
        logger.info("resuming %s: %d error records will be retried", run.out, results.dropped)
    evaluation = Evaluation(run.spec, items, results, run_program, abort)
    pending = evaluation.pending()
    # The configured policy's row: "paper" replayed, "dynasor" live.
    progress = _Progress(len(items), len(items) - len(pending), run.spec.rows()[1])
    try:
        evaluation.run(progress.update)
    finally:
        progress.close()
    # Everything on disk: the finished records and this run's errors (retried on resume).
    return write_reports(run, read_records(run.out)[1])


def write_reports(run: EvalRun, records: list[dict[str, Any]]) -> dict[str, Any]:
    spec = run.spec
    meta: dict[str, Any] = {
        "program": spec.program,
        "algorithm": spec.algorithm,
        "dataset": run.dataset,
        "checker": CHECKER,
        "router": run.router,
        "results": str(run.out),
        "policy": dict(spec.policy),
        "fixed_thresholds": dict(spec.policy_config().thresholds),
        "params": dict(spec.params),
        "modes": {
            "baseline": "live",
            "dynasor": "replay" if spec.replayed else "live",
            "paper": "replay",
            "oracle": "replay",
        },
    }
    if spec.replayed:
        derived, bound = self_calibrated(records, spec.epsilon, spec.delta)
        records = [r for r in records if r.get("row") != ROW] + derived
        meta["bound"] = bound
    summary = summarize(records, spec.reported_rows(), meta)
    paths = run.outputs()
    paths["summary"].write_text(json.dumps(summary, indent=2) + "\n")
    paths["markdown"].write_text(markdown(summary))
    if summary["questions"]:
        plots.accuracy_vs_tokens(summary, paths["plot"])
        plots.certaindex_histogram(summary, paths["histogram"])
    summary["outputs"] = {k: str(v) for k, v in paths.items()}
    return summary


def rewrite_reports(
    out: Path,
    algorithm_of: Callable[[str], str],
    epsilon: float = EvalSpec.epsilon,
    delta: float = EvalSpec.delta,
) -> dict[str, Any]:
    """The reports of a finished results file written again from its records alone (no router,
    nothing run, the file left as it is), with the settings of its run header;
    `algorithm_of(program)` names the program's algorithm."""
    header, records = read_records(out)
    if header is None or not isinstance(header.get("settings"), dict):
        raise ResultsError(f"{out} has no run header to rewrite its reports from")
    settings = header["settings"]
    program = str(settings["program"])
    spec = EvalSpec(
        program,
        algorithm_of(program),
        dict(settings.get("policy") or {}),
        dict(settings.get("params") or {}),
        epsilon=epsilon,
        delta=delta,
    )
    run = EvalRun(
        spec,
        str(settings["dataset"]),
        out,
        REWRITTEN,
        settings.get("limit"),
        settings.get("seed", 0),
    )
    return write_reports(run, records)


def one_line(summary: Mapping[str, Any]) -> str:
    """The closing line: accuracy and tokens of Dynasor vs baseline, saving, oracle fraction."""
    rows = summary["rows"]
    base, dyn = rows["baseline"], rows.get("dynasor", rows["baseline"])
    frac = summary.get("fraction_of_oracle_saving")
    saved = dyn.get("saved_vs_baseline")
    return (
        f"{summary['questions']} questions: Dynasor {100 * dyn['accuracy']:.1f}% at "
        f"{dyn['mean_tokens']:.0f} tokens vs baseline {100 * base['accuracy']:.1f}% at "
        f"{base['mean_tokens']:.0f}; saved {100 * (saved or 0):.1f}%"
        + (f" ({100 * frac:.0f}% of the oracle's saving)" if frac is not None else "")
        + f"; errors {summary['errors']}; report {summary['outputs']['markdown']}"
    )
