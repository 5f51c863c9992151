"""A synchronous driver for the sans-I/O parser, for local files, tests and benchmarks.

It only does the I/O a :class:`~rasteret_assets.tiff.driver.HeaderReadDriver` asks for, as
the async engine does, so both read the same ranges of a file; the counts it returns let the
benchmark report how many round trips a file needs from a given first-read size.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from rasteret_assets.tiff.driver import (
    DEFAULT_FIRST_READ,
    DEFAULT_MAX_HEADER_BYTES,
    DEFAULT_MIN_READ,
    MAX_ROUNDS,
    HeaderReadDriver,
    ReadStats,
)
from rasteret_assets.tiff.model import TiffHeader

__all__ = [
    "DEFAULT_FIRST_READ",
    "DEFAULT_MAX_HEADER_BYTES",
    "DEFAULT_MIN_READ",
    "MAX_ROUNDS",
    "ReadStats",
    "read_header",
    "read_header_from_path",
]


def read_header(
    read_range: Callable[[int, int], bytes],
    *,
    first_read: int = DEFAULT_FIRST_READ,
    min_read: int = DEFAULT_MIN_READ,
    max_header_bytes: int | None = DEFAULT_MAX_HEADER_BYTES,
    file_size: int | None = None,
) -> tuple[TiffHeader, ReadStats]:
    """Parse a header by calling ``read_range(offset, length)`` as few times as possible.

    ``read_range`` returns fewer bytes than asked only at the end of the file. A known
    ``file_size`` (the engine learns it from its first read) lets a header pointing past the
    end fail as truncated without reading there first.
    """
    driver = HeaderReadDriver(
        first_read=first_read, min_read=min_read, max_header_bytes=max_header_bytes
    )
    while reads := driver.next_reads():
        chunks = [read_range(offset, length) for offset, length in reads]
        driver.feed(reads, chunks, file_size=file_size)
    assert driver.header is not None
    return driver.header, driver.stats


def read_header_from_path(
    path: str | Path,
    *,
    first_read: int = DEFAULT_FIRST_READ,
    min_read: int = DEFAULT_MIN_READ,
    max_header_bytes: int | None = DEFAULT_MAX_HEADER_BYTES,
) -> tuple[TiffHeader, ReadStats]:
    """Parse the header of a local file with range reads (knowing its size, as the engine
    does)."""
    with Path(path).open("rb") as handle:
        file_size = os.fstat(handle.fileno()).st_size

        def read_range(offset: int, length: int) -> bytes:
            handle.seek(offset)
            return handle.read(length)

        return read_header(
            read_range,
            first_read=first_read,
            min_read=min_read,
            max_header_bytes=max_header_bytes,
            file_size=file_size,
        )
