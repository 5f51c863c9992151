"""A forwarding HTTP proxy on 127.0.0.1 that can fail chosen requests and logs every one.

It sits in front of a real server (``rustac serve``) so that tests see that server's real
answers — except for the requests told to fail, which get a real HTTP error status on the
wire. Absolute links in responses are rewritten from the upstream's address to the proxy's,
so a client following ``next`` links keeps going through the proxy.

Usage::

    proxy = StacProxy(upstream_url).start()
    proxy.fail(Failure(path="/search", nth=2, status=503))   # the 2nd POST /search, once
    ... search proxy.url ...
    proxy.requests("/search")  # [(method, path, json body, status sent), ...]
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from servers.loop_thread import LoopThread


@dataclass(frozen=True)
class Failure:
    """Answer the ``nth`` (1-based) request to ``path`` — and ``times - 1`` after it — with
    ``status`` instead of forwarding it."""

    path: str
    nth: int = 1
    status: int = 503
    times: int = 1
    method: str | None = None
    retry_after: str | None = None


@dataclass(frozen=True)
class LoggedRequest:
    method: str
    path: str
    body: Any
    status: int


class StacProxy:
    """Forward every request to ``upstream``; inject :class:`Failure`s; record traffic."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.port: int | None = None
        self._lock = threading.Lock()
        self._failures: list[Failure] = []
        self._counts: dict[tuple[str | None, str], int] = {}
        self._log: list[LoggedRequest] = []
        self._background = LoopThread("stac-proxy")
        self._runner: web.ServerRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> StacProxy:
        self._background.start(self._listen)
        return self

    async def _listen(self) -> None:
        self._session = aiohttp.ClientSession()
        server = web.Server(self._handle, access_log=None)
        self._runner = web.ServerRunner(server)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    def stop(self) -> None:
        async def shutdown() -> None:
            assert self._runner is not None and self._session is not None
            await self._runner.cleanup()
            await self._session.close()

        self._background.stop(shutdown)

    def fail(self, failure: Failure) -> None:
        with self._lock:
            self._failures.append(failure)

    def reset(self) -> None:
        with self._lock:
            self._failures.clear()
            self._counts.clear()
            self._log.clear()

    def requests(self, path: str | None = None) -> list[LoggedRequest]:
        with self._lock:
            return [r for r in self._log if path is None or r.path == path]

    def _failure_for(self, method: str, path: str) -> Failure | None:
        with self._lock:
            for failure in self._failures:
                if failure.path != path or (failure.method and failure.method != method):
                    continue
                key = (failure.method, path)
                self._counts[key] = count = self._counts.get(key, 0) + 1
                if failure.nth <= count < failure.nth + failure.times:
                    return failure
            return None

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        failure = self._failure_for(request.method, request.path)
        if failure is not None:
            self._record(request, body, failure.status)
            headers = {"Retry-After": failure.retry_after} if failure.retry_after else {}
            return web.Response(status=failure.status, text="injected failure", headers=headers)
        assert self._session is not None
        async with self._session.request(
            request.method,
            self.upstream + request.path_qs,
            data=raw or None,
            headers={k: v for k, v in request.headers.items() if k.lower() != "host"},
        ) as upstream:
            payload = await upstream.read()
            status = upstream.status
            content_type = upstream.headers.get("Content-Type", "application/json")
        payload = payload.replace(self.upstream.encode(), self.url.encode())
        self._record(request, body, status)
        return web.Response(status=status, body=payload, headers={"Content-Type": content_type})

    def _record(self, request: web.BaseRequest, body: Any, status: int) -> None:
        with self._lock:
            self._log.append(LoggedRequest(request.method, request.path, body, status))
