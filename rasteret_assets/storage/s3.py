"""Range reads from ``s3://`` URLs through s3fs's async client.

s3fs supplies what is tedious to get right: credential resolution, anonymous (unsigned)
access, custom endpoints and region handling. Requests then go straight to the aiobotocore
client it creates, because the higher-level ``_cat_file`` discards the response metadata
(ETag, Content-Range total) the engine records from the same GET, and because s3fs and
botocore would otherwise each retry on top of the project's one ``RetryPolicy``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import s3fs
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    CredentialRetrievalError,
    EndpointConnectionError,
    IncompleteReadError,
    NoCredentialsError,
    ParamValidationError,
    PartialCredentialsError,
    ReadTimeoutError,
    ResponseStreamingError,
    SSLError,
)

from rasteret_assets.storage.base import ObjectInfo, RangeRead, check_range
from rasteret_assets.storage.coalesce import CoalescingRangeReads
from rasteret_assets.storage.errors import StorageError
from rasteret_assets.storage.headers import (
    parse_content_range,
    parse_retry_after,
    to_iso_timestamp,
)
from rasteret_assets.storage.options import StorageOptions
from rasteret_assets.storage.policy import refused_host
from rasteret_assets.storage.redact import redact_url
from rasteret_assets.storage.resolver import PolicyResolver, classify_resolution_failure

logger = logging.getLogger(__name__)

_NOT_FOUND_CODES = frozenset({"NoSuchKey", "NoSuchBucket", "NotFound", "NoSuchVersion", "404"})
_FORBIDDEN_CODES = frozenset(
    {
        "AccessDenied",
        "AllAccessDisabled",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "InvalidToken",
        "AccountProblem",
        "403",
    }
)
_THROTTLED_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "TooManyRequests",
        "RequestLimitExceeded",
        "ServiceUnavailable",
        "503",
    }
)
_CREDENTIAL_ERRORS = (NoCredentialsError, PartialCredentialsError, CredentialRetrievalError)
_TRUNCATION_ERRORS = (IncompleteReadError, ResponseStreamingError, aiohttp.ClientPayloadError)


class S3Backend(CoalescingRangeReads):
    """``StorageBackend`` for ``s3://bucket/key`` (and ``s3a://``) URLs.

    The s3fs filesystem and its client are created lazily in the running loop and recreated
    when used from another loop, like :class:`~rasteret_assets.storage.http.HttpBackend`.
    A query string or fragment on the URL is ignored (keys containing ``?`` or ``#`` are not
    supported): a presigned ``https`` URL rewritten onto ``s3://`` must not carry its
    signature into the object key.
    """

    def __init__(self, options: StorageOptions | None = None) -> None:
        self._options = options or StorageOptions()
        self._fs: s3fs.S3FileSystem | None = None
        self._client: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock: asyncio.Lock | None = None

    # -- client ------------------------------------------------------------------------

    async def filesystem(self) -> s3fs.S3FileSystem:
        """The ready-to-use async s3fs filesystem (for listings, or inspecting the client)."""
        await self._get_client("s3://")
        assert self._fs is not None
        return self._fs

    def _make_filesystem(self) -> s3fs.S3FileSystem:
        opts = self._options
        client_kwargs = {
            name: value
            for name, value in (("region_name", opts.region), ("endpoint_url", opts.endpoint_url))
            if value is not None
        }
        fs = s3fs.S3FileSystem(
            asynchronous=True,
            skip_instance_cache=True,  # fsspec caches instances; ours are per loop
            anon=bool(opts.anon),
            key=opts.key,
            secret=opts.secret,
            token=opts.token,
            requester_pays=opts.requester_pays,
            client_kwargs=client_kwargs,
            config_kwargs={
                "retries": {"total_max_attempts": 1, "mode": "standard"},
                "connect_timeout": opts.connect_timeout,
                "read_timeout": opts.read_timeout,
                "max_pool_connections": opts.max_connections,
                # Endpoints resolving to metadata addresses are refused like HTTP hosts.
                "connector_args": {"resolver": PolicyResolver()},
            },
        )
        fs.retries = 1  # s3fs's own retry loop; RetryPolicy decides instead
        return fs

    async def _get_client(self, url: str) -> Any:
        loop = asyncio.get_running_loop()
        if self._client is not None and self._loop is loop:
            return self._client
        if self._lock is None or self._loop is not loop:
            self._lock = asyncio.Lock()
            self._loop = loop
            self._client = None
        async with self._lock:
            if self._client is None:
                self._check_endpoint(url)
                fs = self._make_filesystem()
                try:
                    self._client = await fs.set_session()
                except (BotoCoreError, ValueError) as exc:
                    raise StorageError(
                        "unsupported", url, f"cannot create S3 client: {exc}"
                    ) from None
                self._fs = fs
        return self._client

    def _check_endpoint(self, url: str) -> None:
        """Refuse an endpoint on a metadata/link-local address, named or literal.

        Names are also checked when resolved; literal addresses never reach a resolver.
        """
        endpoint = self._options.endpoint_url
        if not endpoint:
            return
        reason = refused_host(urlsplit(endpoint).hostname or "")
        if reason is not None:
            raise StorageError("forbidden_url", url, f"{reason} (endpoint {endpoint})")

    async def close(self) -> None:
        """Close the aiobotocore client and its connection pool."""
        client, self._client, self._fs = self._client, None, None
        if client is not None and self._loop is asyncio.get_running_loop():
            await client.close()

    # -- reads -------------------------------------------------------------------------

    @property
    def coalesce_gap(self) -> int:
        return self._options.coalesce_gap

    async def get_range_with_info(self, url: str, start: int, length: int) -> RangeRead:
        """Ranged GET, reporting size/ETag/LastModified from the same response."""
        check_range(start, length)
        bucket, key = _split(url)
        if length == 0:
            return RangeRead(b"", ObjectInfo())
        client = await self._get_client(url)
        params = self._params(bucket, key)
        params["Range"] = f"bytes={start}-{start + length - 1}"
        logger.debug("S3 GET %s bytes=%d-%d", redact_url(url), start, start + length - 1)
        try:
            resp = await client.get_object(**params)
            return await self._read_body(resp, url, start, length)
        except ClientError as exc:
            if _is_invalid_range(exc):
                # Range starts at or past the end of the object: the file ends here.
                return RangeRead(b"", ObjectInfo(size=_actual_size(exc)))
            raise _translate(exc, url, self._endpoint) from None
        except StorageError:
            raise
        except (BotoCoreError, aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise _translate(exc, url, self._endpoint) from None

    async def head(self, url: str) -> ObjectInfo:
        """HEAD the object."""
        bucket, key = _split(url)
        client = await self._get_client(url)
        logger.debug("S3 HEAD %s", redact_url(url))
        try:
            resp = await client.head_object(**self._params(bucket, key))
        except (BotoCoreError, ClientError, aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise _translate(exc, url, self._endpoint) from None
        return ObjectInfo(
            size=resp.get("ContentLength"),
            etag=resp.get("ETag"),
            last_modified=to_iso_timestamp(resp.get("LastModified")),
        )

    @property
    def _endpoint(self) -> str:
        return self._options.endpoint_url or "AWS S3"

    def _params(self, bucket: str, key: str) -> dict[str, Any]:
        params: dict[str, Any] = {"Bucket": bucket, "Key": key}
        if self._options.requester_pays:
            params["RequestPayer"] = "requester"
        return params

    async def _read_body(
        self, resp: dict[str, Any], url: str, start: int, length: int
    ) -> RangeRead:
        body = resp["Body"]
        try:
            cr = parse_content_range(resp.get("ContentRange"))
            if cr is not None and cr.start is not None and cr.end is not None:
                if cr.start != start:
                    raise StorageError(
                        "server_error", url, f"asked for bytes from {start}, got {cr.start}"
                    )
                size = cr.total
                expected = min(cr.end - cr.start + 1, length)
                data = await _read_at_most(body, expected)
                skip = 0
            else:
                # An S3-compatible server that ignored Range: read no further than needed.
                size = resp.get("ContentLength")
                expected = start + length if size is None else min(start + length, size)
                if expected > self._options.ignored_range_cap:
                    raise StorageError(
                        "unsupported", url, "server ignores Range requests; object too large"
                    )
                data = await _read_at_most(body, expected)
                skip = start
            if len(data) < expected:
                raise StorageError(
                    "truncated", url, f"got {len(data)} of {expected} announced bytes"
                )
        finally:
            body.close()
        info = ObjectInfo(
            size=size,
            etag=resp.get("ETag"),
            last_modified=to_iso_timestamp(resp.get("LastModified")),
        )
        return RangeRead(data[skip : skip + length], info)


async def _read_at_most(body: Any, limit: int) -> bytes:
    chunks: list[bytes] = []
    received = 0
    while received < limit:
        chunk = await body.read(limit - received)
        if not chunk:
            break
        chunks.append(chunk)
        received += len(chunk)
    return b"".join(chunks)


def _dns_failure(exc: BaseException) -> aiohttp.ClientConnectorDNSError | None:
    """The aiohttp resolution failure behind a botocore error, if that is what it was.

    botocore re-raises connection errors as its own types, leaving aiohttp's in the chain.
    """
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return None
        if isinstance(seen, aiohttp.ClientConnectorDNSError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _split(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    bucket, key = parts.netloc, parts.path.lstrip("/")
    if parts.scheme not in ("s3", "s3a") or not bucket or not key:
        raise StorageError("unsupported", url, "not an s3://bucket/key URL")
    return bucket, key


def _error_fields(exc: ClientError) -> tuple[str, int | None, dict[str, str]]:
    response = exc.response or {}
    code = str(response.get("Error", {}).get("Code", ""))
    meta = response.get("ResponseMetadata", {})
    return code, meta.get("HTTPStatusCode"), meta.get("HTTPHeaders", {}) or {}


def _is_invalid_range(exc: ClientError) -> bool:
    code, status, _ = _error_fields(exc)
    return code == "InvalidRange" or status == 416


def _actual_size(exc: ClientError) -> int | None:
    # AWS includes <ActualObjectSize> in InvalidRange errors; other servers may not.
    value = (exc.response or {}).get("Error", {}).get("ActualObjectSize")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _translate(exc: BaseException, url: str, endpoint: str) -> StorageError:
    """Map botocore/aiohttp failures onto error classes (``from None``: texts may hold URLs).

    Connection-level failures name the endpoint: with a custom ``endpoint_url`` they are
    almost always configuration mistakes (http/https swapped, wrong port, a typo'd host).
    """
    if isinstance(exc, ClientError):
        code, status, headers = _error_fields(exc)
        message = str((exc.response or {}).get("Error", {}).get("Message", ""))
        detail = f"{code or status}: {message}".rstrip(": ")
        if code in _NOT_FOUND_CODES or status == 404:
            return StorageError("not_found", url, detail, status=status)
        if code in _FORBIDDEN_CODES or status in (401, 403):
            return StorageError("forbidden", url, detail, status=status)
        if code in _THROTTLED_CODES or status in (429, 503):
            retry_after = parse_retry_after(headers.get("retry-after"))
            return StorageError("throttled", url, detail, retry_after=retry_after, status=status)
        if code == "RequestTimeout" or status == 408:
            return StorageError("timeout", url, detail, status=status)
        if status is not None and status >= 500:
            return StorageError("server_error", url, detail, status=status)
        return StorageError("unsupported", url, detail, status=status)
    detail = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, SSLError | aiohttp.ClientSSLError):
        # Fails identically on every retry: e.g. https:// to an endpoint that speaks plain HTTP.
        return StorageError(
            "unsupported",
            url,
            f"TLS failed with endpoint {endpoint} (does it speak HTTPS on this port?) {detail}",
        )
    dns = _dns_failure(exc)
    if dns is not None:
        error_class, reason = classify_resolution_failure(dns.host, dns.os_error)
        return StorageError(error_class, url, f"{reason} (endpoint {endpoint})")
    if isinstance(exc, ConnectionClosedError):
        return StorageError(
            "server_error",
            url,
            f"{detail} (endpoint {endpoint}; an http:// endpoint_url aimed at a TLS-only port "
            "is closed like this too)",
        )
    if isinstance(exc, EndpointConnectionError):
        return StorageError("server_error", url, f"{detail} (endpoint {endpoint})")
    if isinstance(exc, ReadTimeoutError | ConnectTimeoutError | TimeoutError):
        return StorageError("timeout", url, detail)
    if isinstance(exc, _CREDENTIAL_ERRORS):
        return StorageError("forbidden", url, detail)
    if isinstance(exc, _TRUNCATION_ERRORS):
        return StorageError("truncated", url, detail)
    if isinstance(exc, ParamValidationError):
        return StorageError("unsupported", url, detail)
    return StorageError("server_error", url, detail)
