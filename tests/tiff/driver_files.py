"""Small synthetic TIFFs that cost the header readers rounds or bytes on purpose.

Shared by the driver tests (tests/tiff/test_driver.py) and the sync-vs-async comparison
(tests/ingest/test_read_driver.py).
"""

from __future__ import annotations

import struct

from rasteret_assets.tiff.driver import DEFAULT_MIN_READ

SHORT, LONG = 3, 4
#: Far enough apart that padding and gap bridging never bring the next IFD along.
IFD_SPACING = 4 * DEFAULT_MIN_READ


def _ifd(next_offset: int, *, tiles: int = 1, tables_at: int = 0) -> bytes:
    """A classic little-endian IFD of a 16x16 uint8 image; ``tiles`` > 1 puts the tile tables
    out of line at ``tables_at`` (offsets, then byte counts)."""
    if tiles == 1:
        offsets, counts = 4096, 256
    else:
        offsets, counts = tables_at, tables_at + 4 * tiles
    side = 16 * int(tiles**0.5)
    entries = [
        (256, SHORT, 1, side),
        (257, SHORT, 1, side),
        (258, SHORT, 1, 8),
        (322, SHORT, 1, 16),
        (323, SHORT, 1, 16),
        (324, LONG, tiles, offsets),
        (325, LONG, tiles, counts),
    ]
    out = struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        field = struct.pack("<HH", value, 0) if kind == SHORT else struct.pack("<I", value)
        out += struct.pack("<HHI", tag, kind, count) + field
    return out + struct.pack("<I", next_offset)


def scattered_chain(n_ifds: int) -> bytes:
    """``n_ifds`` IFDs, each :data:`IFD_SPACING` bytes after the last: one round trip each."""
    data = bytearray(b"II*\0" + struct.pack("<I", 8))
    for i in range(n_ifds):
        offset = 8 + i * IFD_SPACING
        last = i == n_ifds - 1
        data[len(data) :] = bytes(offset - len(data))
        data += _ifd(0 if last else offset + IFD_SPACING)
    return bytes(data)


def huge_tables(tiles: int) -> bytes:
    """One IFD whose LONG tile tables (``8 * tiles`` bytes) start at 4096."""
    head = b"II*\0" + struct.pack("<I", 8) + _ifd(0, tiles=tiles, tables_at=4096)
    return head.ljust(4096, b"\0") + bytes(8 * tiles)
