"""A worker speed sweep's results and the simulator profile fitted to them, or to the step
traces the worker wrote during it.

`bench/worker_speed.py` runs the sweep on a real SGLang worker: batches of 1, 2, 4, ... 16
concurrent requests of `new_tokens` tokens each (its `runs`: concurrency, wall seconds,
tokens/s) and, one at a time, prompts of several sizes prefilled with one new token (its
`prefill`: prompt tokens computed, wall seconds). `knee` is the smallest concurrency that
reaches 90% of the best throughput. `fit_profile` fits step time = base + per_request·B +
per_prefill_token·P over the decode points (B = concurrency, step = wall / new tokens) and,
apart, the prefill points (B = 0, P = prompt tokens), `sim.profile.fit_split_step_model`;
without prefill points the prefill cost is a labelled guess. `fit_profile_from_steps` fits
the whole split step model to the worker's own step traces (`sim.steps.fit_steps`). Every
profile names where each number comes from. Knows nothing about starting a worker.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dynasor_sgl.sim.profile import Profile, fit_split_step_model, fit_step_model
from dynasor_sgl.sim.steps import fit_steps, read_steps

PREFILL_GUESS_S = 0.0002
KNEE_FRACTION = 0.9


def knee(runs: Sequence[Mapping[str, float]], fraction: float = KNEE_FRACTION) -> int:
    """The smallest concurrency whose tokens/s reaches `fraction` of the best measured (the
    best itself at fraction 1). Needs at least one run (else ValueError)."""
    best = max(r["tokens_per_s"] for r in runs)
    return int(min(r["concurrency"] for r in runs if r["tokens_per_s"] >= fraction * best))


def step_points(result: Mapping[str, Any]) -> list[tuple[int, int, float]]:
    """(decoding requests, prefill tokens, seconds per step) points of a sweep's results:
    (concurrency, 0, wall / new tokens) per decode run, (0, prompt tokens, wall) per prefill."""
    pts = [(int(r["concurrency"]), 0, r["wall_s"] / result["new_tokens"]) for r in result["runs"]]
    pts += [(0, int(r["prompt_tokens"]), r["wall_s"]) for r in result.get("prefill", [])]
    return pts


def fit_profile(result: Mapping[str, Any], source: str) -> Profile:
    """The simulator profile of a sweep's results (see the module docstring); `source` names
    the results. Measured prefill: decode and prefill fitted apart; none: "-provisional",
    decode only and PREFILL_GUESS_S a prompt token."""
    points = step_points(result)
    measured = bool(result.get("prefill"))
    prefill_base: float | None = None
    if measured:  # SGLang runs a prefill step on its own: fit decode and prefill apart
        base, per_request, prefill_base, per_token = fit_split_step_model(points)
    else:
        base, per_request, per_token = fit_step_model(points)
    prefill_source = (
        f"least squares over {len(result['prefill'])} prefill points (max_new_tokens=1, "
        "random input_ids), apart from the decode points (a prefill step runs alone)"
        if measured
        else "PROVISIONAL GUESS (5,000 prompt tokens/s): no prefill was measured"
    )
    fit = f"least squares over {len(result['runs'])} decode points (wall / new tokens at each "
    fit += f"concurrency, {result['new_tokens']}-token requests) from {source}"
    budget_source = "SGLang's default chunked prefill size (8192), not measured"
    limits, limit_sources = engine_limits(result, 8192, budget_source)
    return Profile(
        name=f"cpu-{result['model'].lower()}" + ("" if measured else "-provisional"),
        base_s=round(base, 6),
        per_request_s=round(per_request, 6),
        per_prefill_token_s=round(per_token if measured else PREFILL_GUESS_S, 7),
        prefill_base_s=None if prefill_base is None else round(prefill_base, 6),
        **limits,
        source={
            "base_s": fit,
            "per_request_s": fit,
            "per_prefill_token_s": prefill_source,
            "prefill_base_s": prefill_source if measured else "not measured: base_s",
            **limit_sources,
        },
    )


def engine_limits(
    result: Mapping[str, Any], prefill_budget: int, budget_source: str
) -> tuple[dict[str, Any], dict[str, str]]:
    """The profile fields a speed run does not fit (KV pool, prefill budget, max running,
    request overhead) and where each comes from, the machine included."""
    machine = result.get("machine", {})
    limits = {
        "kv_tokens": 65536,
        "prefill_budget": prefill_budget,
        "max_running": 4096,
        "request_overhead_s": 0.0,
    }
    sources = {
        "kv_tokens": "the project's CPU worker default (--max-total-tokens 65536)",
        "prefill_budget": budget_source,
        "max_running": "not binding at these loads (SGLang sizes it from the KV pool)",
        "request_overhead_s": "0 until calibrated against real runs (sim validation)",
        "machine": f"{machine.get('cpu')}, device {result.get('device')}",
    }
    return limits, sources


def fit_profile_from_steps(
    result: Mapping[str, Any], traces: Sequence[Path], source: str
) -> Profile:
    """The simulator profile of step traces (`sim.steps.fit_steps` over all their steps);
    `result` gives the machine, model and the worker's chunked prefill size where it was
    measured ({}: "cpu-worker", 2048). ValueError for a trace that cannot be read or that
    lacks decode or prefill steps."""
    fit = fit_steps([step for trace in traces for step in read_steps(trace)])
    budget = int(result.get("server", {}).get("chunked_prefill_size") or 2048)
    names = ", ".join(str(t) for t in traces)
    how = (
        f"least squares over the {fit.decode_steps} decode and {fit.extend_steps} prefill steps "
        f"of the workers' own step traces {names} ({source}; dynasor_sgl.launch.steptrace, "
        "sim.steps.fit_steps): a step from its scheduling to the next step's"
    )
    coefficients = fit.coefficients()
    budget_source = (
        "the worker's chunked prefill size (SGLang's /get_server_info)"
        if "server" in result
        else "SGLang's chunked prefill size on the CPU worker (2048; its logged server args)"
    )
    limits, limit_sources = engine_limits(result, budget, budget_source)
    fields: dict[str, Any] = {**limits, **coefficients}
    return Profile(
        name=f"cpu-{result.get('model', 'worker').lower()}",
        **fields,
        source={**{name: how for name in coefficients}, **limit_sources},
    )


def step_summary(profile: Profile) -> str:
    """A profile's step model in words: "decode step = 49.1 ms + 4.19 ms/request; prefill
    step = ..." (a prefill step's fixed cost is base_s where it has none of its own)."""
    prefill_base = profile.base_s if profile.prefill_base_s is None else profile.prefill_base_s
    return (
        f"decode step = {profile.base_s * 1e3:.1f} ms + {profile.per_request_s * 1e3:.2f} "
        f"ms/request; prefill step = {prefill_base * 1e3:.1f} ms + "
        f"{profile.per_new_request_s * 1e3:.2f} ms/request + "
        f"{profile.per_prefill_token_s * 1e6:.0f} us/token"
    )
