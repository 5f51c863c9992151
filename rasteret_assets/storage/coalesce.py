"""Merge nearby byte ranges into fewer requests.

On object storage a request costs a round trip (tens of milliseconds) while a few extra
kilobytes cost nothing, and TIFF headers place their tag arrays close together. Merging
ranges separated by small gaps therefore cuts requests per file without reading much more.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from rasteret_assets.storage.base import RangeRead, check_range

#: Default largest hole between two ranges that is still read rather than skipped.
DEFAULT_MAX_GAP = 64 * 1024
#: Default upper bound for one merged request, so merging never turns into a bulk download.
DEFAULT_MAX_SPAN = 8 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Span:
    """One request covering ``[start, end)`` and the input ranges (by index) it serves."""

    start: int
    end: int
    members: tuple[int, ...]


def coalesce_ranges(
    ranges: Sequence[tuple[int, int]],
    *,
    max_gap: int = DEFAULT_MAX_GAP,
    max_span: int = DEFAULT_MAX_SPAN,
) -> list[Span]:
    """Group ``(start, length)`` ranges into spans; zero-length ranges need no request."""
    for start, length in ranges:
        check_range(start, length)
    order = sorted((i for i, (_, n) in enumerate(ranges) if n > 0), key=lambda i: ranges[i][0])
    spans: list[Span] = []
    for index in order:
        start, length = ranges[index]
        end = start + length
        if spans:
            last = spans[-1]
            merged_end = max(last.end, end)
            if start - last.end <= max_gap and merged_end - last.start <= max_span:
                spans[-1] = Span(last.start, merged_end, (*last.members, index))
                continue
        spans.append(Span(start, end, (index,)))
    return spans


async def read_coalesced(
    read: Callable[[int, int], Awaitable[bytes]],
    ranges: Sequence[tuple[int, int]],
    *,
    max_gap: int = DEFAULT_MAX_GAP,
    max_span: int = DEFAULT_MAX_SPAN,
) -> list[bytes]:
    """Serve ``ranges`` with one concurrent ``read(start, length)`` per merged span.

    A span cut short by end of object yields shorter (possibly empty) slices, matching
    ``get_range``'s end-of-file semantics.
    """
    spans = coalesce_ranges(ranges, max_gap=max_gap, max_span=max_span)
    tasks = [asyncio.ensure_future(read(s.start, s.end - s.start)) for s in spans]
    try:
        blobs = await asyncio.gather(*tasks)
    except BaseException:
        # One span failed: stop the others instead of leaving orphan requests behind.
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    results = [b""] * len(ranges)
    for span, blob in zip(spans, blobs, strict=True):
        for index in span.members:
            start, length = ranges[index]
            offset = start - span.start
            results[index] = blob[offset : offset + length]
    return results


class CoalescingRangeReads(ABC):
    """``get_range``/``get_ranges`` for a remote backend whose one primitive is
    ``get_range_with_info``: HTTP and S3 read the same way and differ only in that call."""

    @property
    @abstractmethod
    def coalesce_gap(self) -> int:
        """Largest hole between two ranges that one request still covers."""

    @abstractmethod
    async def get_range_with_info(self, url: str, start: int, length: int) -> RangeRead:
        """One ranged request, reporting the object's size/ETag from the same response."""

    async def get_range(self, url: str, start: int, length: int) -> bytes:
        """Read ``length`` bytes from ``start``; shorter at end of object."""
        return (await self.get_range_with_info(url, start, length)).data

    async def get_ranges(self, url: str, ranges: list[tuple[int, int]]) -> list[bytes]:
        """Read several ranges; nearby ones share one request, the rest run concurrently."""
        return await read_coalesced(
            lambda start, length: self.get_range(url, start, length),
            ranges,
            max_gap=self.coalesce_gap,
        )
