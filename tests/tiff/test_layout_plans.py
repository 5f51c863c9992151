"""Layout plans: an IFD whose entry table was judged before parses exactly as a fresh one.

Files of one collection share IFD tables; the parser keeps what a table says (sizes, dtype,
compression ...) and reads only the tile tables of each file. These tests write such files
with GDAL and compare every parse against a parse with no plans at all.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import tifffile
from affine import Affine

from rasteret_assets.tiff import ByteBuffer, NeedBytes, TiffHeader, parse_header, parser


@pytest.fixture(autouse=True)
def _no_plans():
    parser._PLANS.clear()
    yield
    parser._PLANS.clear()


def write_cog(
    path: Path, seed: int, *, bands: int = 1, compress: str = "DEFLATE", dtype: str = "uint16"
) -> Path:
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 200 * (seed + 1), (bands, 1536, 1536), dtype=dtype)
    profile = {
        "driver": "COG",
        "width": 1536,
        "height": 1536,
        "count": bands,
        "dtype": dtype,
        "crs": "EPSG:32633",
        "transform": Affine(10, 0, 300000, 0, -10, 5000000),
        "compress": compress,
        "blocksize": 256,
    }
    with rasterio.open(path, "w", **profile) as dataset:
        dataset.write(data)
    return path


def cold_parse(buffer: ByteBuffer) -> TiffHeader | NeedBytes:
    saved = dict(parser._PLANS)
    parser._PLANS.clear()
    try:
        return parse_header(buffer)
    finally:
        parser._PLANS.clear()
        parser._PLANS.update(saved)


def assert_same(a: TiffHeader | NeedBytes, b: TiffHeader | NeedBytes) -> None:
    assert type(a) is type(b)
    if isinstance(a, NeedBytes):
        assert a.ranges == b.ranges
        return
    assert len(a.ifds) == len(b.ifds)
    for left, right in zip(a.ifds, b.ifds, strict=True):
        for name in type(left).__slots__:
            x, y = getattr(left, name), getattr(right, name)
            if isinstance(x, np.ndarray):
                assert x.dtype == y.dtype and np.array_equal(x, y), name
            else:
                assert x == y, name
    assert a.geo == b.geo


def test_a_file_laid_out_like_one_seen_reads_its_own_tile_tables(tmp_path: Path) -> None:
    first = write_cog(tmp_path / "a.tif", 0)
    second = write_cog(tmp_path / "b.tif", 1)
    assert parse_header(ByteBuffer.from_bytes(first.read_bytes(), complete=True)).ifds
    planned = len(parser._PLANS)
    assert planned >= 2  # the full image and the overviews with more than one tile
    data = second.read_bytes()
    header = parse_header(ByteBuffer.from_bytes(data, complete=True))
    # Same tables, so no new plan, except where a level's only tile offset sits in the table.
    assert len(parser._PLANS) - planned <= 1
    assert_same(header, cold_parse(ByteBuffer.from_bytes(data, complete=True)))
    with tifffile.TiffFile(second) as tif:
        truth = [list(page.databytecounts) for page in tif.pages]
    assert [ifd.tile_byte_counts.tolist() for ifd in header.ifds] == truth
    first_counts = parse_header(ByteBuffer.from_bytes(first.read_bytes(), complete=True))
    assert first_counts.ifds[0].tile_byte_counts.tolist() != truth[0]  # really another file


@pytest.mark.parametrize("cut", [16, 600, 2000, 6000])
def test_a_planned_ifd_asks_for_what_a_fresh_parse_asks_for(tmp_path: Path, cut: int) -> None:
    write_cog(tmp_path / "a.tif", 0).read_bytes()
    parse_header(ByteBuffer.from_bytes((tmp_path / "a.tif").read_bytes(), complete=True))
    data = write_cog(tmp_path / "b.tif", 1).read_bytes()

    def partial() -> ByteBuffer:
        buffer = ByteBuffer()
        buffer.mark_end_of_file(len(data))
        buffer.add(0, data[:cut])
        return buffer

    warm, fresh = partial(), partial()
    assert_same(parse_header(warm), cold_parse(fresh))
    assert warm.extent == fresh.extent


@pytest.mark.parametrize(
    ("bands", "compress", "dtype"),
    [(3, "DEFLATE", "uint16"), (1, "JPEG", "uint8")],
    ids=["three-samples", "jpeg-tables"],
)
def test_tables_with_values_outside_them_are_not_planned(
    tmp_path: Path, bands: int, compress: str, dtype: str
) -> None:
    """Three BitsPerSample values do not fit in a classic entry, and JPEG tables never do:
    such a file's own bytes decide them, so its IFDs are judged afresh every time."""
    path = write_cog(tmp_path / "x.tif", 0, bands=bands, compress=compress, dtype=dtype)
    header = parse_header(ByteBuffer.from_bytes(path.read_bytes(), complete=True))
    assert header.ifds[0].samples_per_pixel == bands
    assert (header.ifds[0].jpeg_tables is not None) == (compress == "JPEG")
    assert not parser._PLANS
