"""Range reads from the local filesystem.

Local files are common in tests, demos and on-premise mounts. Reads are small, so plain
blocking I/O in a worker thread beats an async file library: no extra dependency, and the
event loop stays free.
"""

from __future__ import annotations

import asyncio
import logging
import os
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote, urlsplit

from rasteret_assets.storage.base import ObjectInfo, RangeRead, check_range
from rasteret_assets.storage.errors import StorageError
from rasteret_assets.storage.headers import to_iso_timestamp

logger = logging.getLogger(__name__)


def local_path(url: str) -> Path:
    """``/abs/path``, ``relative/path`` or ``file:///abs/path`` (percent-decoded) as a Path."""
    if url.startswith("file:"):
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost"):
            raise StorageError("unsupported", url, "file:// URLs must not name a remote host")
        return Path(unquote(parts.path))
    return Path(url)


class LocalBackend:
    """``StorageBackend`` for local paths and ``file://`` URLs."""

    async def get_range(self, url: str, start: int, length: int) -> bytes:
        """Read ``length`` bytes from ``start``; shorter at end of file."""
        return (await self.get_range_with_info(url, start, length)).data

    async def get_ranges(self, url: str, ranges: list[tuple[int, int]]) -> list[bytes]:
        """Read several ranges with one open file handle, in one worker thread."""
        for start, length in ranges:
            check_range(start, length)
        path = local_path(url)
        data, _ = await asyncio.to_thread(_read_ranges, path, url, list(ranges))
        return data

    async def get_range_with_info(self, url: str, start: int, length: int) -> RangeRead:
        """Read a range and report size/mtime from the same open file."""
        check_range(start, length)
        path = local_path(url)
        logger.debug("read %s bytes=%d+%d", path, start, length)
        data, info = await asyncio.to_thread(_read_ranges, path, url, [(start, length)])
        return RangeRead(data[0], info)

    async def head(self, url: str) -> ObjectInfo:
        """Size, modification time and a stat-derived ETag."""
        path = local_path(url)
        try:
            st = await asyncio.to_thread(path.stat)
        except OSError as exc:
            raise _translate(exc, url) from None
        if not path.is_file():
            raise StorageError("not_found", url, "not a regular file")
        return _info(st)

    async def close(self) -> None:
        """Nothing to release: files are opened per call."""


def _read_ranges(
    path: Path, url: str, ranges: list[tuple[int, int]]
) -> tuple[list[bytes], ObjectInfo]:
    try:
        with path.open("rb") as handle:
            info = _info(os.fstat(handle.fileno()))
            out = []
            for start, length in ranges:
                handle.seek(start)
                out.append(handle.read(length))
    except OSError as exc:
        raise _translate(exc, url) from None
    return out, info


def _info(st: os.stat_result) -> ObjectInfo:
    # A stat-based validator (like nginx's ETag) lets the engine notice a replaced file.
    etag = f'"{st.st_mtime_ns:x}-{st.st_size:x}"'
    mtime = to_iso_timestamp(datetime.fromtimestamp(st.st_mtime, tz=UTC))
    return ObjectInfo(size=st.st_size, etag=etag, last_modified=mtime)


def _translate(exc: OSError, url: str) -> StorageError:
    detail = f"{type(exc).__name__}: {exc.strerror or exc}"
    if isinstance(exc, FileNotFoundError | IsADirectoryError | NotADirectoryError):
        return StorageError("not_found", url, detail)
    if isinstance(exc, PermissionError):
        return StorageError("forbidden", url, detail)
    return StorageError("server_error", url, detail)
