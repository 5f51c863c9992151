"""A synchronous driver for the sans-I/O parser, for local files, tests and benchmarks.

The async engine drives :func:`parse_header` the same way; this one counts reads so the
benchmark can report how many round trips a file needs from a given first-read size.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rasteret_assets.tiff.buffer import ByteBuffer, NeedBytes, plan_reads
from rasteret_assets.tiff.errors import CorruptTiffError
from rasteret_assets.tiff.model import TiffHeader
from rasteret_assets.tiff.parser import parse_header

DEFAULT_FIRST_READ = 65536
DEFAULT_MIN_READ = 16384
MAX_ROUNDS = 64


@dataclass(frozen=True, slots=True)
class ReadStats:
    reads: int
    bytes_read: int


def read_header(
    read_range: Callable[[int, int], bytes],
    *,
    first_read: int = DEFAULT_FIRST_READ,
    min_read: int = DEFAULT_MIN_READ,
) -> tuple[TiffHeader, ReadStats]:
    """Parse a header by calling ``read_range(offset, length)`` as few times as possible.

    ``read_range`` returns fewer bytes than asked only at the end of the file.
    """
    buffer = ByteBuffer()
    reads = bytes_read = 0
    pending: list[tuple[int, int]] = [(0, first_read)]
    for _ in range(MAX_ROUNDS):
        for offset, length in pending:
            data = read_range(offset, length)
            reads += 1
            bytes_read += len(data)
            buffer.add(offset, data)
            if len(data) < length:
                buffer.mark_end_of_file(offset + len(data))
        result = parse_header(buffer)
        if not isinstance(result, NeedBytes):
            return result, ReadStats(reads, bytes_read)
        pending = plan_reads(result.ranges, min_read=min_read)
    raise CorruptTiffError(f"header still incomplete after {MAX_ROUNDS} rounds of reads")


def read_header_from_path(
    path: str | Path, *, first_read: int = DEFAULT_FIRST_READ
) -> tuple[TiffHeader, ReadStats]:
    """Parse the header of a local file with range reads."""
    with Path(path).open("rb") as handle:

        def read_range(offset: int, length: int) -> bytes:
            handle.seek(offset)
            return handle.read(length)

        return read_header(read_range, first_read=first_read)
