"""The /workers routes: the SGLang workers behind the router, listed, added and removed while
it runs.

The shapes follow the worker API of SGLang's model gateway (sgl-model-gateway, continued as
lightseekorg/smg: `docs/reference/api/extensions.md` and `docs/tasks/operations/workers.md`):
`GET /workers` lists `{"workers": [{"url", "healthy", "requests_active", ...}], "total",
"healthy"}`; `POST /workers` with `{"url": ...}` adds one; `GET`/`DELETE /workers/{id}` read and
remove one, where the id is the URL, URL-encoded, as in the gateway's
`/workers/http%3A%2F%2Fworker1%3A8000`, or the router's index of the worker (`DELETE
/workers?url=...` works too). The gateway's other fields (models, worker type, runtime,
priority) have no meaning here and are refused with 400, as every unknown key is.

Removing a worker drains it (`Admission.drain`): no new request goes there, its programs move
with their waiting requests and reservations, its requests in flight finish, then it is
forgotten. The answer is 202 while requests still run there, 200 once it is gone. Errors: 400
for a bad URL, 404 for an unknown worker, 409 for a duplicate, for the last worker, and for a
worker whose waiting requests no other healthy worker could take.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from dynasor_sgl.router.core import Router, parse_body
from dynasor_sgl.router.errors import bad_request, conflict, not_found
from dynasor_sgl.router.pool import Worker

logger = logging.getLogger(__name__)


def worker_json(worker: Worker) -> dict[str, Any]:
    return {
        "id": worker.index,
        "url": worker.url,
        "healthy": worker.healthy,
        "draining": worker.draining,
        "requests_active": worker.inflight,
        "requests_waiting": worker.queued,
        "programs": len(worker.programs),
    }


def check_url(url: Any) -> str:
    """The worker URL without a trailing slash; a 400 unless it is http(s)://host[:port][/path]."""
    if not isinstance(url, str) or not url:
        raise bad_request("url is required: the worker's base URL, e.g. http://host:30001", "url")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- raises ValueError for a bad port
    except ValueError as exc:
        raise bad_request(f"url {url!r} is not a valid URL: {exc}", "url") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise bad_request(f"url must be http(s)://host[:port], got {url!r}", "url")
    if parts.query or parts.fragment:
        raise bad_request(f"url must have no query or fragment, got {url!r}", "url")
    return url.rstrip("/")


def add_worker_routes(app: FastAPI, router: Router) -> None:
    pool = router.pool

    def lookup(worker_id: str) -> Worker:
        worker = pool.workers.get(int(worker_id)) if worker_id.isdigit() else pool.find(worker_id)
        if worker is None:
            raise not_found(f"no worker {worker_id!r} in the pool")
        return worker

    @app.get("/workers")
    async def list_workers() -> Response:
        workers = list(pool.workers)
        return JSONResponse(
            {
                "workers": [worker_json(w) for w in workers],
                "total": len(workers),
                "healthy": len(pool.healthy()),
            }
        )

    @app.get("/workers/{worker_id:path}")
    async def get_worker(worker_id: str) -> Response:
        return JSONResponse(worker_json(lookup(worker_id)))

    @app.post("/workers")
    async def add_worker(request: Request) -> Response:
        body = parse_body(await request.body())
        unknown = sorted(set(body) - {"url"})
        if unknown:
            raise bad_request(f"unknown field(s): {', '.join(unknown)}", unknown[0])
        url = check_url(body.get("url"))
        if pool.find(url) is not None:
            raise conflict(f"worker {url} is already in the pool")
        worker = router.admission.add_worker(url)
        logger.info("worker %d (%s) joined the pool", worker.index, worker.url)
        await pool.check(router.forwarder.session, worker)  # up at once if it answers
        return JSONResponse(worker_json(worker), 201)

    @app.delete("/workers")
    async def remove_by_query(url: str | None = None) -> Response:
        if url is None:
            raise bad_request("url is required: DELETE /workers?url=... or /workers/{id}", "url")
        return remove(lookup(url.rstrip("/")))

    @app.delete("/workers/{worker_id:path}")
    async def remove_worker(worker_id: str) -> Response:
        return remove(lookup(worker_id))

    def remove(worker: Worker) -> Response:
        if not worker.draining:
            others = [w for w in pool.live() if w is not worker]
            if not others:
                raise conflict(f"worker {worker.url} is the last worker; add another first")
            if worker.queued and not any(w.healthy for w in others):
                raise conflict(
                    f"worker {worker.url} has {worker.queued} waiting request(s) and no other "
                    "worker is up to take them"
                )
            router.admission.drain(worker)
        gone = worker.index not in pool.workers
        body = {**worker_json(worker), "status": "removed" if gone else "draining"}
        return JSONResponse(body, 200 if gone else 202)
