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
each. The step-time model fitted to the decode and prefill points (`sim.sweep.fit_profile`),
or with --step-trace to the worker's own steps (`sim.sweep.fit_profile_from_steps`), is
written as a simulator profile (--profile). `--fit-from FILE` fits a profile from an earlier
results file, `--fit-steps TRACE...` from step traces, without starting a worker.

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

import httpx

from dynasor_sgl.launch.cluster import run_cluster
from dynasor_sgl.launch.config import LaunchConfig
from dynasor_sgl.launch.interrupt import interrupt_on_terminate
from dynasor_sgl.launch.worker import free_ports
from dynasor_sgl.sim.profile import save_profile
from dynasor_sgl.sim.sweep import (
    KNEE_FRACTION,
    fit_profile,
    fit_profile_from_steps,
    knee,
    step_summary,
)

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


def server_info(url: str) -> dict:
    """The worker's chunked prefill size as SGLang reports it ({} if it does not say)."""
    try:
        info = httpx.get(f"{url}/get_server_info", timeout=10).json()
    except (httpx.HTTPError, ValueError):
        return {}
    size = info.get("chunked_prefill_size") if isinstance(info, dict) else None
    return {"chunked_prefill_size": size} if isinstance(size, int) else {}


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


def parse_args() -> argparse.Namespace:
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
    return ap.parse_args()


def refit(args: argparse.Namespace) -> bool:
    """--fit-steps or --fit-from: the profile fitted from files, no worker started (False:
    neither was asked for)."""
    if args.fit_steps is not None:
        profile = fit_profile_from_steps({}, args.fit_steps, "recorded elsewhere")
        save_profile(profile, args.profile)
        names = " ".join(map(str, args.fit_steps))
        print(f"fitted {profile.name} from {names}: {step_summary(profile)}")
        return True
    if args.fit_from is not None:
        profile = fit_profile(json.loads(args.fit_from.read_text()), str(args.fit_from))
        save_profile(profile, args.profile)
        print(
            f"fitted {profile.name} from {args.fit_from}: {profile.source['per_prefill_token_s']}"
        )
        return True
    return False


def main() -> None:
    args = parse_args()
    interrupt_on_terminate()  # `kill` stops the worker it started, not just this script
    if refit(args):
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
        f"requests ({KNEE_FRACTION:.0%} of the best); {step_summary(profile)}; wrote "
        f"{args.out} and {args.profile}"
    )


if __name__ == "__main__":
    main()
