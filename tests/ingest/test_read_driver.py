"""The sync reader and the async engine share one read driver: same file, same reads.

``read_header_from_path`` and ``fetch_header`` must ask for exactly the same ranges, in the
same order, get the same bytes and reach the same verdict, for real files (from one 64 KiB
read or a 16-byte one), for a chain that hits the round limit, a header over the byte budget
and a truncated file -- through the local backend and over HTTP.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from servers.range_server import RangeServer
from tiff.cog_corpus import VARIANTS
from tiff.driver_files import IFD_SPACING, huge_tables, scattered_chain

from rasteret_assets.ingest.headers.engine import (
    DEFAULT_FIRST_READ,
    DEFAULT_MAX_HEADER_BYTES,
    MAX_ROUNDS,
    HeaderOutcome,
    fetch_header,
)
from rasteret_assets.storage import LocalBackend, RetryPolicy, StorageBackend, StorageRouter
from rasteret_assets.storage.base import ObjectInfo, RangeRead
from rasteret_assets.tiff import TiffError, TiffHeader, read_header, read_header_from_path
from rasteret_assets.tiff import driver as tiff_driver

CORPUS = (
    "cog-deflate-u8-1b-b256-utm-ovr3-nodata0",
    "cog-deflate-u8-1b-b32-many-tiles",
    "gtiff-band-interleave-deflate-pred2-u16-3b-b256-ovr",
    "gtiff-sparse-bigtiff-20000-u8-b256",
    "gtiff-striped-deflate-u8",  # not tiled: an error verdict
)
FIRST_READS = (16, DEFAULT_FIRST_READ)
SMALL_BUDGET = 256 << 10


class RecordingBackend:
    """Passes reads through to a real backend and records every ``(offset, length)``."""

    def __init__(self, inner: StorageBackend) -> None:
        self.inner = inner
        self.calls: list[tuple[int, int]] = []

    async def get_range(self, url: str, start: int, length: int) -> bytes:
        self.calls.append((start, length))
        return await self.inner.get_range(url, start, length)

    async def get_range_with_info(self, url: str, start: int, length: int) -> RangeRead:
        self.calls.append((start, length))
        return await self.inner.get_range_with_info(url, start, length)  # type: ignore[attr-defined]

    async def get_ranges(self, url: str, ranges: list[tuple[int, int]]) -> list[bytes]:
        self.calls.extend(ranges)
        return await self.inner.get_ranges(url, ranges)

    async def head(self, url: str) -> ObjectInfo:
        return await self.inner.head(url)

    async def close(self) -> None:
        await self.inner.close()


def _sync(path: Path, **kwargs: int | None) -> tuple[TiffHeader | TiffError, list, int]:
    """read_header_from_path's verdict, plus the reads a recording read_header (given the
    file size, as read_header_from_path does) made and the bytes they returned."""
    try:
        result: TiffHeader | TiffError
        result, stats = read_header_from_path(path, **kwargs)
    except TiffError as error:
        result, stats = error, None
    data = path.read_bytes()
    calls: list[tuple[int, int]] = []

    def read_range(offset: int, length: int) -> bytes:
        calls.append((offset, length))
        return data[offset : offset + length]

    try:
        _, recorded = read_header(read_range, file_size=len(data), **kwargs)
    except TiffError as error:
        assert str(error) == str(result), path
    else:
        assert recorded == stats, path
    return result, calls, sum(len(data[o : o + n]) for o, n in calls)


def _fingerprint(header: TiffHeader) -> tuple[object, ...]:
    return (
        header.byte_order,
        header.bigtiff,
        [(i.offset, i.tile_offsets.tobytes(), i.tile_byte_counts.tobytes()) for i in header.ifds],
        repr(header.geo),
    )


def _assert_same(
    name: str,
    sync: tuple[TiffHeader | TiffError, list, int],
    outcome: HeaderOutcome,
    engine_calls: list[tuple[int, int]],
) -> None:
    result, calls, bytes_read = sync
    assert engine_calls == calls, name
    assert outcome.requests == len(calls), name
    assert outcome.bytes_read == bytes_read, name
    if isinstance(result, TiffHeader):
        assert outcome.ok, (name, outcome.error)
        assert outcome.header is not None
        assert _fingerprint(outcome.header) == _fingerprint(result), name
    else:
        assert outcome.status == result.error_class, (name, outcome.error, result)
        assert str(result) in (outcome.error or ""), name


async def _engine(
    url: str, inner: StorageBackend, **kwargs: int
) -> tuple[HeaderOutcome, list[tuple[int, int]]]:
    backend = RecordingBackend(inner)
    try:
        outcome = await fetch_header(url, backend, retry=RetryPolicy(max_attempts=1), **kwargs)
    finally:
        await backend.close()
    return outcome, backend.calls


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A few GDAL-written files plus the synthetic ones that cost rounds or bytes."""
    directory = tmp_path_factory.mktemp("read_driver")
    out: dict[str, Path] = {}
    for variant in VARIANTS:
        if variant.name in CORPUS:
            path = directory / f"{variant.name}.tif"
            variant.build(path)
            out[variant.name] = path
    assert set(out) == set(CORPUS)
    synthetic = {
        "scattered-chain": scattered_chain(MAX_ROUNDS + 4),
        "huge-tables": huge_tables(256 * 256),
        "truncated-chain": scattered_chain(3)[: 8 + IFD_SPACING + 200],
    }
    for name, data in synthetic.items():
        path = directory / f"{name}.tif"
        path.write_bytes(data)
        out[name] = path
    return out


def test_the_engine_uses_the_drivers_constants() -> None:
    assert DEFAULT_FIRST_READ is tiff_driver.DEFAULT_FIRST_READ
    assert DEFAULT_MAX_HEADER_BYTES is tiff_driver.DEFAULT_MAX_HEADER_BYTES
    assert MAX_ROUNDS is tiff_driver.MAX_ROUNDS


@pytest.mark.asyncio
@pytest.mark.parametrize("first_read", FIRST_READS)
async def test_local_files_read_the_same_through_both(
    files: dict[str, Path], first_read: int
) -> None:
    for name, path in files.items():
        budget = SMALL_BUDGET if name == "huge-tables" else DEFAULT_MAX_HEADER_BYTES
        kwargs = {"first_read": first_read, "max_header_bytes": budget}
        sync = await asyncio.to_thread(_sync, path, **kwargs)
        outcome, calls = await _engine(str(path), LocalBackend(), **kwargs)
        _assert_same(f"{name} first_read={first_read}", sync, outcome, calls)


@pytest.mark.asyncio
async def test_the_hostile_files_end_as_expected(files: dict[str, Path]) -> None:
    expected = {
        "scattered-chain": ("corrupt", MAX_ROUNDS),  # the round limit, no read after it
        "huge-tables": ("unsupported", 1),  # the budget, before the oversized read
        "truncated-chain": ("truncated", 2),
    }
    for name, (status, requests) in expected.items():
        budget = SMALL_BUDGET if name == "huge-tables" else DEFAULT_MAX_HEADER_BYTES
        outcome, calls = await _engine(str(files[name]), LocalBackend(), max_header_bytes=budget)
        assert (outcome.status, outcome.requests, len(calls)) == (status, requests, requests), (
            name,
            outcome.error,
        )


@pytest.mark.asyncio
@pytest.mark.parametrize("first_read", FIRST_READS)
async def test_http_reads_the_same_as_the_sync_reader(
    range_server: RangeServer, files: dict[str, Path], first_read: int
) -> None:
    for name, path in files.items():
        url = range_server.add_file(f"/driver/{name}.tif", path)
        budget = SMALL_BUDGET if name == "huge-tables" else DEFAULT_MAX_HEADER_BYTES
        kwargs = {"first_read": first_read, "max_header_bytes": budget}
        sync = await asyncio.to_thread(_sync, path, **kwargs)
        outcome, calls = await _engine(url, StorageRouter(), **kwargs)
        _assert_same(f"http {name} first_read={first_read}", sync, outcome, calls)
        assert range_server.stats(f"/driver/{name}.tif").requests == outcome.requests


@pytest.mark.asyncio
async def test_shared_fixtures_read_the_same_through_both(tiff_fixtures: Path) -> None:
    paths = sorted(p for p in tiff_fixtures.rglob("*") if p.suffix.lower() in {".tif", ".tiff"})
    assert paths
    for path in paths:
        for first_read in FIRST_READS:
            sync = await asyncio.to_thread(_sync, path, first_read=first_read)
            outcome, calls = await _engine(str(path), LocalBackend(), first_read=first_read)
            _assert_same(f"{path.name} first_read={first_read}", sync, outcome, calls)
