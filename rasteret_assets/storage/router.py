"""One backend for mixed URLs.

Catalogs mix local paths, public HTTPS and ``s3://`` hrefs (sometimes within one item). The
router checks each URL against the URL policy, picks the backend by scheme, creates each
backend on first use from a single :class:`StorageOptions` and signs HTTP(S) requests when the
options name a URL signer, so callers configure storage in one place.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from rasteret_assets.storage.base import ObjectInfo, RangeRead, StorageBackend, read_range_with_info
from rasteret_assets.storage.errors import StorageError
from rasteret_assets.storage.http import HttpBackend
from rasteret_assets.storage.local import LocalBackend
from rasteret_assets.storage.options import StorageOptions
from rasteret_assets.storage.redact import redact_url
from rasteret_assets.storage.s3 import S3Backend
from rasteret_assets.storage.signing import UrlSigner, signer_for

logger = logging.getLogger(__name__)

T = TypeVar("T")

_KIND_BY_SCHEME = {"http": "http", "https": "http", "s3": "s3", "s3a": "s3", "file": "local"}


def url_kind(url: str) -> str:
    """``"http"``, ``"s3"`` or ``"local"``; StorageError(unsupported) for other schemes."""
    if "://" not in url:
        return "local"  # plain absolute or relative path (``file:/x`` included below)
    scheme = url.split("://", 1)[0].lower()
    kind = _KIND_BY_SCHEME.get(scheme)
    if kind is None:
        raise StorageError("unsupported", url, f"no storage backend for scheme {scheme!r}")
    return kind


class StorageRouter:
    """``StorageBackend`` dispatching by URL scheme, the URL policy checked first.

    Backends may be injected (tests, custom auth); otherwise they are built lazily from
    ``options``. URLs arrive already rewritten: a source's ``url_rewrite_patterns`` are
    applied once, when its records are made, so the stored href is the URL read here.

    HTTP(S) requests go out signed by ``signer`` (default: the one ``options.url_signer``
    names); errors still carry the unsigned URL, redacted. A signed request refused with
    403 is signed afresh and sent once more: the token may have been revoked or the clocks
    disagree about its expiry.
    """

    def __init__(
        self,
        options: StorageOptions | None = None,
        *,
        http: StorageBackend | None = None,
        s3: StorageBackend | None = None,
        local: StorageBackend | None = None,
        signer: UrlSigner | None = None,
    ) -> None:
        self.options = options or StorageOptions()
        self.signer = signer if signer is not None else signer_for(self.options)
        self._factories: dict[str, Callable[[], StorageBackend]] = {
            "http": lambda: HttpBackend(self.options),
            "s3": lambda: S3Backend(self.options),
            "local": LocalBackend,
        }
        self._backends: dict[str, StorageBackend] = {
            kind: backend
            for kind, backend in (("http", http), ("s3", s3), ("local", local))
            if backend is not None
        }

    def resolve(self, url: str) -> tuple[str, StorageBackend]:
        """The URL requested (before signing) and the backend that serves it.

        Raises ``StorageError(unsupported)`` for schemes without a backend and
        ``StorageError(forbidden_url)`` for URLs the policy refuses.
        """
        kind = url_kind(url)
        self.options.url_policy.check(url)
        backend = self._backends.get(kind)
        if backend is None:
            backend = self._backends[kind] = self._factories[kind]()
        return url, backend

    async def _call(self, url: str, read: Callable[[StorageBackend, str], Awaitable[T]]) -> T:
        """``read(backend, url to request)`` on what :meth:`resolve` picks, signed when a
        signer applies."""
        target, backend = self.resolve(url)
        if self.signer is None or url_kind(target) != "http":
            return await read(backend, target)
        signed = await self.signer.sign(target)
        try:
            return await read(backend, signed)
        except StorageError as exc:
            if exc.error_class != "forbidden" or not self.signer.refused(target, signed):
                raise
        logger.debug("signed request refused for %s; signing it afresh", redact_url(target))
        return await read(backend, await self.signer.sign(target))

    async def get_range(self, url: str, start: int, length: int) -> bytes:
        """Read ``length`` bytes from ``start`` through the matching backend."""
        return await self._call(url, lambda b, u: b.get_range(u, start, length))

    async def get_ranges(self, url: str, ranges: list[tuple[int, int]]) -> list[bytes]:
        """Read several ranges of one object through the matching backend."""
        return await self._call(url, lambda b, u: b.get_ranges(u, ranges))

    async def get_range_with_info(self, url: str, start: int, length: int) -> RangeRead:
        """Read a range plus object identity from the same response when possible."""
        return await self._call(url, lambda b, u: read_range_with_info(b, u, start, length))

    async def head(self, url: str) -> ObjectInfo:
        """Object size/ETag through the matching backend."""
        return await self._call(url, lambda b, u: b.head(u))

    async def close(self) -> None:
        """Close every backend this router created or was given, and the signer."""
        closing = [backend.close() for backend in self._backends.values()]
        if self.signer is not None:
            closing.append(self.signer.close())
        await asyncio.gather(*closing)
