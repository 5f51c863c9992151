"""An HTTP range server on 127.0.0.1 for tests and benchmarks.

It runs aiohttp's low-level server on its own event loop in a background thread, so the
tests' own loops (pytest-asyncio, ``asyncio.run``) talk to it over real TCP exactly like to
a remote object store. It implements the parts of RFC 9110 range semantics COG readers rely
on (206 with ``Content-Range``, 416 past the end, ETag, Last-Modified, HEAD), counts requests,
bytes and TCP connections, and can be told to misbehave per path.

Usage::

    server.add_bytes("/a.tif", data)                      # or add_file / add_directory
    server.set_fault("/a.tif", Fault("503", times=2, retry_after=0))
    url = server.url("/a.tif")
    ...
    server.stats("/a.tif").requests, server.stats("/a.tif").bytes_served
    server.connections_accepted, server.max_open_connections

``RangeServer(ssl_context=self_signed_tls(tmp_dir)[0])`` serves HTTPS instead.
``server.gate = check`` runs ``check(request)`` before every answer; a response it returns is
sent instead (how the Planetary Computer blob store refuses unsigned requests).
"""

from __future__ import annotations

import asyncio
import datetime
import gzip
import ipaddress
import re
import socket
import ssl
import struct
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path

from aiohttp import ClientConnectionResetError, web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from servers.loop_thread import LoopThread

#: What a :class:`Fault` can do to a request.
FAULT_KINDS = frozenset(
    {
        "503",  # 503 SlowDown (+ Retry-After if given)
        "429",  # 429 Too Many Requests (+ Retry-After if given)
        "500",  # 500 InternalError
        "404",  # 404 NoSuchKey
        "403",  # 403 AccessDenied
        "reset",  # 206 headers, half the body, then a TCP reset (RST)
        "truncate",  # Content-Length announces the full slice, half is sent, then FIN
        "slow",  # wait ``delay`` seconds before the first byte
        "html",  # 200 text/html login page, Range ignored
        "ignore_range",  # 200 with the whole object, Range ignored
        "bad_range",  # 206 whose Content-Range starts one byte later than asked
        "content_range",  # 206 with the right bytes but ``content_range`` as the header
        "huge_body",  # 200, Range ignored, no Content-Length: the object, then endless filler
        "trickle",  # 206, the body sent one byte every ``delay`` seconds
        "redirect",  # 302 to ``location`` (absolute or relative)
        "redirect_loop",  # 302 back to the same path
        "gzip",  # 206 with a gzip-compressed body and Content-Encoding: gzip
        "short_200",  # 200, Range ignored, full Content-Length announced, half sent, then FIN
    }
)

_STATUS_FAULTS = {
    "503": (503, "SlowDown", "Please reduce your request rate."),
    "429": (429, "TooManyRequests", "Too many requests."),
    "500": (500, "InternalError", "We encountered an internal error."),
    "404": (404, "NoSuchKey", "The specified key does not exist."),
    "403": (403, "AccessDenied", "Access Denied"),
}

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")

HTML_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>Sign in</title></head>"
    b"<body><form action='/login'><input name='user'></form></body></html>\n"
)


@dataclass(frozen=True)
class Fault:
    """Misbehaviour for one path: ``kind`` (see ``FAULT_KINDS``) for the next ``times``
    requests (``None``: every request until cleared)."""

    kind: str
    times: int | None = None
    retry_after: float | str | None = None
    delay: float = 2.0  # "slow": before the first byte; "trickle": between bytes
    location: str | None = None  # "redirect": the Location header
    content_range: str | None = None  # "content_range": sent verbatim; None omits the header
    body_size: int = 1 << 30  # "huge_body": bytes sent in total unless the client hangs up

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; choose from {sorted(FAULT_KINDS)}")


@dataclass
class PathStats:
    """What the server saw for one path (a snapshot copy when read from the test thread)."""

    requests: int = 0
    bytes_served: int = 0
    methods: list[str] = field(default_factory=list)
    ranges: list[str | None] = field(default_factory=list)
    faults: list[str] = field(default_factory=list)


@dataclass
class _Blob:
    data: bytes
    etag: str
    last_modified: str


def _blob(data: bytes, mtime: float | None = None) -> _Blob:
    etag = f'"{len(data):x}-{zlib.crc32(data):08x}"'
    return _Blob(data, etag, formatdate(mtime if mtime is not None else time.time(), usegmt=True))


class _CountingServer(web.Server):
    """aiohttp's low-level server, reporting TCP connections opened and closed."""

    def __init__(self, owner: RangeServer, **kwargs: object) -> None:
        super().__init__(owner._handle, **kwargs)  # type: ignore[arg-type]
        self._owner = owner

    def connection_made(self, handler: web.RequestHandler, transport: asyncio.Transport) -> None:
        super().connection_made(handler, transport)
        self._owner._connection_opened()

    def connection_lost(
        self, handler: web.RequestHandler, exc: BaseException | None = None
    ) -> None:
        super().connection_lost(handler, exc)
        self._owner._connection_closed()


class RangeServer:
    """Serve registered bytes/files over HTTP with range support and injectable faults.

    Thread-safe: registration, faults and counters may be touched from the test thread while
    the server thread handles requests.
    """

    def __init__(self, host: str = "127.0.0.1", *, ssl_context: ssl.SSLContext | None = None):
        self.host = host
        self.ssl_context = ssl_context
        self.port: int | None = None
        #: Seconds added before answering every request (simulated network latency).
        self.latency = 0.0
        #: Checked before every answer; a response it returns is sent instead.
        self.gate: Callable[[web.BaseRequest], web.StreamResponse | None] | None = None
        self._lock = threading.Lock()
        self._blobs: dict[str, _Blob] = {}
        self._aliases: dict[str, str] = {}
        self._dirs: list[tuple[str, Path]] = []
        self._file_cache: dict[Path, tuple[tuple[int, int], _Blob]] = {}
        self._faults: dict[str, tuple[Fault, int | None]] = {}
        self._stats: dict[str, PathStats] = {}
        self.connections_accepted = 0
        self.max_open_connections = 0
        self._open_connections = 0
        self.max_in_flight = 0
        self._in_flight = 0
        self._background = LoopThread("range-server")
        self._server: _CountingServer | None = None
        self._tcp: asyncio.base_events.Server | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> RangeServer:
        """Start the server thread and wait until it listens."""
        self._background.start(self._listen)
        return self

    async def _listen(self) -> None:
        # access_log=None: the access log would print full request URLs (queries included)
        # into the very log records the redaction tests inspect.
        self._server = _CountingServer(self, access_log=None, handler_cancellation=True)
        loop = asyncio.get_running_loop()
        self._tcp = await loop.create_server(self._server, self.host, 0, ssl=self.ssl_context)
        self.port = self._tcp.sockets[0].getsockname()[1]

    def stop(self) -> None:
        """Close connections and stop the thread."""

        async def shutdown() -> None:
            assert self._tcp is not None and self._server is not None
            self._tcp.close()
            await self._server.shutdown(1.0)

        self._background.stop(shutdown)

    def __enter__(self) -> RangeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- registration ------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://{self.host}:{self.port}"

    def url(self, path: str) -> str:
        """Absolute URL of ``path`` on this server."""
        return self.base_url + _norm(path)

    def add_bytes(self, path: str, data: bytes, *, mtime: float | None = None) -> str:
        """Serve ``data`` at ``path``; returns its URL."""
        with self._lock:
            self._blobs[_norm(path)] = _blob(bytes(data), mtime)
        return self.url(path)

    def add_file(self, path: str, file: Path) -> str:
        """Serve a local file's current content at ``path``; returns its URL."""
        file = Path(file)
        return self.add_bytes(path, file.read_bytes(), mtime=file.stat().st_mtime)

    def add_directory(self, prefix: str, directory: Path) -> str:
        """Serve every file below ``directory`` under URL ``prefix`` (read on request)."""
        prefix = _norm(prefix).rstrip("/") + "/"
        with self._lock:
            self._dirs.append((prefix, Path(directory).resolve()))
        return self.url(prefix)

    def add_alias(self, path: str, target: str) -> str:
        """Serve the bytes registered at ``target`` at ``path`` too; returns its URL.

        The blob is shared, not copied, so a soak run can serve 100,000 URLs from a few
        dozen files. Faults and counters stay per path.
        """
        with self._lock:
            self._aliases[_norm(path)] = _norm(target)
        return self.url(path)

    def remove(self, path: str) -> None:
        with self._lock:
            self._blobs.pop(_norm(path), None)

    # -- faults ------------------------------------------------------------------------

    def set_fault(self, path: str, fault: Fault) -> None:
        """Make ``path`` misbehave (replaces any previous fault on it)."""
        with self._lock:
            self._faults[_norm(path)] = (fault, fault.times)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _take_fault(self, path: str) -> Fault | None:
        with self._lock:
            entry = self._faults.get(path)
            if entry is None:
                return None
            fault, remaining = entry
            if remaining is not None:
                if remaining <= 1:
                    del self._faults[path]
                else:
                    self._faults[path] = (fault, remaining - 1)
            return fault

    # -- counters ----------------------------------------------------------------------

    def stats(self, path: str) -> PathStats:
        """A copy of the counters for ``path`` (zeros if never requested)."""
        with self._lock:
            current = self._stats.get(_norm(path), PathStats())
            return PathStats(
                current.requests,
                current.bytes_served,
                list(current.methods),
                list(current.ranges),
                list(current.faults),
            )

    @property
    def total_requests(self) -> int:
        with self._lock:
            return sum(s.requests for s in self._stats.values())

    def reset(self) -> None:
        """Forget faults, counters, latency and gate (registrations stay)."""
        with self._lock:
            self._faults.clear()
            self._stats.clear()
            self.latency = 0.0
            self.gate = None
            self.connections_accepted = 0
            self.max_open_connections = self._open_connections
            self.max_in_flight = 0

    def _connection_opened(self) -> None:
        with self._lock:
            self.connections_accepted += 1
            self._open_connections += 1
            self.max_open_connections = max(self.max_open_connections, self._open_connections)

    def _connection_closed(self) -> None:
        with self._lock:
            self._open_connections -= 1

    def _count(self, path: str, nbytes: int) -> None:
        with self._lock:
            self._stats.setdefault(path, PathStats()).bytes_served += nbytes

    # -- request handling --------------------------------------------------------------

    def _lookup(self, path: str) -> _Blob | None:
        with self._lock:
            blob = self._blobs.get(self._aliases.get(path, path))
            dirs = list(self._dirs)
        if blob is not None:
            return blob
        for prefix, directory in dirs:
            if not path.startswith(prefix):
                continue
            candidate = (directory / path[len(prefix) :]).resolve()
            if candidate.is_relative_to(directory) and candidate.is_file():
                return self._read_cached(candidate)
        return None

    def _read_cached(self, file: Path) -> _Blob:
        # Benchmarks hit the same fixture thousands of times; re-read only if it changed.
        st = file.stat()
        version = (st.st_mtime_ns, st.st_size)
        with self._lock:
            cached = self._file_cache.get(file)
        if cached is not None and cached[0] == version:
            return cached[1]
        blob = _blob(file.read_bytes(), st.st_mtime)
        with self._lock:
            self._file_cache[file] = (version, blob)
        return blob

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        path = request.path
        fault = self._take_fault(path)
        with self._lock:
            stats = self._stats.setdefault(path, PathStats())
            stats.requests += 1
            stats.methods.append(request.method)
            stats.ranges.append(request.headers.get("Range"))
            if fault is not None:
                stats.faults.append(fault.kind)
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
        try:
            if self.latency:
                await asyncio.sleep(self.latency)
            refusal = self.gate(request) if self.gate is not None else None
            if refusal is not None:
                return refusal
            return await self._respond(request, path, fault)
        finally:
            with self._lock:
                self._in_flight -= 1

    async def _respond(
        self, request: web.BaseRequest, path: str, fault: Fault | None
    ) -> web.StreamResponse:
        if request.method not in ("GET", "HEAD"):
            return web.Response(status=405, headers={"Allow": "GET, HEAD"})
        kind = fault.kind if fault is not None else None
        if kind in _STATUS_FAULTS:
            assert fault is not None
            return self._error(path, *_STATUS_FAULTS[kind], retry_after=fault.retry_after)
        if kind == "slow":
            assert fault is not None
            await asyncio.sleep(fault.delay)
        if kind in ("redirect", "redirect_loop"):
            assert fault is not None
            location = path if kind == "redirect_loop" else fault.location
            return web.Response(status=302, headers={"Location": location or path})
        head = request.method == "HEAD"
        if kind == "html" and not head:
            self._count(path, len(HTML_PAGE))
            return web.Response(body=HTML_PAGE, content_type="text/html")
        blob = self._lookup(path)
        if blob is None:
            return self._error(path, *_STATUS_FAULTS["404"])
        size = len(blob.data)
        headers = {
            "ETag": blob.etag,
            "Last-Modified": blob.last_modified,
            "Accept-Ranges": "bytes",
            "Content-Type": "image/tiff",
        }
        ignores_range = kind in ("ignore_range", "huge_body", "short_200")
        wanted = None if ignores_range else _parse_range(request.headers.get("Range"))
        if head:
            headers["Content-Length"] = str(size)
            return web.Response(status=200, headers=headers)
        if kind == "huge_body":
            assert fault is not None
            return await self._stream_huge(request, path, headers, blob.data, fault.body_size)
        if kind == "short_200":
            return await self._break_midway(
                request, path, headers, blob.data, reset=False, status=200
            )
        if wanted is None:
            self._count(path, size)
            return web.Response(status=200, body=blob.data, headers=headers)
        first, last = wanted
        if first is None:  # suffix range: the last ``last`` bytes
            first, last = max(0, size - last), size - 1
            if size == 0 or wanted[1] == 0:
                return self._unsatisfiable(size, headers)
        if first >= size:
            return self._unsatisfiable(size, headers)
        last = size - 1 if last is None else min(last, size - 1)
        shift = 1 if kind == "bad_range" else 0
        body = blob.data[first + shift : last + 1]
        headers["Content-Range"] = f"bytes {first + shift}-{last}/{size}"
        if kind in ("reset", "truncate"):
            return await self._break_midway(request, path, headers, body, reset=kind == "reset")
        if kind == "trickle":
            assert fault is not None
            return await self._trickle(request, path, headers, body, fault.delay)
        if kind == "content_range":
            assert fault is not None
            del headers["Content-Range"]
            if fault.content_range is not None:
                headers["Content-Range"] = fault.content_range
        if kind == "gzip":
            body = gzip.compress(body)
            headers["Content-Encoding"] = "gzip"
        self._count(path, len(body))
        return web.Response(status=206, body=body, headers=headers)

    def _error(
        self,
        path: str,
        status: int,
        code: str,
        message: str,
        retry_after: float | str | None = None,
    ) -> web.Response:
        # S3-style XML so the same faults exercise botocore's error parsing.
        body = (
            f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
            f"<Message>{message}</Message><Resource>{path}</Resource></Error>"
        ).encode()
        headers = {}
        if retry_after is not None:
            headers["Retry-After"] = str(retry_after)
        return web.Response(
            status=status, body=body, headers=headers, content_type="application/xml"
        )

    @staticmethod
    def _unsatisfiable(size: int, headers: dict[str, str]) -> web.Response:
        headers = {**headers, "Content-Range": f"bytes */{size}"}
        return web.Response(status=416, headers=headers)

    async def _break_midway(
        self,
        request: web.BaseRequest,
        path: str,
        headers: dict[str, str],
        body: bytes,
        *,
        reset: bool,
        status: int = 206,
    ) -> web.StreamResponse:
        """Announce ``body`` in full, send half, then reset or close the connection."""
        resp = web.StreamResponse(status=status, headers=headers)
        resp.content_length = len(body)
        await resp.prepare(request)
        half = body[: len(body) // 2]
        await resp.write(half)
        self._count(path, len(half))
        transport = request.transport
        assert transport is not None
        # Give the client time to consume headers and the half body first, so the fault
        # reliably hits mid-body rather than racing the response headers.
        await asyncio.sleep(0.05)
        if reset:
            sock = transport.get_extra_info("socket")
            # SO_LINGER with a zero timeout turns close() into a TCP RST.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()
        else:
            # Close cleanly (FIN): the client sees fewer bytes than Content-Length promised.
            transport.close()
        return resp

    async def _stream_huge(
        self,
        request: web.BaseRequest,
        path: str,
        headers: dict[str, str],
        data: bytes,
        total: int,
    ) -> web.StreamResponse:
        """A 200 of ``total`` bytes (the object, then zeros), chunked, until the client leaves.

        No Content-Length, so the client cannot size the body up front; bytes are counted as
        they are written, which shows how far a client let the stream run.
        """
        resp = web.StreamResponse(status=200, headers=headers)
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        filler = bytes(64 * 1024)
        sent = 0
        try:
            while sent < total:
                chunk = data[sent : sent + len(filler)] if sent < len(data) else filler
                chunk = chunk[: total - sent]
                await resp.write(chunk)
                sent += len(chunk)
                self._count(path, len(chunk))
            await resp.write_eof()
        except (ClientConnectionResetError, ConnectionError):
            pass  # the client hung up: exactly what a bounded reader does
        return resp

    async def _trickle(
        self,
        request: web.BaseRequest,
        path: str,
        headers: dict[str, str],
        body: bytes,
        interval: float,
    ) -> web.StreamResponse:
        """A correct 206 whose body arrives one byte every ``interval`` seconds.

        Each byte resets a socket read timeout, so only a total deadline stops the client.
        """
        resp = web.StreamResponse(status=206, headers=headers)
        resp.content_length = len(body)
        await resp.prepare(request)
        try:
            for index in range(len(body)):
                await resp.write(body[index : index + 1])
                self._count(path, 1)
                await asyncio.sleep(interval)
            await resp.write_eof()
        except (ClientConnectionResetError, ConnectionError):
            pass
        return resp


def self_signed_tls(directory: Path) -> tuple[ssl.SSLContext, Path]:
    """A server TLS context for 127.0.0.1 with a fresh self-signed certificate.

    Returns the context and the certificate's PEM path (a client that should trust the
    server loads it as its CA file).
    """
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path = Path(directory) / "server-cert.pem"
    key_path = Path(directory) / "server-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)
    return context, cert_path


def _norm(path: str) -> str:
    return path if path.startswith("/") else "/" + path


def _parse_range(value: str | None) -> tuple[int | None, int | None] | None:
    """``(first, last)`` for one ``bytes=`` range; None to serve the whole object.

    Multi-range and malformed headers are ignored (a 200), as RFC 9110 allows.
    """
    if not value:
        return None
    match = _RANGE.match(value.strip())
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:
        return None, int(last)
    if last and int(last) < int(first):
        return None
    return int(first), int(last) if last else None
