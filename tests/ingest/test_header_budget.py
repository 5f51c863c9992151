"""A header's total size is bounded per URL: a file whose tags point at megabytes of tile
tables ends as ``unsupported`` before the oversized read is sent, so ``max_concurrent``
hostile files cannot make the engine hold gigabytes."""

from __future__ import annotations

import struct

import pytest
from servers.range_server import RangeServer

from rasteret_assets.ingest.headers.engine import DEFAULT_FIRST_READ, fetch_header
from rasteret_assets.storage import RetryPolicy, StorageRouter

TILES_PER_SIDE = 512  # 8192 px at 16 px tiles: 262,144 tiles, 1 MiB per LONG tile table


def tiff_with_huge_tile_tables() -> bytes:
    """A classic TIFF whose TileOffsets/TileByteCounts tables take 2 MiB after its IFD."""
    count = TILES_PER_SIDE**2
    entries = [
        (256, 4, 1, 16 * TILES_PER_SIDE),  # ImageWidth
        (257, 4, 1, 16 * TILES_PER_SIDE),  # ImageLength
        (258, 3, 1, 8),  # BitsPerSample
        (259, 3, 1, 1),  # Compression: none
        (262, 3, 1, 1),  # Photometric: min-is-black
        (277, 3, 1, 1),  # SamplesPerPixel
        (322, 3, 1, 16),  # TileWidth
        (323, 3, 1, 16),  # TileLength
        (324, 4, count, 4096),  # TileOffsets: 1 MiB of LONGs
        (325, 4, count, 4096 + 4 * count),  # TileByteCounts: another 1 MiB
    ]
    ifd = struct.pack("<H", len(entries))
    for tag, kind, n, value in entries:
        packed = struct.pack("<H", value) + b"\0\0" if kind == 3 else struct.pack("<I", value)
        ifd += struct.pack("<HHI", tag, kind, n) + packed
    head = b"II*\0" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0)
    return head.ljust(4096, b"\0") + bytes(8 * count)


@pytest.mark.asyncio
async def test_an_oversized_header_is_refused_before_reading_it(range_server: RangeServer) -> None:
    url = range_server.add_bytes("/huge-tables.tif", tiff_with_huge_tile_tables())
    backend = StorageRouter()
    try:
        refused = await fetch_header(url, backend, retry=RetryPolicy(), max_header_bytes=1 << 20)
        allowed = await fetch_header(url, backend, retry=RetryPolicy(), max_header_bytes=8 << 20)
    finally:
        await backend.close()
    assert refused.status == "unsupported"
    assert "max_header_bytes" in (refused.error or "")
    assert (refused.requests, refused.attempts) == (1, 1)
    assert refused.bytes_read <= DEFAULT_FIRST_READ  # only the speculative first read
    # With room for the tables, they are read and the header parses.
    assert allowed.status == "ok", allowed.error
    assert allowed.bytes_read >= 8 * TILES_PER_SIDE**2
