"""What the router adds to a /generate: latency (p50, p99) and the most requests/s it can pass.

Three paths to the same SGLang worker, measured in one run and interleaved so drift hits all
alike: the worker directly, our router, and sglang-router (the Rust router, PyPI
`sglang-router`) as the reference.

1. Latency on the real CPU worker: sequential 1-token /generate calls; added latency is the
   router's percentile minus the direct path's.
2. Capacity: closed-loop clients hammer each router in front of a stub worker that answers
   /generate instantly (a fixed small JSON), so the router itself is the bottleneck, not the
   CPU model. The stub is only a load sink here; nothing about correctness is claimed from it.

Writes bench/results/router_overhead.json and prints a one-line summary.

    .venv/bin/python bench/router_overhead.py [--requests 300] [--seconds 8] [--clients 32]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import httpx
from aiohttp import web

from dynasor_sgl.launch.cluster import run_cluster
from dynasor_sgl.launch.config import LaunchConfig
from dynasor_sgl.launch.interrupt import interrupt_on_terminate
from dynasor_sgl.launch.worker import free_ports

RESULTS = Path(__file__).parent / "results"
BODY = {"text": "Hello", "sampling_params": {"max_new_tokens": 1, "temperature": 0.0}}


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


@contextmanager
def _serve(cmd: list[str], url: str, log: Path) -> Any:
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{cmd[:4]} did not come up; see {log}")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def _routers(worker_url: str, log_dir: Path) -> dict[str, tuple[list[str], str]]:
    ours, rust = free_ports("127.0.0.1", 38700, 2)
    return {
        "dynasor-router": (
            [
                sys.executable,
                "-m",
                "dynasor_sgl.cli.main",
                "router",
                "--port",
                str(ours),
                "--worker-url",
                worker_url,
                "--log-level",
                "warning",
            ],
            f"http://127.0.0.1:{ours}",
        ),
        "sglang-router": (
            [
                sys.executable,
                "-m",
                "sglang_router.launch_router",
                "--port",
                str(rust),
                "--worker-urls",
                worker_url,
                "--policy",
                "round_robin",
                "--log-level",
                "warn",
                "--log-dir",
                str(log_dir),
            ],
            f"http://127.0.0.1:{rust}",
        ),
    }


def latency(urls: dict[str, str], n: int) -> dict[str, dict[str, float]]:
    samples: dict[str, list[float]] = {name: [] for name in urls}
    with httpx.Client(timeout=120) as client:
        for url in urls.values():  # warm-up: connections, caches
            for _ in range(5):
                client.post(f"{url}/generate", json=BODY).raise_for_status()
        for _ in range(n):
            for name, url in urls.items():
                t0 = time.perf_counter()
                client.post(f"{url}/generate", json=BODY).raise_for_status()
                samples[name].append((time.perf_counter() - t0) * 1000)
    base = samples["direct"]
    out = {}
    for name, xs in samples.items():
        out[name] = {"p50_ms": round(statistics.median(xs), 3), "p99_ms": round(_pct(xs, 0.99), 3)}
        if name != "direct":
            out[name]["added_p50_ms"] = round(statistics.median(xs) - statistics.median(base), 3)
            out[name]["added_p99_ms"] = round(_pct(xs, 0.99) - _pct(base, 0.99), 3)
    return out


async def _hammer(url: str, seconds: float, clients: int) -> float:
    """Closed loop: `clients` concurrent aiohttp clients for `seconds`; returns requests/s."""
    done = 0
    payload = json.dumps(BODY).encode()
    headers = {"Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as session:
        stop = time.perf_counter() + seconds

        async def loop() -> None:
            nonlocal done
            while time.perf_counter() < stop:
                async with session.post(f"{url}/generate", data=payload, headers=headers) as r:
                    await r.read()
                    r.raise_for_status()
                done += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(loop() for _ in range(clients)))
        return done / (time.perf_counter() - t0)


def _stub_worker(port: int) -> subprocess.Popen[bytes]:
    """A process answering /health and /generate instantly (a load sink, not a model)."""
    return subprocess.Popen([sys.executable, __file__, "--stub", str(port)])


def stub_main(port: int) -> None:
    meta = {
        "prompt_tokens": 1,
        "completion_tokens": 1,
        "cached_tokens": 0,
        "finish_reason": {"type": "length"},
    }
    reply = json.dumps({"text": "!", "meta_info": meta}).encode()

    async def generate(_: web.Request) -> web.Response:
        return web.Response(body=reply, content_type="application/json")

    async def ok(_: web.Request) -> web.Response:
        return web.json_response({"model_path": "stub", "is_generation": True})

    app = web.Application()
    app.router.add_post("/generate", generate)
    for path in ("/health", "/get_model_info", "/get_server_info", "/health_generate"):
        app.router.add_get(path, ok)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def on_stub(log_dir: Path, requests: int, seconds: float, clients: int) -> dict[str, Any]:
    """Latency and capacity in front of the stub worker: the router is all that is measured."""
    port = free_ports("127.0.0.1", 38800, 1)[0]
    stub = _stub_worker(port)
    stub_url = f"http://127.0.0.1:{port}"
    try:
        cap = {"direct": round(asyncio.run(_wait_then_hammer(stub_url, seconds, clients)), 1)}
        routers = _routers(stub_url, log_dir)
        (ours_cmd, ours), (rust_cmd, rust) = routers["dynasor-router"], routers["sglang-router"]
        with (
            _serve(ours_cmd, ours, log_dir / "dynasor-stub.log"),
            _serve(rust_cmd, rust, log_dir / "sglang-router-stub.log"),
        ):
            lat = latency(
                {"direct": stub_url, "dynasor-router": ours, "sglang-router": rust}, requests
            )
            cap["dynasor-router"] = round(asyncio.run(_hammer(ours, seconds, clients)), 1)
            cap["sglang-router"] = round(asyncio.run(_hammer(rust, seconds, clients)), 1)
        return {"latency": lat, "capacity_req_per_s": cap}
    finally:
        stub.terminate()
        stub.wait(timeout=10)


async def _wait_then_hammer(url: str, seconds: float, clients: int) -> float:
    for _ in range(100):
        try:
            async with httpx.AsyncClient() as c:
                if (await c.get(f"{url}/health")).status_code == 200:
                    break
        except httpx.HTTPError:
            await asyncio.sleep(0.1)
    return await _hammer(url, seconds, clients)


def _args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=300, help="sequential requests per path")
    ap.add_argument("--seconds", type=float, default=8.0, help="capacity run per router")
    ap.add_argument("--clients", type=int, default=32, help="concurrent clients for capacity")
    ap.add_argument("--out", type=Path, default=RESULTS / "router_overhead.json")
    ap.add_argument("--stub", type=int, help=argparse.SUPPRESS)  # internal: run the stub worker
    return ap.parse_args()


def main() -> None:
    args = _args()
    if args.stub:
        stub_main(args.stub)
        return
    interrupt_on_terminate()  # `kill` stops the worker it started, not just this script
    args.out.parent.mkdir(parents=True, exist_ok=True)
    log_dir = args.out.parent / "router_overhead_logs"
    log_dir.mkdir(exist_ok=True)

    port = free_ports("127.0.0.1", 38600, 1)[0]
    with run_cluster(LaunchConfig(port=port, router=False, log_level="warning")) as cluster:
        worker = cluster.url
        routers = _routers(worker, log_dir)
        (ours_cmd, ours), (rust_cmd, rust) = routers["dynasor-router"], routers["sglang-router"]
        with (
            _serve(ours_cmd, ours, log_dir / "dynasor.log"),
            _serve(rust_cmd, rust, log_dir / "sglang-router.log"),
        ):
            lat = latency(
                {"direct": worker, "dynasor-router": ours, "sglang-router": rust}, args.requests
            )
    stub = on_stub(log_dir, args.requests, args.seconds, args.clients)
    result = {
        "bench": "router_overhead",
        "requests_per_path": args.requests,
        "clients": args.clients,
        "real_worker_latency": lat,
        "stub_worker": stub,
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(_one_line(result) + f"; wrote {args.out}")


def _one_line(result: dict[str, Any]) -> str:
    stub, lat = result["stub_worker"], result["real_worker_latency"]
    d, r = stub["latency"]["dynasor-router"], stub["latency"]["sglang-router"]
    cap = stub["capacity_req_per_s"]
    real = {k: lat[k]["added_p50_ms"] for k in ("dynasor-router", "sglang-router")}
    return (
        f"added p50/p99 on a stub worker: dynasor {d['added_p50_ms']}/{d['added_p99_ms']} ms, "
        f"sglang-router {r['added_p50_ms']}/{r['added_p99_ms']} ms; added p50 on the real "
        f"worker: {real}; max req/s: dynasor {cap['dynasor-router']}, "
        f"sglang-router {cap['sglang-router']}, direct {cap['direct']}"
    )


if __name__ == "__main__":
    main()
