"""Sparse byte buffer and read planning: the seam between the pure parser and any I/O driver.

The parser never reads; it looks bytes up here and, when they are absent, reports the exact
ranges it is missing. Drivers (sync for local files, async for HTTP/S3) fetch those ranges,
padded by :func:`plan_reads` so that one round trip usually brings everything the next parse
pass needs.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass

from rasteret_assets.tiff.errors import TruncatedTiffError


@dataclass(frozen=True, slots=True)
class NeedBytes:
    """The parse cannot finish: these (offset, length) ranges are missing, sorted and merged."""

    ranges: tuple[tuple[int, int], ...]


class ByteBuffer:
    """Known byte ranges of one file, plus its size once a driver has learned it."""

    __slots__ = ("_segments", "_starts", "extent", "file_size")

    def __init__(self, file_size: int | None = None) -> None:
        self._starts: list[int] = []
        self._segments: list[bytes] = []
        self.file_size = file_size
        #: End of the furthest byte range the parser has looked at: for a parsed header, how
        #: far into the file its header reaches (what a first read needed to cover).
        self.extent = 0

    @classmethod
    def from_bytes(cls, data: bytes, *, complete: bool) -> ByteBuffer:
        """A buffer holding ``data`` at offset 0; ``complete`` means it is the whole file."""
        buffer = cls(len(data) if complete else None)
        buffer.add(0, data)
        return buffer

    @property
    def bytes_held(self) -> int:
        return sum(len(segment) for segment in self._segments)

    def add(self, offset: int, data: bytes) -> None:
        """Record ``data`` read at ``offset``, merging it with touching segments."""
        if not data:
            return
        start, end = offset, offset + len(data)
        index = bisect.bisect_right(self._starts, start)
        if index and self._starts[index - 1] + len(self._segments[index - 1]) >= start:
            index -= 1
        pieces: list[tuple[int, bytes]] = []
        while index < len(self._starts) and self._starts[index] <= end:
            seg_start, seg = self._starts.pop(index), self._segments.pop(index)
            pieces.append((seg_start, seg))
        if not pieces:
            self._starts.insert(index, start)
            self._segments.insert(index, bytes(data))
            return
        merged_start = min(start, pieces[0][0])
        merged_end = max(end, max(s + len(seg) for s, seg in pieces))
        merged = bytearray(merged_end - merged_start)
        for seg_start, seg in pieces:
            merged[seg_start - merged_start : seg_start - merged_start + len(seg)] = seg
        merged[start - merged_start : end - merged_start] = data
        self._starts.insert(index, merged_start)
        self._segments.insert(index, bytes(merged))

    def mark_end_of_file(self, size: int) -> None:
        """A short read revealed where the file ends."""
        if self.file_size is None or size < self.file_size:
            self.file_size = size

    def view(self, offset: int, length: int, what: str | Callable[[], str]) -> memoryview | None:
        """Bytes ``[offset, offset + length)`` or ``None`` when not (yet) read.

        Raises :class:`TruncatedTiffError` when the range lies past the known end of the file,
        naming ``what`` the header wanted to find there (a callable is only called then).
        """
        end = offset + length
        if self.file_size is not None and end > self.file_size:
            name = what if isinstance(what, str) else what()
            raise TruncatedTiffError(
                f"{name} needs bytes [{offset}, {end}) but the file ends at byte {self.file_size}"
            )
        index = bisect.bisect_right(self._starts, offset) - 1
        if index < 0:
            return None
        seg_start = self._starts[index]
        segment = self._segments[index]
        if end > seg_start + len(segment):
            return None
        if end > self.extent:
            self.extent = end
        return memoryview(segment)[offset - seg_start : end - seg_start]


def merge_ranges(ranges: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    """Sort ranges and merge those that overlap or touch."""
    merged: list[list[int]] = []
    for offset, length in sorted(ranges):
        if merged and offset <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], offset + length)
        else:
            merged.append([offset, offset + length])
    return tuple((start, end - start) for start, end in merged)


def plan_reads(
    ranges: tuple[tuple[int, int], ...], *, min_read: int = 16384, max_gap: int | None = None
) -> list[tuple[int, int]]:
    """Turn missing ranges into few reads: pad each to ``min_read`` and bridge small gaps.

    Padding matters because a missing IFD is first known only by its offset: reading
    ``min_read`` bytes from there usually brings its entries and their values in the same trip.
    """
    gap = min_read if max_gap is None else max_gap
    reads: list[list[int]] = []
    for offset, length in sorted(ranges):
        end = offset + max(length, min_read)
        if reads and offset <= reads[-1][1] + gap:
            reads[-1][1] = max(reads[-1][1], end)
        else:
            reads.append([offset, end])
    return [(start, end - start) for start, end in reads]
