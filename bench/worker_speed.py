"""Worker start-up time and decode throughput of the real SGLang CPU worker (for the record).

Starts one worker on the embedded model with the project's own launch code, then, after a
warm-up, sends batches of 1, 2, 4, ... 16 concurrent /generate requests of --new-tokens tokens
each (ignore_eos, so every request decodes exactly that many) and reports total decode tokens/s.
The *knee* is the smallest concurrency that reaches 90% of the best aggregate throughput: past
it more concurrent requests only share the same tokens/s, so that is where the router's
per-worker in-flight bound (`--max-inflight-per-worker`) should sit for its queue, not the
worker's batch, to hold the backlog. Writes bench/results/worker_speed.json and prints a
one-line summary.

    .venv/bin/python bench/worker_speed.py [--new-tokens 128] [--concurrency 1,2,4,6,8,12,16]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import time
from pathlib import Path

import httpx

from dynasor_sgl.config import LaunchConfig
from dynasor_sgl.launch import run_cluster
from dynasor_sgl.worker import free_ports

RESULTS = Path(__file__).parent / "results"
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


KNEE_FRACTION = 0.9


def knee(runs: list[dict[str, float]], fraction: float = KNEE_FRACTION) -> int:
    """The smallest concurrency whose tokens/s reaches `fraction` of the best measured."""
    best = max(r["tokens_per_s"] for r in runs)
    return int(min(r["concurrency"] for r in runs if r["tokens_per_s"] >= fraction * best))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--concurrency", default="1,2,4,6,8,12,16")
    ap.add_argument("--out", type=Path, default=RESULTS / "worker_speed.json")
    args = ap.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]

    port = free_ports("127.0.0.1", 38500, 1)[0]
    t0 = time.perf_counter()
    with run_cluster(LaunchConfig(port=port, log_level="warning")) as cluster:
        startup_s = time.perf_counter() - t0
        url = cluster.url
        asyncio.run(_batch(url, 1, 8))  # warm-up
        runs = [asyncio.run(_batch(url, c, args.new_tokens)) for c in levels]

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
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    rates = ", ".join(f"{r['concurrency']}x: {r['tokens_per_s']} tok/s" for r in runs)
    print(
        f"worker start-up {startup_s:.1f} s; decode {rates}; knee at {knee(runs)} concurrent "
        f"requests ({KNEE_FRACTION:.0%} of the best); wrote {args.out}"
    )


if __name__ == "__main__":
    main()
