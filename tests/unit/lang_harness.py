"""The real router app served over real HTTP (uvicorn) in front of a fake SGLang worker.

For the `dynasor_sgl.lang` tests: the frontend talks to the router with its own synchronous
httpx clients from SGLang's executor threads, so the router must listen on a real socket.
Both servers run on one `LoopThread`; the router's socket is bound before uvicorn starts, so
there is no free-port race. `fake_worker_thread` is the fake worker alone, for tests that talk
to a worker directly.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import uvicorn
from fake_worker import FakeWorker, LoopThread

from dynasor_sgl.router.app import create_app
from dynasor_sgl.router.config import RouterConfig
from dynasor_sgl.router.core import Router


@dataclass
class Served:
    loop: LoopThread
    fake: FakeWorker
    router: Router
    url: str


@contextmanager
def fake_worker_thread(token_delay: float = 0.005) -> Iterator[FakeWorker]:
    """A fake worker served from its own event-loop thread, until the block ends."""
    loop = LoopThread()
    fake = FakeWorker(token_delay=token_delay)
    loop.run(fake.start())
    try:
        yield fake
    finally:
        loop.run(fake.stop())
        loop.close()


def _bound_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextmanager
def serve_router(token_delay: float = 0.005) -> Iterator[Served]:
    """A fake worker and the router app (lifespan on) in front of it, until the block ends."""
    loop = LoopThread()
    fake = FakeWorker(token_delay)
    sock = _bound_socket()
    port = sock.getsockname()[1]
    server: uvicorn.Server | None = None
    task: asyncio.Task[None] | None = None

    async def up() -> Router:
        nonlocal server, task
        await fake.start()
        app = create_app(RouterConfig(worker_urls=(fake.url,), port=port, health_interval_s=0.2))
        config = uvicorn.Config(app, log_level="warning", lifespan="on", access_log=False)
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:
            if task.done():
                task.result()  # raises why uvicorn did not start
                raise RuntimeError("uvicorn exited before it started")
            await asyncio.sleep(0.01)
        return app.app.state.router

    async def down() -> None:
        if server is not None and task is not None:
            server.should_exit = True
            await task
        await fake.stop()

    try:
        router = loop.run(up())
        yield Served(loop, fake, router, f"http://127.0.0.1:{port}")
    finally:
        loop.run(down())
        loop.close()
        sock.close()


@contextmanager
def refused_url() -> Iterator[str]:
    """A URL whose port is bound but not listening: connections are refused at once."""
    sock = _bound_socket()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()
