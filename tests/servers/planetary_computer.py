"""Planetary Computer's SAS token endpoint, and the rule its blob storage enforces, on 127.0.0.1.

:class:`SasTokenServer` answers ``GET /api/sas/v1/token/{account}/{container}`` as PC does,
``{"msft:expiry": <RFC 3339>, "token": "st=…&se=…&sp=rl&sv=…&sr=c&sig=…"}``, with tokens that
live ``lifetime`` seconds. Its :meth:`~SasTokenServer.blob_gate`, set as a
:class:`~servers.range_server.RangeServer`'s ``gate``, makes that server a blob store serving
path-style URLs (``/{account}/{container}/{blob}``) that answers 403 AuthenticationFailed, as
Azure does, to any request without an unexpired, unrevoked token of that very container.

Usage::

    with SasTokenServer(lifetime=2.0) as pc:
        blobs.gate = pc.blob_gate
        ... pc.sas_url, pc.issued[("acct", "cont")], pc.refused, pc.accepted
"""

from __future__ import annotations

import asyncio
import base64
import re
import secrets
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlencode

from aiohttp import web

from servers.loop_thread import LoopThread

_TOKEN_PATH = re.compile(r"/api/sas/v1/token/([^/]+)/([^/]+)")
_AUTH_FAILED = (
    '<?xml version="1.0" encoding="utf-8"?><Error><Code>AuthenticationFailed</Code>'
    "<Message>Server failed to authenticate the request. {reason}</Message></Error>"
)


def _rfc3339(timestamp: float) -> str:
    # Microseconds, because the tests use tokens that live for a second or two.
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="microseconds")[:-6] + "Z"


@dataclass(frozen=True)
class _Issued:
    container: tuple[str, str]
    expiry: float


class SasTokenServer:
    """PC's token endpoint; thread-safe counters for the tests to read."""

    def __init__(self, *, lifetime: float = 3600.0) -> None:
        self.lifetime = lifetime
        #: When set, every token request is answered with this HTTP status instead.
        self.status: int | None = None
        #: Token requests per (account, container).
        self.issued: Counter[tuple[str, str]] = Counter()
        #: The ``Ocp-Apim-Subscription-Key`` of every token request (``None``: absent).
        self.subscription_keys: list[str | None] = []
        #: Why each refused blob request was refused.
        self.refused: list[str] = []
        self.accepted = 0
        self.port: int | None = None
        self._tokens: dict[str, _Issued] = {}
        self._signatures: list[str] = []
        self._lock = threading.Lock()
        self._background = LoopThread("sas-token-server")
        self._server: web.Server | None = None
        self._tcp: asyncio.base_events.Server | None = None

    def start(self) -> SasTokenServer:
        self._background.start(self._listen)
        return self

    async def _listen(self) -> None:
        self._server = web.Server(self._handle, access_log=None)
        self._tcp = await asyncio.get_running_loop().create_server(self._server, "127.0.0.1", 0)
        self.port = self._tcp.sockets[0].getsockname()[1]

    def stop(self) -> None:
        async def shutdown() -> None:
            assert self._tcp is not None and self._server is not None
            self._tcp.close()
            await self._server.shutdown(1.0)

        self._background.stop(shutdown)

    def __enter__(self) -> SasTokenServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def sas_url(self) -> str:
        """What ``pc_sas_url`` is set to (PC's ``https://…/api/sas/v1/token``)."""
        return f"http://127.0.0.1:{self.port}/api/sas/v1/token"

    @property
    def signatures(self) -> list[str]:
        """Every token signature issued (revoked ones included), to search stored output for."""
        with self._lock:
            return list(self._signatures)

    def revoke_all(self) -> None:
        """Invalidate every token issued so far (they are refused from now on)."""
        with self._lock:
            self._tokens.clear()

    # -- token endpoint ----------------------------------------------------------------

    async def _handle(self, request: web.BaseRequest) -> web.Response:
        match = _TOKEN_PATH.fullmatch(request.path)
        if request.method != "GET" or match is None:
            return web.json_response({"detail": "Not Found"}, status=404)
        account, container = match.groups()
        with self._lock:
            self.issued[(account, container)] += 1
            self.subscription_keys.append(request.headers.get("Ocp-Apim-Subscription-Key"))
            status = self.status
        if status is not None:
            return web.json_response(
                {"message": "refused"}, status=status, headers={"Retry-After": "0"}
            )
        now = time.time()
        expiry = now + self.lifetime
        sig = base64.b64encode(secrets.token_bytes(32)).decode()
        token = urlencode(
            [
                ("st", _rfc3339(now)),
                ("se", _rfc3339(expiry)),
                ("sp", "rl"),
                ("sv", "2024-05-04"),
                ("sr", "c"),
                ("sig", sig),
            ]
        )
        with self._lock:
            self._tokens[sig] = _Issued((account, container), expiry)
            self._signatures.append(sig)
        return web.json_response({"msft:expiry": _rfc3339(expiry), "token": token})

    # -- blob store rule ---------------------------------------------------------------

    def blob_gate(self, request: web.BaseRequest) -> web.Response | None:
        """``None`` for a request carrying a valid token of its container, else a 403."""
        segments = request.path.lstrip("/").split("/")
        container = tuple(segments[:2])
        sig = request.query.get("sig")
        with self._lock:
            issued = self._tokens.get(sig) if sig else None
            if sig is None:
                reason = "no signature"
            elif issued is None:
                reason = "unknown or revoked signature"
            elif issued.container != container:
                reason = "signature of another container"
            elif time.time() >= issued.expiry:
                reason = "signed expiry time has passed"
            else:
                self.accepted += 1
                return None
            self.refused.append(reason)
        return web.Response(
            status=403,
            body=_AUTH_FAILED.format(reason=reason).encode(),
            content_type="application/xml",
        )
