"""The router's HTTP surface: SGLang's native API, the OpenAI routes, the program endpoints,
/metrics, and the /workers routes (from `worker_routes`). The POSTs that generate (native and
OpenAI) are served by `fastpath` in front.

`sgl.RuntimeEndpoint(router_url)` works unchanged, and so does
`sgl.RuntimeEndpoint(router_url + "/programs/<id>")`, which tags every request with the program
(branch from the `X-Dynasor-Branch` header, else "main"). A plain `/generate` whose `rid` is
`<program>::<branch>[::...]` is tagged too. Every error is JSON: `{"error": {"message", ...}}`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from dynasor_sgl.router.calibration import Calibration, add_calibration_routes
from dynasor_sgl.router.config import RouterConfig
from dynasor_sgl.router.core import Router, parse_body
from dynasor_sgl.router.errors import ApiError, bad_request, internal_error, unavailable
from dynasor_sgl.router.fastpath import GenerateFastPath
from dynasor_sgl.router.forward import Reply, WorkerFailed
from dynasor_sgl.router.middleware import Guard
from dynasor_sgl.router.program_api import add_program_routes
from dynasor_sgl.router.worker_routes import add_worker_routes

logger = logging.getLogger(__name__)
_READ_ONLY = ("/get_model_info", "/get_server_info", "/server_info", "/v1/models")


def _reply(reply: Reply) -> Response:
    return Response(reply.body, reply.status, headers=reply.headers)


def create_app(config: RouterConfig) -> Any:
    router = Router(config)
    calibration = Calibration(config, router)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await router.start()
        yield
        await router.close()
        await calibration.save()

    app = FastAPI(title="dynasor-sgl router", lifespan=lifespan)
    app.state.router = router
    app.state.calibration = calibration
    _add_error_handlers(app)

    _add_status_routes(app, router, calibration)
    _add_abort_routes(app, router)
    add_worker_routes(app, router)
    add_program_routes(app, router, calibration)
    add_calibration_routes(app, calibration)
    return Guard(GenerateFastPath(app, router), config.max_body_bytes, config.api_key)


def _add_status_routes(app: FastAPI, router: Router, calibration: Calibration) -> None:
    """Health, SGLang's read-only info routes (also under a program's path), /metrics."""

    @app.get("/health")
    async def health() -> Response:
        up = router.pool.available()
        if not up:
            raise ApiError(503, "no healthy SGLang worker", "worker_unavailable")
        return JSONResponse({"status": "ok", "healthy_workers": len(up)})

    @app.get("/health_generate")
    async def health_generate() -> Response:
        return _reply(
            await router.forwarder.request(router.any_worker(), "GET", "/health_generate")
        )

    async def read_only(request: Request) -> Response:
        path = request.url.path
        path = path[path.index("/", len("/programs/")) :] if path.startswith("/programs/") else path
        return _reply(await router.forwarder.request(router.any_worker(), "GET", path))

    for path in _READ_ONLY:
        app.add_api_route(path, read_only, methods=["GET"], include_in_schema=False)
        app.add_api_route(
            "/programs/{program_id}" + path, read_only, methods=["GET"], include_in_schema=False
        )

    @app.get("/metrics")
    async def metrics() -> Response:
        m = router.metrics
        m.programs_active.set(router.programs.active())
        m.queue_length.set(router.admission.queue_length())
        m.worker_inflight.clear()  # a worker that left has no series any more
        m.worker_healthy.clear()
        for w in router.pool.workers:
            m.worker_inflight.labels(str(w.index)).set(w.inflight)
            m.worker_healthy.labels(str(w.index)).set(int(w.healthy))
        calibration.export(m)
        return Response(m.render(), media_type="text/plain; version=0.0.4")


def _add_abort_routes(app: FastAPI, router: Router) -> None:
    """Aborts and cache flushes (the POSTs that generate go through `fastpath`)."""

    @app.post("/abort_request")
    async def abort_request(request: Request) -> Response:
        body = parse_body(await request.body())
        if "rid" not in body and not body.get("abort_all"):
            raise bad_request("rid or abort_all is required")
        replies = await router.abort_request(body)
        ok = sum(isinstance(r, Reply) and r.status == 200 for r in replies)
        return JSONResponse({"workers": len(replies), "ok": ok})

    @app.post("/flush_cache")
    async def flush_cache() -> Response:
        replies = await router.forwarder.fan_out(router.pool.healthy(), "POST", "/flush_cache")
        failed = [str(r) for r in replies if not (isinstance(r, Reply) and r.status == 200)]
        if failed or not replies:
            raise ApiError(502, f"flush failed on {len(failed)} worker(s)", "worker_error")
        return JSONResponse({"flushed": len(replies)})


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> Response:
        return JSONResponse(exc.body(), exc.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        msg = f"{where}: {first.get('msg', 'invalid request')}" if where else first.get("msg", "")
        return JSONResponse(bad_request(msg or "invalid request", where or None).body(), 400)

    @app.exception_handler(WorkerFailed)
    async def worker_failed(_: Request, exc: WorkerFailed) -> Response:
        """A worker that broke the connection of a route without retries (the read-only GETs,
        /health_generate): it is unavailable, not the router broken."""
        error = unavailable(f"worker {exc.worker.index} failed: {exc}")
        return JSONResponse(error.body(), error.status)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> Response:
        kind = "not_found" if exc.status_code == 404 else "http_error"
        return JSONResponse(
            ApiError(exc.status_code, str(exc.detail), kind).body(), exc.status_code
        )

    @app.exception_handler(Exception)
    async def crash(_: Request, exc: Exception) -> Response:
        logger.exception("unhandled error: %s", exc)
        return JSONResponse(internal_error(exc).body(), 500)
