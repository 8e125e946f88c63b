"""Talking to the workers: forward a request, stream a response, abort by rid, fan out.

Owns the HTTP client session and the mapping of transport failures to router errors. It knows
nothing about programs or scheduling.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
import orjson
from yarl import URL

from dynasor_sgl.router.errors import ApiError
from dynasor_sgl.router.pool import Worker

logger = logging.getLogger(__name__)
T = TypeVar("T")

KEEPALIVE_S = 4.0  # below SGLang's 5 s server keep-alive
# An abort answers at once in a live worker; a hung one must not hold a stop, a trim or the
# end of a program for the request timeout (an hour by default).
ABORT_TIMEOUT_S = 5.0
# What a reused connection the server closed meanwhile raises before any reply. A dead worker
# raises these too; then the one retry fails at once (connection refused) and it is marked down.
STALE = (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)


def _stale(exc: BaseException) -> bool:
    """A closed reused connection, not a refused new one (a worker that is down)."""
    return not isinstance(exc, aiohttp.ClientConnectorError)


# Headers that describe one hop of the connection, not the payload.
_HOP_HEADERS = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-length",
    "server",
    "date",
    "content-encoding",
}


class WorkerFailed(Exception):
    """The worker could not be reached or broke the connection (it may be dead)."""

    def __init__(self, worker: Worker, message: str) -> None:
        super().__init__(message)
        self.worker = worker


@dataclass
class Reply:
    status: int
    body: bytes
    headers: dict[str, str]

    def json(self) -> Any:
        return orjson.loads(self.body)


@contextmanager
def _transport_failures(
    worker: Worker, passing: tuple[type[BaseException], ...] = ()
) -> Iterator[None]:
    """A transport failure or timeout under it becomes the worker's failure (`passing`: kinds
    the caller handles itself)."""
    try:
        yield
    except passing:
        raise
    except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
        raise WorkerFailed(worker, f"{type(exc).__name__}: {exc}") from exc
    except TimeoutError as exc:
        raise _timeout(worker) from exc


def _timeout(worker: Worker) -> ApiError:
    return ApiError(504, f"worker {worker.index} did not answer in time", "worker_timeout")


def _headers(resp: aiohttp.ClientResponse) -> dict[str, str]:
    return {k: v for k, v in resp.headers.items() if k.lower() not in _HOP_HEADERS}


async def _read_all(resp: aiohttp.ClientResponse) -> Reply:
    return Reply(resp.status, await resp.read(), _headers(resp))


class Forwarder:
    def __init__(self, timeout_s: float) -> None:
        self.timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=5)
        self.abort_timeout = aiohttp.ClientTimeout(total=min(timeout_s, ABORT_TIMEOUT_S))
        self._session: aiohttp.ClientSession | None = None
        self._urls: dict[tuple[str, str], URL] = {}

    def _url(self, worker: Worker, path: str) -> URL:
        """Parsed once per worker and path: yarl parsing is a visible share of a request."""
        key = (worker.url, path)
        url = self._urls.get(key)
        if url is None:
            url = self._urls[key] = URL(worker.url + path)
        return url

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            # SGLang's server closes an idle connection after 5 s (SGLANG_TIMEOUT_KEEP_ALIVE):
            # keep ours for less, so a pooled connection is not reused just as it closes.
            connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=KEEPALIVE_S)
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=self.timeout,
                auto_decompress=False,
                cookie_jar=aiohttp.DummyCookieJar(),  # workers set no cookies; skip the jar
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _retrying(self, worker: Worker, send: Callable[[], Awaitable[T]]) -> T:
        """Run `send` once, and once more if a pooled connection the server had just closed
        broke it before any reply (nothing was sent on yet); map transport failures."""
        for attempt in (1, 2):
            try:
                with _transport_failures(worker, passing=STALE):
                    return await send()
            except STALE as exc:
                if attempt == 1 and _stale(exc):
                    logger.info("worker %d: %s on a reused connection; retrying", worker.index, exc)
                    continue
                raise WorkerFailed(worker, f"{type(exc).__name__}: {exc}") from exc
        raise AssertionError("unreachable")

    async def request(
        self,
        worker: Worker,
        method: str,
        path: str,
        body: bytes | None = None,
        timeout: aiohttp.ClientTimeout | None = None,
    ) -> Reply:
        """One request and its whole reply (`timeout`: the session's, the request timeout,
        unless given)."""
        headers = {"Content-Type": "application/json"} if body is not None else {}

        async def once() -> Reply:
            async with self.session.request(
                method,
                self._url(worker, path),
                data=body,
                headers=headers,
                timeout=timeout or self.timeout,
            ) as resp:
                return Reply(resp.status, await resp.read(), _headers(resp))

        return await self._retrying(worker, once)

    async def open_stream(self, worker: Worker, path: str, body: bytes) -> aiohttp.ClientResponse:
        """Start a streaming request; the caller reads and releases the response (an error
        status comes back as it is: read it with `read_reply`)."""
        headers = {"Content-Type": "application/json"}
        return await self._retrying(
            worker, lambda: self.session.post(self._url(worker, path), data=body, headers=headers)
        )

    async def read_reply(self, worker: Worker, resp: aiohttp.ClientResponse) -> Reply:
        """The whole of a response opened by `open_stream`, released."""
        try:
            with _transport_failures(worker):
                return await _read_all(resp)
        finally:
            resp.release()

    @staticmethod
    async def iter_stream(worker: Worker, resp: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
        try:
            with _transport_failures(worker):
                async for chunk in resp.content.iter_any():
                    yield chunk
        finally:
            resp.release()

    async def abort(self, worker: Worker, rid: str) -> bool:
        try:
            body = orjson.dumps({"rid": rid})
            reply = await self.request(worker, "POST", "/abort_request", body, self.abort_timeout)
        except (WorkerFailed, ApiError) as exc:
            logger.warning("abort of %s on worker %d failed: %s", rid, worker.index, exc)
            return False
        return reply.status == 200

    async def fan_out(
        self,
        workers: list[Worker],
        method: str,
        path: str,
        body: bytes | None = None,
        timeout: aiohttp.ClientTimeout | None = None,
    ) -> list[Reply | BaseException]:
        coros = [self.request(w, method, path, body, timeout) for w in workers]
        return list(await asyncio.gather(*coros, return_exceptions=True))
