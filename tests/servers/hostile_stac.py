"""A small STAC API on 127.0.0.1 that serves whatever pages a test crafts.

rustac answers correctly, so the failures of real catalogs — a page cut off mid-JSON, a
``next`` link that leads back to an earlier page, the same items under ever new paging
tokens, a page of fifty megabytes, items without geometry — need a server that says exactly
what the test wants. Each path answers with one :class:`Page`:

* ``body``: a JSON value (encoded here), raw ``bytes`` (sent as they are, malformed or not),
  or a callable taking the request's query parameters and returning either;
* ``repeat``/``chunk``: a body streamed as ``chunk`` sent ``repeat`` times between
  ``prefix`` and ``suffix`` (a huge page without building it in memory), with or without a
  ``Content-Length``.

The landing page at ``/`` advertises ``/search`` (GET) and STAC API item search conformance;
``bytes_sent`` tells how much of each streamed page went out before the client hung up.

Usage::

    server = HostileStac().start()
    server.route("/search", Page(body={"type": "FeatureCollection", "features": [...]}))
    ... search server.url ...
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from servers.loop_thread import LoopThread

CONFORMS_TO = (
    "https://api.stacspec.org/v1.0.0/core",
    "https://api.stacspec.org/v1.0.0/item-search",
)

#: A JSON value, raw ``bytes``, or a callable of the query parameters returning either.
Body = Any


@dataclass(frozen=True)
class Page:
    """What one path answers (see the module docstring)."""

    body: Body = None
    status: int = 200
    content_type: str = "application/geo+json"
    prefix: bytes = b""
    chunk: bytes = b""
    repeat: int = 0
    suffix: bytes = b""
    announce_length: bool = True


class HostileStac:
    """An aiohttp server in a thread of its own; :meth:`route` sets what a path answers."""

    def __init__(self) -> None:
        self.port: int | None = None
        self.bytes_sent: dict[str, int] = {}
        self._routes: dict[str, Page] = {}
        self._hits: dict[str, int] = {}
        self._lock = threading.Lock()
        self._background = LoopThread("hostile-stac")
        self._runner: web.ServerRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def route(self, path: str, page: Page) -> str:
        """Serve ``page`` at ``path``; returns the absolute URL."""
        with self._lock:
            self._routes[path] = page
        return self.url + path

    def hits(self, path: str) -> int:
        with self._lock:
            return self._hits.get(path, 0)

    def reset(self) -> None:
        with self._lock:
            self._routes.clear()
            self._hits.clear()
            self.bytes_sent.clear()

    def start(self) -> HostileStac:
        self._background.start(self._listen)
        return self

    def stop(self) -> None:
        self._background.stop(self._shutdown)

    async def _shutdown(self) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    async def _listen(self) -> None:
        self._runner = web.ServerRunner(web.Server(self._handle), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    def _landing(self) -> dict[str, Any]:
        return {
            "type": "Catalog",
            "id": "hostile",
            "description": "crafted pages for tests",
            "stac_version": "1.0.0",
            "conformsTo": list(CONFORMS_TO),
            "links": [
                {"rel": "search", "href": f"{self.url}/search", "method": "GET"},
                {"rel": "self", "href": f"{self.url}/"},
            ],
        }

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        with self._lock:
            self._hits[request.path] = self._hits.get(request.path, 0) + 1
            page = self._routes.get(request.path)
        if page is None and request.path == "/":
            page = Page(body=self._landing(), content_type="application/json")
        if page is None:
            return web.Response(status=404, text=f"no route for {request.path}")
        if page.repeat:
            return await self._stream(request, page)
        body = page.body(dict(request.query)) if callable(page.body) else page.body
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        return web.Response(
            status=page.status, body=raw, headers={"Content-Type": page.content_type}
        )

    async def _stream(self, request: web.BaseRequest, page: Page) -> web.StreamResponse:
        response = web.StreamResponse(
            status=page.status, headers={"Content-Type": page.content_type}
        )
        if page.announce_length:
            response.content_length = (
                len(page.prefix) + len(page.chunk) * page.repeat + len(page.suffix)
            )
        await response.prepare(request)
        sent = 0
        try:
            for piece in (page.prefix, *([page.chunk] * page.repeat), page.suffix):
                await response.write(piece)
                sent += len(piece)
                with self._lock:
                    self.bytes_sent[request.path] = sent
            await response.write_eof()
        except ConnectionError:
            pass  # the client hung up: exactly what a size limit should do
        return response
