"""What reading a branch's confidence costs the router: SGLang's cumulative stream vs incremental.

Builds the native stream events a worker sends for one branch of n tokens with top-5 logprobs
(seeded values, serialized by orjson as SGLang's `dumps_json` does; the cumulative kind repeats
every position so far in each event, the incremental kind sends each once) and times
`router.watch.Watch` reading them as for a non-streaming client (`router_cpu_s`), and relaying
them in 64 KiB chunks to a streaming client that asked for no logprobs (`relay_cpu_s`: the
splitting into events and the cut-down copy each event becomes). Pure CPU, no worker: the
bytes are what a worker would send.

Writes bench/results/watch_cost.json and prints a one-line summary.

    .venv/bin/python bench/watch_cost.py [--tokens 500 1000 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from dynasor_sgl.policy.trimming import ConfidenceTrimmer
from dynasor_sgl.router.watch import Watch

RESULTS = Path(__file__).parent / "results"
TOPK = 5


def events(n: int, incremental: bool, rng: np.random.Generator) -> list[bytes]:
    tops: list[Any] = []
    out = []
    for k in range(n):
        tops.append([[float(-v), 1000 + j, None] for j, v in enumerate(rng.exponential(2, TOPK))])
        sent = tops[k:] if incremental else tops
        meta = {"completion_tokens": k + 1, "output_top_logprobs": sent, "finish_reason": None}
        text, ids = ("tok ", [k]) if incremental else ("tok " * (k + 1), list(range(k + 1)))
        event = {"text": text, "output_ids": ids, "meta_info": meta}
        out.append(b"data: " + orjson.dumps(event))
    return out


def read(stream: list[bytes]) -> float:
    watch = Watch(ConfidenceTrimmer(64, 10, 2), TOPK, False, False, 0)
    start = time.perf_counter()
    for raw in stream:
        watch._event(raw, lambda: None)
    return time.perf_counter() - start


def relay(stream: list[bytes], chunk: int = 65536) -> float:
    sse = b"".join(raw + b"\n\n" for raw in stream)
    watch = Watch(ConfidenceTrimmer(64, 10, 2), TOPK, True, False, 0)

    async def chunks() -> Any:
        for at in range(0, len(sse), chunk):
            yield sse[at : at + chunk]

    async def run() -> None:
        async for _ in watch.relay(chunks(), lambda: None):
            pass

    start = time.perf_counter()
    asyncio.run(run())
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, nargs="+", default=[500, 1000, 2000])
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    rows: list[dict[str, Any]] = []
    for n in args.tokens:
        for incremental in (False, True):
            stream = events(n, incremental, rng)
            read(stream[: min(50, n)])  # warm-up
            rows.append(
                {
                    "tokens": n,
                    "stream": "incremental" if incremental else "cumulative",
                    "mb_streamed": round(sum(map(len, stream)) / 1e6, 2),
                    "router_cpu_s": round(read(stream), 4),
                    "relay_cpu_s": round(relay(stream), 4),
                }
            )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "watch_cost.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(
        "; ".join(
            f"{r['tokens']} tokens {r['stream']}: {r['router_cpu_s']} s "
            f"(relayed {r['relay_cpu_s']} s), {r['mb_streamed']} MB"
            for r in rows
        )
    )


if __name__ == "__main__":
    main()
