"""Minimal headers for what the sustained fuzzer (benchmarks/fuzz_header.py) found.

* A SamplesPerPixel read through a mistyped entry (LONG/LONG8 instead of SHORT) made every
  per-sample tuple a multi-gigabyte allocation: ``MemoryError``, or a hang with 18 GB resident.
  Found as ``world.byte.tif`` re-laid out as big-endian BigTIFF with the SamplesPerPixel entry's
  type set to IFD8, which reads the whole 8-byte inline field as the value.
* A signalling NaN in a FLOAT or COMPLEX value made numpy warn ("invalid value encountered in
  cast") when widening it to float64; the parser must stay silent on hostile bytes.
* Worker memory grew by ~55 MiB over 500,000 inputs: the cache of whole-table structs kept one
  per hostile entry count, ~0.5 MiB each near the 4,096-entry limit.
"""

from __future__ import annotations

import struct
import time
import tracemalloc
import warnings

import pytest

from rasteret_assets.tiff import CorruptTiffError, TiffHeader, parse_tiff_bytes
from rasteret_assets.tiff import parser as tiff_parser

SIGNALLING_NAN_F4 = b"\x01\x00\x80\x7f"  # little-endian float32 sNaN
SHORT, LONG, FLOAT, COMPLEX, LONG8 = 3, 4, 11, 15, 16


def tiny_tiff(entries: list[tuple[int, int, int, bytes]], *, bigtiff: bool = False) -> bytes:
    """A little-endian TIFF with one IFD of ``(tag, type, count, value bytes)`` entries.

    Values longer than the inline field go after the IFD.
    """
    inline = 8 if bigtiff else 4
    header = struct.pack("<2sHHHQ", b"II", 43, 8, 0, 16) if bigtiff else b"II*\0\x08\0\0\0"
    ifd_start = len(header)
    table_size = (8 if bigtiff else 2) + len(entries) * (20 if bigtiff else 12) + inline
    table = struct.pack("<Q" if bigtiff else "<H", len(entries))
    values = b""
    for tag, field_type, count, value in sorted(entries):
        if len(value) > inline:
            value_field = struct.pack(
                "<Q" if bigtiff else "<I", ifd_start + table_size + len(values)
            )
            values += value
        else:
            value_field = value.ljust(inline, b"\0")
        table += struct.pack("<HHQ" if bigtiff else "<HHI", tag, field_type, count) + value_field
    return header + table + b"\0" * inline + values


def one_tile_image(extra: list[tuple[int, int, int, bytes]], *, bigtiff: bool = False) -> bytes:
    """A 16x16 uint8 image in one 16x16 tile, plus (or overriding) ``extra`` entries."""
    entries = {
        256: (SHORT, 1, struct.pack("<H", 16)),
        257: (SHORT, 1, struct.pack("<H", 16)),
        258: (SHORT, 1, struct.pack("<H", 8)),
        322: (SHORT, 1, struct.pack("<H", 16)),
        323: (SHORT, 1, struct.pack("<H", 16)),
        324: (LONG, 1, struct.pack("<I", 4096)),
        325: (LONG, 1, struct.pack("<I", 256)),
    }
    entries.update({tag: (field_type, count, value) for tag, field_type, count, value in extra})
    listed = [
        (tag, field_type, count, value) for tag, (field_type, count, value) in entries.items()
    ]
    return tiny_tiff(listed, bigtiff=bigtiff)


def test_the_minimal_image_parses() -> None:
    header = parse_tiff_bytes(one_tile_image([]))
    assert (header.image.image_width, header.image.dtype) == (16, "uint8")
    assert header.image.tile_offsets.tolist() == [4096]


@pytest.mark.parametrize(
    ("entry", "bigtiff"),
    [
        ((277, LONG, 1, struct.pack("<I", 0xFFFFFFFF)), False),
        ((277, LONG8, 1, struct.pack("<Q", 1 << 40)), True),
        ((277, SHORT, 1, struct.pack("<H", 0)), False),
    ],
    ids=["long-4G", "long8-2^40", "zero"],
)
def test_absurd_samples_per_pixel_is_corrupt_not_an_allocation(
    entry: tuple[int, int, int, bytes], bigtiff: bool
) -> None:
    started = time.perf_counter()
    with pytest.raises(CorruptTiffError, match="SamplesPerPixel") as info:
        parse_tiff_bytes(one_tile_image([entry], bigtiff=bigtiff))
    assert info.value.error_class == "corrupt"
    assert time.perf_counter() - started < 0.5


def test_the_largest_short_samples_per_pixel_still_parses() -> None:
    """65,535 samples is a legal SHORT: parsed (and not cached), not refused."""
    header = parse_tiff_bytes(one_tile_image([(277, SHORT, 1, struct.pack("<H", 0xFFFF))]))
    assert header.image.samples_per_pixel == 0xFFFF
    assert header.image.bits_per_sample == (8,) * 0xFFFF
    assert all(len(bits) <= tiff_parser.MAX_CACHED_SAMPLES for bits, _ in tiff_parser._DTYPES)


@pytest.mark.parametrize(
    ("tag", "field_type", "count", "value"),
    [
        (33550, FLOAT, 3, SIGNALLING_NAN_F4 * 3),  # ModelPixelScale as FLOAT
        (33550, COMPLEX, 3, SIGNALLING_NAN_F4 * 6),  # ... as COMPLEX (pairs of float32)
    ],
    ids=["float", "complex"],
)
def test_signalling_nan_values_do_not_warn(
    tag: int, field_type: int, count: int, value: bytes
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        header = parse_tiff_bytes(one_tile_image([(tag, field_type, count, value)]))
    assert isinstance(header, TiffHeader)
    assert header.geo.pixel_scale is not None
    assert all(v != v for v in header.geo.pixel_scale)  # NaN stays NaN
    assert header.geo.transform is None  # no tiepoint: nothing to georeference with


def test_hostile_entry_counts_do_not_pin_memory() -> None:
    """64 headers with 4,033..4,096 entries each: nothing of their table layouts is kept."""
    padding = [(60000 + i, SHORT, 1, b"\0\0") for i in range(4096)]
    headers = [one_tile_image(padding[: 4096 - 7 - i]) for i in range(64)]
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for data in headers:
            assert parse_tiff_bytes(data).image.image_width == 16
        retained = tracemalloc.take_snapshot().compare_to(before, "filename")
    finally:
        tracemalloc.stop()
    grown = sum(stat.size_diff for stat in retained)
    assert grown < 4 << 20, f"{grown / 2**20:.1f} MiB retained after parsing"
