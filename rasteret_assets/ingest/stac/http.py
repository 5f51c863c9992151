"""JSON over HTTP for STAC APIs and static catalogs, one request at a time, each retried alone.

A search of a month of Sentinel-2 is dozens of pages; a static catalog is hundreds of
documents. A 503 on page 37 must cost one more request for page 37, not a restart of the
search, so retries live here, per request, using the project's one
:class:`~rasteret_assets.storage.RetryPolicy` (transient classes back off with jitter and
honour ``Retry-After``). Permanent answers (400 for a filter the server rejects, 404 for a
missing child catalog) raise :class:`StacApiError` at once, with the server's own message.

Catalog documents come from outside just like asset hrefs, so every request and every
redirect hop is refused (``forbidden_url``, not retried) when it aims at a cloud-metadata or
link-local address, by name, by literal or by what the name resolves to.

A body that is not JSON (cut off, an HTML error page, invalid UTF-8, nested past the
parser's recursion limit) is a :class:`StacApiError` too, not retried: the server answered,
just badly. Every body is read against ``max_response_bytes`` (32 MiB by default, about ten
times a page of 100 Earth Search or Planetary Computer Sentinel-2/Landsat items, which weigh
25-37 KB each), so a runaway page costs at most that much memory and raises
:class:`ResponseTooLargeError` instead of exhausting the worker.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

import aiohttp

from rasteret_assets.storage import RetryPolicy, StorageError, redact_url, scrub_text
from rasteret_assets.storage.headers import parse_retry_after
from rasteret_assets.storage.policy import refused_host
from rasteret_assets.storage.resolver import PolicyResolver, classify_resolution_failure

logger = logging.getLogger(__name__)

#: Patient enough for a slow search page (CQL2 over millions of items), small enough that a
#: hung connection is noticed and retried.
DEFAULT_TIMEOUT = 60.0
DEFAULT_RETRY = RetryPolicy(max_attempts=5, base_delay=0.5, max_delay=30.0)
DEFAULT_MAX_RESPONSE_BYTES = 32 * 1024 * 1024
_READ_CHUNK = 64 * 1024
_DETAIL_CHARS = 400
_HEADERS = {"Accept": "application/geo+json, application/json"}


class StacApiError(RuntimeError):
    """A STAC request failed for good: a permanent status, non-JSON, or retries exhausted.

    ``status`` is the last HTTP status (``None`` for connection failures), ``attempts`` how
    many times the request was sent, ``url`` is redacted.
    """

    def __init__(
        self, message: str, *, url: str, status: int | None = None, attempts: int = 1
    ) -> None:
        self.url = redact_url(url)
        self.status = status
        self.attempts = attempts
        super().__init__(scrub_text(message))


class ResponseTooLargeError(StacApiError):
    """A response body exceeded the client's ``max_response_bytes``; reading stopped there."""


class JsonClient:
    """An aiohttp session that fetches JSON documents with per-request retries.

    Use as ``async with JsonClient() as client``; the session belongs to the running loop.
    ``request_count`` counts every HTTP request sent, retries included; no body larger than
    ``max_response_bytes`` is ever held.
    """

    def __init__(
        self,
        *,
        retry: RetryPolicy | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        headers: Mapping[str, str] | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        if max_response_bytes < 1:
            raise ValueError(f"max_response_bytes must be >= 1, got {max_response_bytes}")
        self.retry = retry or DEFAULT_RETRY
        self.timeout = timeout
        self.max_response_bytes = max_response_bytes
        self.headers = {**_HEADERS, **(headers or {})}
        self.request_count = 0
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> JsonClient:
        timeout = aiohttp.ClientTimeout(total=self.timeout, sock_connect=min(self.timeout, 10.0))
        # trust_env: catalogs are few requests, so honouring HTTPS_PROXY/NO_PROXY and ~/.netrc
        # (Earthdata-protected catalogs) costs nothing measurable here.
        self._session = aiohttp.ClientSession(
            timeout=timeout,
            headers=self.headers,
            trust_env=True,
            connector=aiohttp.TCPConnector(resolver=PolicyResolver()),
            middlewares=(_refuse_metadata_hosts,),
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def get(self, url: str, *, headers: Mapping[str, str] | None = None) -> Any:
        """GET ``url`` and decode its JSON body."""
        return await self.request("GET", url, headers=headers)

    async def post(
        self, url: str, body: Mapping[str, Any], *, headers: Mapping[str, str] | None = None
    ) -> Any:
        """POST ``body`` as JSON to ``url`` and decode the JSON answer."""
        return await self.request("POST", url, body=body, headers=headers)

    async def request(
        self,
        method: str,
        url: str,
        *,
        body: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """Send one request, retrying transient failures of this request only."""
        if self._session is None:
            raise RuntimeError("JsonClient used outside 'async with'")
        session = self._session

        async def attempt() -> Any:
            self.request_count += 1
            try:
                async with session.request(
                    method, url, json=body, headers=dict(headers or {})
                ) as resp:
                    raw = await self._read_bounded(resp, method, url)
                    _raise_for_status(resp.status, resp.headers, raw, method, url)
                    status = resp.status
            except (StorageError, StacApiError):
                raise
            except TimeoutError as exc:
                raise StorageError("timeout", url, f"{method}: {type(exc).__name__}") from None
            except aiohttp.ClientPayloadError as exc:
                raise StorageError("truncated", url, f"{method}: {exc}") from None
            except aiohttp.ClientConnectorDNSError as exc:
                error_class, reason = classify_resolution_failure(exc.host, exc.os_error)
                raise StorageError(error_class, url, f"{method}: {reason}") from None
            except aiohttp.ClientError as exc:
                # Refused, reset, DNS: the server side, maybe briefly.
                raise StorageError(
                    "server_error", url, f"{method}: {type(exc).__name__}: {exc}"
                ) from None
            return _decode(raw, method, url, status)

        try:
            document, _ = await self.retry.call(attempt, url=url)
        except StorageError as exc:
            raise StacApiError(
                f"{method} {exc.url} failed after {exc.attempts} attempt(s): {exc}",
                url=url,
                status=exc.status,
                attempts=exc.attempts or 1,
            ) from exc
        return document

    async def _read_bounded(self, resp: aiohttp.ClientResponse, method: str, url: str) -> bytes:
        """The body, or :class:`ResponseTooLargeError` as soon as it passes the limit
        (before reading anything when ``Content-Length`` already says so)."""
        limit = self.max_response_bytes
        announced = resp.content_length
        if announced is not None and announced > limit:
            raise _too_large(method, url, resp.status, limit, f"announces {announced} bytes")
        chunks: list[bytes] = []
        size = 0
        async for chunk in resp.content.iter_chunked(_READ_CHUNK):
            size += len(chunk)
            if size > limit:
                raise _too_large(method, url, resp.status, limit, "kept sending")
            chunks.append(chunk)
        return b"".join(chunks)


async def _refuse_metadata_hosts(
    request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
) -> aiohttp.ClientResponse:
    """Client middleware: runs for the first request and again for every redirect hop."""
    reason = refused_host(request.url.host or "")
    if reason is not None:
        raise StorageError("forbidden_url", str(request.url), reason)
    return await handler(request)


def _too_large(method: str, url: str, status: int, limit: int, what: str) -> StacApiError:
    return ResponseTooLargeError(
        f"{method} {redact_url(url)} {what}: the response is larger than {limit} bytes "
        "(max_response_bytes); a smaller page_size, or a larger max_response_bytes if the "
        "catalog's documents really are this big",
        url=url,
        status=status,
    )


def _decode(raw: bytes, method: str, url: str, status: int) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        problem = f"a body that is not JSON: {_snippet(raw)!r}"
    except RecursionError:
        problem = "JSON nested too deeply to decode"
    raise StacApiError(
        f"{method} {redact_url(url)} answered {status} with {problem}", url=url, status=status
    )


def _raise_for_status(
    status: int, headers: Mapping[str, str], raw: bytes, method: str, url: str
) -> None:
    """Transient statuses become :class:`StorageError` (retried); others :class:`StacApiError`."""
    if 200 <= status < 300:
        return
    detail = f"{method}: HTTP {status}: {_snippet(raw)}"
    if status in (429, 503):
        retry_after = parse_retry_after(headers.get("Retry-After"))
        raise StorageError("throttled", url, detail, retry_after=retry_after, status=status)
    if status in (408, 504):
        raise StorageError("timeout", url, detail, status=status)
    if status >= 500:
        raise StorageError("server_error", url, detail, status=status)
    raise StacApiError(
        f"{method} {redact_url(url)} was refused with HTTP {status}: {_snippet(raw)}",
        url=url,
        status=status,
    )


def _snippet(raw: bytes) -> str:
    """The start of a response body, for error messages (servers explain 400s there)."""
    text = raw[:_DETAIL_CHARS].decode("utf-8", errors="replace").strip()
    return text + ("…" if len(raw) > _DETAIL_CHARS else "")
