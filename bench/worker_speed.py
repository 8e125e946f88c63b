"""Worker start-up time and decode throughput of the real SGLang CPU worker (for the record).

Starts one worker on the embedded model with the project's own launch code, then, after a
warm-up, sends batches of 1, 2, 4, ... 16 concurrent /generate requests of --new-tokens tokens
each (ignore_eos, so every request decodes exactly that many) and reports total decode tokens/s.
The *knee* is the smallest concurrency that reaches 90% of the best aggregate throughput: past
it more concurrent requests only share the same tokens/s, so that is where the router's
per-worker in-flight bound (`--max-inflight-per-worker`) should sit for its queue, not the
worker's batch, to hold the backlog. Writes bench/results/worker_speed.json and prints a
one-line summary.

For the simulator it also measures prefill: one request at a time of --prefill-sizes random
prompt tokens (`input_ids`, so nothing is cached) with max_new_tokens=1, i.e. one prefill step
each. A least-squares fit of step time = base + per_request·B + per_prefill_token·P over the
decode points (B = concurrency, step = wall / new tokens) and the prefill points (B = 0,
P = prompt tokens) is written as a simulator profile (--profile). `--fit-from FILE` fits a
profile from an earlier results file without starting a worker (no prefill points there: the
prefill cost is then a labelled guess).

    .venv/bin/python bench/worker_speed.py [--new-tokens 128] [--concurrency 1,2,4,6,8,12,16]
        [--prefill-sizes 64,256,1024] [--profile bench/profiles/cpu-smollm2-135m.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import random
import time
from pathlib import Path
from typing import Any

import httpx

from dynasor_sgl.cli.common import interrupt_on_terminate
from dynasor_sgl.launch.cluster import run_cluster
from dynasor_sgl.launch.config import LaunchConfig
from dynasor_sgl.launch.worker import free_ports
from dynasor_sgl.sim.profile import Profile, fit_split_step_model, fit_step_model, save_profile
from dynasor_sgl.sim.steps import fit_steps, read_steps

RESULTS = Path(__file__).parent / "results"
PROFILES = Path(__file__).parent / "profiles"
TOPICS = [
    "rivers",
    "bread",
    "comets",
    "chess",
    "owls",
    "glass",
    "tides",
    "violins",
    "maps",
    "bees",
    "copper",
    "clouds",
    "ferns",
    "trains",
    "salt",
    "lanterns",
]


async def _one(client: httpx.AsyncClient, url: str, i: int, new_tokens: int) -> int:
    body = {
        "text": f"Write a long story about {TOPICS[i % len(TOPICS)]} (variant {i}).",
        "sampling_params": {"max_new_tokens": new_tokens, "temperature": 0.7, "ignore_eos": True},
    }
    resp = await client.post(f"{url}/generate", json=body, timeout=600)
    resp.raise_for_status()
    return int(resp.json()["meta_info"]["completion_tokens"])


async def _batch(url: str, concurrency: int, new_tokens: int) -> dict[str, float]:
    async with httpx.AsyncClient() as client:
        t0 = time.perf_counter()
        counts = await asyncio.gather(
            *(_one(client, url, i, new_tokens) for i in range(concurrency))
        )
        wall = time.perf_counter() - t0
    total = sum(counts)
    return {
        "concurrency": concurrency,
        "completion_tokens": total,
        "wall_s": round(wall, 3),
        "tokens_per_s": round(total / wall, 2),
        "per_stream_tokens_per_s": round(total / wall / concurrency, 2),
    }


async def _prefill_one(url: str, size: int, seed: int) -> dict[str, float]:
    rng = random.Random(seed)
    body = {
        "input_ids": [rng.randrange(100, 40000) for _ in range(size)],
        "sampling_params": {"max_new_tokens": 1, "temperature": 0.0},
    }
    async with httpx.AsyncClient() as client:
        t0 = time.perf_counter()
        resp = await client.post(f"{url}/generate", json=body, timeout=600)
        wall = time.perf_counter() - t0
    resp.raise_for_status()
    meta = resp.json()["meta_info"]
    computed = int(meta["prompt_tokens"]) - int(meta.get("cached_tokens") or 0)
    return {"prompt_tokens": computed, "wall_s": round(wall, 4)}


def _prefill(url: str, sizes: list[int], repeats: int = 3) -> list[dict[str, float]]:
    """Each size `repeats` times, one request at a time; the fastest of each is kept."""
    out = []
    for size in sizes:
        runs = [asyncio.run(_prefill_one(url, size, 1000 * size + i)) for i in range(repeats)]
        out.append(min(runs, key=lambda r: r["wall_s"]))
    return out


def step_points(result: dict) -> list[tuple[int, int, float]]:
    """(decoding requests, prefill tokens, seconds per step) points of a results dict."""
    pts = [(int(r["concurrency"]), 0, r["wall_s"] / result["new_tokens"]) for r in result["runs"]]
    pts += [(0, int(r["prompt_tokens"]), r["wall_s"]) for r in result.get("prefill", [])]
    return pts


def fit_profile(result: dict, source: str) -> Profile:
    """The simulator profile of a results dict (see the module docstring)."""
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
    result: dict, prefill_budget: int, budget_source: str
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


def fit_profile_from_steps(result: dict, traces: list[Path], source: str) -> Profile:
    """The simulator profile of step traces (see the module docstring); `result` gives the
    machine, model and the worker's chunked prefill size where it was measured."""
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
    return Profile(
        name=f"cpu-{result.get('model', 'worker').lower()}",
        **limits,
        **coefficients,
        source={**{name: how for name in coefficients}, **limit_sources},
    )


def server_info(url: str) -> dict:
    """The worker's chunked prefill size as SGLang reports it ({} if it does not say)."""
    try:
        info = httpx.get(f"{url}/get_server_info", timeout=10).json()
    except (httpx.HTTPError, ValueError):
        return {}
    size = info.get("chunked_prefill_size") if isinstance(info, dict) else None
    return {"chunked_prefill_size": size} if isinstance(size, int) else {}


PREFILL_GUESS_S = 0.0002
KNEE_FRACTION = 0.9


def knee(runs: list[dict[str, float]], fraction: float = KNEE_FRACTION) -> int:
    """The smallest concurrency whose tokens/s reaches `fraction` of the best measured."""
    best = max(r["tokens_per_s"] for r in runs)
    return int(min(r["concurrency"] for r in runs if r["tokens_per_s"] >= fraction * best))


def measure(args: argparse.Namespace) -> dict:
    """Start a worker, measure decode at each concurrency and prefill at each size."""
    levels = [int(c) for c in args.concurrency.split(",")]
    sizes = [int(c) for c in args.prefill_sizes.split(",") if c.strip()]
    port = free_ports("127.0.0.1", 38500, 1)[0]
    trace = None
    if args.step_trace is not None:
        args.step_trace.parent.mkdir(parents=True, exist_ok=True)
        args.step_trace.unlink(missing_ok=True)
        trace = str(args.step_trace)
    t0 = time.perf_counter()
    with run_cluster(
        LaunchConfig(port=port, router=False, log_level="warning", step_trace=trace)
    ) as cluster:
        startup_s = time.perf_counter() - t0
        url = cluster.url
        server = server_info(url)
        asyncio.run(_batch(url, 1, 8))  # warm-up
        runs = [asyncio.run(_batch(url, c, args.new_tokens)) for c in levels]
        prefill = _prefill(url, sizes)

    result = {
        "bench": "worker_speed",
        "model": cluster.model_dir.name,
        "device": cluster.device,
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "python": platform.python_version(),
        },
        "new_tokens": args.new_tokens,
        "startup_s": round(startup_s, 2),
        "runs": runs,
        "knee": {"fraction": KNEE_FRACTION, "concurrency": knee(runs)},
        "prefill": prefill,
    }
    if server:
        result["server"] = server
    if trace is not None:
        result["step_trace"] = trace
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--concurrency", default="1,2,4,6,8,12,16")
    ap.add_argument("--out", type=Path, default=RESULTS / "worker_speed.json")
    ap.add_argument("--prefill-sizes", default="64,256,1024,2048")
    ap.add_argument("--profile", type=Path, default=PROFILES / "cpu-smollm2-135m.json")
    ap.add_argument("--fit-from", type=Path, help="fit --profile from this results file only")
    ap.add_argument(
        "--step-trace", type=Path, help="record the worker's steps here; fit --profile from them"
    )
    ap.add_argument(
        "--fit-steps", type=Path, nargs="+", help="fit --profile from these step traces only"
    )
    args = ap.parse_args()
    interrupt_on_terminate()  # `kill` stops the worker it started, not just this script
    if args.fit_steps is not None:
        profile = fit_profile_from_steps({}, args.fit_steps, "recorded elsewhere")
        save_profile(profile, args.profile)
        names = " ".join(map(str, args.fit_steps))
        print(f"fitted {profile.name} from {names}: {_step_summary(profile)}")
        return
    if args.fit_from is not None:
        profile = fit_profile(json.loads(args.fit_from.read_text()), str(args.fit_from))
        save_profile(profile, args.profile)
        print(
            f"fitted {profile.name} from {args.fit_from}: {profile.source['per_prefill_token_s']}"
        )
        return
    result = measure(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    if args.step_trace is not None:
        profile = fit_profile_from_steps(result, [args.step_trace], "measured by this script")
    else:
        profile = fit_profile(result, f"{args.out.name} (measured by this script)")
    save_profile(profile, args.profile)
    rates = ", ".join(f"{r['concurrency']}x: {r['tokens_per_s']} tok/s" for r in result["runs"])
    print(
        f"worker start-up {result['startup_s']:.1f} s; decode {rates}; knee at "
        f"{result['knee']['concurrency']} concurrent "
        f"requests ({KNEE_FRACTION:.0%} of the best); {_step_summary(profile)}; wrote "
        f"{args.out} and {args.profile}"
    )


def _step_summary(profile: Profile) -> str:
    prefill_base = profile.base_s if profile.prefill_base_s is None else profile.prefill_base_s
    return (
        f"decode step = {profile.base_s * 1e3:.1f} ms + {profile.per_request_s * 1e3:.2f} "
        f"ms/request; prefill step = {prefill_base * 1e3:.1f} ms + "
        f"{profile.per_new_request_s * 1e3:.2f} ms/request + "
        f"{profile.per_prefill_token_s * 1e6:.0f} us/token"
    )


if __name__ == "__main__":
    main()
