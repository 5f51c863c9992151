"""One backend for mixed URLs.

Catalogs mix local paths, public HTTPS and ``s3://`` hrefs (sometimes within one item). The
router rewrites each URL once, checks the result against the URL policy, picks the backend by
scheme and creates each backend on first use from a single :class:`StorageOptions`, so callers
configure storage in one place.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from rasteret_assets.storage.base import ObjectInfo, RangeRead, StorageBackend, read_range_with_info
from rasteret_assets.storage.errors import StorageError
from rasteret_assets.storage.http import HttpBackend
from rasteret_assets.storage.local import LocalBackend
from rasteret_assets.storage.options import StorageOptions
from rasteret_assets.storage.s3 import S3Backend

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
    """

    def __init__(
        self,
        options: StorageOptions | None = None,
        *,
        http: StorageBackend | None = None,
        s3: StorageBackend | None = None,
        local: StorageBackend | None = None,
    ) -> None:
        self.options = options or StorageOptions()
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
        """The URL actually requested and the backend that serves it.

        Raises ``StorageError(unsupported)`` for schemes without a backend and
        ``StorageError(forbidden_url)`` for URLs the policy refuses.
        """
        kind = url_kind(url)
        self.options.url_policy.check(url)
        backend = self._backends.get(kind)
        if backend is None:
            backend = self._backends[kind] = self._factories[kind]()
        return url, backend

    async def get_range(self, url: str, start: int, length: int) -> bytes:
        """Read ``length`` bytes from ``start`` through the matching backend."""
        target, backend = self.resolve(url)
        return await backend.get_range(target, start, length)

    async def get_ranges(self, url: str, ranges: list[tuple[int, int]]) -> list[bytes]:
        """Read several ranges of one object through the matching backend."""
        target, backend = self.resolve(url)
        return await backend.get_ranges(target, ranges)

    async def get_range_with_info(self, url: str, start: int, length: int) -> RangeRead:
        """Read a range plus object identity from the same response when possible."""
        target, backend = self.resolve(url)
        return await read_range_with_info(backend, target, start, length)

    async def head(self, url: str) -> ObjectInfo:
        """Object size/ETag through the matching backend."""
        target, backend = self.resolve(url)
        return await backend.head(target)

    async def close(self) -> None:
        """Close every backend this router created or was given."""
        await asyncio.gather(*(backend.close() for backend in self._backends.values()))
