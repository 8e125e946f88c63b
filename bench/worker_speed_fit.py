"""The simulator profile fitted from a `bench/worker_speed.py` results dict (see that
module's docstring for what is measured and how it is fitted). Pure: no worker, no I/O; the
measuring lives in worker_speed.py.
"""

from __future__ import annotations

from dynasor_sgl.sim.profile import (
    Profile,
    TimedRun,
    fit_run_model,
    fit_split_step_model,
    fit_step_model,
)

PREFILL_GUESS_S = 0.0002


def step_points(result: dict) -> list[tuple[int, int, float]]:
    """(decoding requests, prefill tokens, seconds per step) points of a results dict."""
    pts = [(int(r["concurrency"]), 0, r["wall_s"] / result["new_tokens"]) for r in result["runs"]]
    pts += [(0, int(r["prompt_tokens"]), r["wall_s"]) for r in result.get("prefill", [])]
    return pts


def timed_runs(result: dict) -> list[TimedRun]:
    """Every decode run that recorded its prompt tokens (the default runs and the context
    runs) as 1 prefill step + new tokens - 1 decode steps, a request's context at decode step
    k being its prompt + k; and every prefill point as one prefill step. The story prompts'
    cached part is counted as prefilled (a few tokens a request)."""
    out = []
    for run in result["runs"] + result.get("context", []):
        if "prompt_tokens" not in run:
            continue
        b, new = int(run["concurrency"]), int(run.get("new_tokens", result["new_tokens"]))
        d, prompt = new - 1, run["prompt_tokens"] / b
        ctx = b * (d * prompt + d * new / 2)
        out.append(TimedRun(d, 1, d * b, ctx, run["prompt_tokens"], run["wall_s"]))
    out += [TimedRun(0, 1, 0, 0, r["prompt_tokens"], r["wall_s"]) for r in result["prefill"]]
    return out


def _step_fit(result: dict, source: str) -> tuple[dict[str, float | None], dict[str, str]]:
    """Terms and their sources without context runs: per-step points, no context term."""
    points = step_points(result)
    measured = bool(result.get("prefill"))
    terms: dict[str, float | None] = {"prefill_base_s": None, "per_context_token_s": 0.0}
    if measured:  # SGLang runs a prefill step on its own: fit decode and prefill apart
        fitted = fit_split_step_model(points)
        names = ("base_s", "per_request_s", "prefill_base_s", "per_prefill_token_s")
        terms |= dict(zip(names, fitted, strict=True))
    else:
        base, per_request, _ = fit_step_model(points)
        terms |= {"base_s": base, "per_request_s": per_request}
        terms["per_prefill_token_s"] = PREFILL_GUESS_S
    prefill = (
        f"least squares over {len(result['prefill'])} prefill points (max_new_tokens=1, "
        "random input_ids), apart from the decode points (a prefill step runs alone)"
        if measured
        else "PROVISIONAL GUESS (5,000 prompt tokens/s): no prefill was measured"
    )
    fit = f"least squares over {len(result['runs'])} decode points (wall / new tokens at each "
    fit += f"concurrency, {result['new_tokens']}-token requests) from {source}"
    return terms, {
        "base_s": fit,
        "per_request_s": fit,
        "per_prefill_token_s": prefill,
        "prefill_base_s": prefill if measured else "not measured: base_s",
        "per_context_token_s": f"0: no decode at a second context length in {source}",
    }


def _run_fit(result: dict, source: str) -> tuple[dict[str, float | None], dict[str, str]]:
    """Terms and their sources from one least-squares fit over every timed run."""
    runs = timed_runs(result)
    fitted, clipped = fit_run_model(runs)
    sizes = sorted({int(r["prompt_tokens"] / r["concurrency"]) for r in result["context"]})
    fit = f"one least-squares fit of {len(runs)} timed runs (decode at {result['new_tokens']} "
    fit += f"new tokens, decode at prompts of {sizes} tokens, prefill alone) from {source}"
    if clipped:
        fit += f"; fitted negative, set to 0: {', '.join(clipped)}"
    return dict(fitted), {name: fit for name in fitted}


def fit_profile(result: dict, source: str) -> Profile:
    """The simulator profile of a results dict (see the module docstring)."""
    measured = bool(result.get("prefill"))
    fit = _run_fit if measured and result.get("context") else _step_fit
    terms, sources = fit(result, source)
    return Profile(
        name=f"cpu-{result['model'].lower()}" + ("" if measured else "-provisional"),
        base_s=round(float(terms["base_s"] or 0.0), 6),
        per_request_s=round(float(terms["per_request_s"] or 0.0), 6),
        per_prefill_token_s=round(float(terms["per_prefill_token_s"] or 0.0), 7),
        prefill_base_s=None
        if terms["prefill_base_s"] is None
        else round(terms["prefill_base_s"], 6),
        per_context_token_s=round(float(terms["per_context_token_s"] or 0.0), 9),
        kv_tokens=65536,
        prefill_budget=8192,
        max_running=4096,
        request_overhead_s=0.0,
        source=sources
        | {
            "kv_tokens": "the project's CPU worker default (--max-total-tokens 65536)",
            "prefill_budget": "SGLang's default chunked prefill size (8192), not measured",
            "max_running": "not binding at these loads (SGLang sizes it from the KV pool)",
            "request_overhead_s": "0 until calibrated against real runs (sim validation)",
            "machine": f"{result['machine'].get('cpu')}, device {result['device']}",
        },
    )
