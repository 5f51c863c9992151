"""The header parser against independent truth, for every generated and every real TIFF.

Structure (every IFD, every field, every tile offset) is compared with tifffile's raw tags;
georeferencing with what rasterio/GDAL reads, except the EPSG code, which is compared with what
the GeoKeys *name* (see ``test_geo_matches_truth``). The same headers must come out of the
incremental path (``parse_header`` / ``read_header``) with a bounded number of reads.
"""

from __future__ import annotations

import dataclasses
import math
from functools import cache
from pathlib import Path

import numpy as np
import pytest

from rasteret_assets.tiff import (
    ByteBuffer,
    NeedBytes,
    NotTiledError,
    TiffError,
    TiffHeader,
    UnsupportedTiffError,
    parse_header,
    parse_tiff_bytes,
    read_header,
)

from .conftest import ANY_ERROR, NOT_TILED, PARSE, UNSUPPORTED, Case, all_cases, cases
from .truth import (
    GEOGRAPHIC_TYPE,
    GT_MODEL_TYPE,
    GT_RASTER_TYPE,
    PROJECTED_CS_TYPE,
    RasterioTruth,
    TiffTruth,
    normalize_geo_ascii,
    read_rasterio_truth,
    read_tiff_truth,
    same_float,
)

# Files whose CRS the GeoKeys mark user-defined (32767) but which GDAL *identifies* as an EPSG
# CRS by comparing definitions. The parser reports what the header names, so epsg must be None
# there; rasterio's identified code is pinned so the exception stays deliberate.
RASTERIO_IDENTIFIED_EPSG = {
    # ProjectedCSTypeGeoKey=32767 (custom Alaska Albers on NAD83), GDAL matches EPSG:3968.
    "fixture:rio-cogeo/validate/image_known_incompatible_ghost_headers.tif": 3968,
}

BYTE_ORDER_NAMES = {"<": "<", "II": "<", "little": "<", ">": ">", "MM": ">", "big": ">"}
FIRST_READS = (16384, 65536, 262144)
IFD_FIELDS = (
    "new_subfile_type",
    "image_width",
    "image_height",
    "tile_width",
    "tile_height",
    "samples_per_pixel",
    "bits_per_sample",
    "sample_format",
    "compression",
    "predictor",
    "photometric",
    "planar_configuration",
    "extra_samples",
    "jpeg_tables",
    "dtype",
)


@cache
def tiff_truth(path: Path) -> TiffTruth:
    return read_tiff_truth(path)


@cache
def rasterio_truth(path: Path) -> RasterioTruth:
    return read_rasterio_truth(path)


@cache
def parsed(path: Path) -> TiffHeader:
    return parse_tiff_bytes(path.read_bytes())


def assert_headers_equal(
    got: TiffHeader, want: TiffHeader, context: str, *, ghost: bool = True
) -> None:
    """Field-by-field equality (Ifd compares by identity; arrays and NaN need care)."""
    assert got.byte_order == want.byte_order, context
    assert got.bigtiff == want.bigtiff, context
    if ghost:
        assert got.gdal_structural_metadata == want.gdal_structural_metadata, context
    assert len(got.ifds) == len(want.ifds), context
    for a, b in zip(got.ifds, want.ifds, strict=True):
        for f in dataclasses.fields(a):
            x, y = getattr(a, f.name), getattr(b, f.name)
            if isinstance(x, np.ndarray):
                assert x.dtype == y.dtype and np.array_equal(x, y), (
                    f"{context} IFD {a.index} {f.name}"
                )
            else:
                assert x == y, f"{context} IFD {a.index} {f.name}: {x!r} != {y!r}"
    for f in dataclasses.fields(got.geo):
        x, y = getattr(got.geo, f.name), getattr(want.geo, f.name)
        if f.name == "nodata":
            assert same_float(x, y), f"{context} geo.nodata: {x!r} != {y!r}"
        else:
            assert x == y, f"{context} geo.{f.name}: {x!r} != {y!r}"


# ------------------------------------------------------------------------------------------------
# Structure against tifffile


@pytest.mark.parametrize("case", cases(PARSE))
def test_ifds_match_tifffile(case: Case, case_path: Path) -> None:
    truth = tiff_truth(case_path)
    assert truth.is_tiled, "conftest classified a striped file as tiled"
    header = parsed(case_path)

    assert BYTE_ORDER_NAMES.get(header.byte_order) == truth.byte_order, header.byte_order
    assert header.bigtiff is truth.bigtiff
    assert len(header.ifds) == len(truth.ifds), "every IFD of the chain, in file order"

    for ifd, want in zip(header.ifds, truth.ifds, strict=True):
        where = f"IFD {want.index} @{want.offset}"
        assert ifd.index == want.index, where
        assert ifd.offset == want.offset, where
        for name in IFD_FIELDS:
            got_value, want_value = getattr(ifd, name), getattr(want, name)
            if name == "dtype" and want_value is None:
                continue  # no numpy equivalent for this sample layout in the truth's rule
            assert got_value == want_value, (
                f"{where} {name}: got {got_value!r}, want {want_value!r}"
            )
        for name in ("tile_offsets", "tile_byte_counts"):
            got_array, want_array = getattr(ifd, name), getattr(want, name)
            assert isinstance(got_array, np.ndarray), f"{where} {name} is not a numpy array"
            assert got_array.dtype == np.uint64, f"{where} {name} dtype {got_array.dtype}"
            assert got_array.shape == want_array.shape, f"{where} {name} length"
            mismatch = np.flatnonzero(got_array != want_array)
            assert mismatch.size == 0, (
                f"{where} {name}[{mismatch[0]}]: got {got_array[mismatch[0]]}, "
                f"want {want_array[mismatch[0]]}"
            )
        # The tables hold one entry per tile per band (planar 2) or per tile (planar 1).
        per_tile = ifd.samples_per_pixel if ifd.planar_configuration == 2 else 1
        assert ifd.tile_offsets.size == ifd.tiles_per_band * per_tile, where
        assert ifd.is_mask == bool(want.new_subfile_type & 4), where
        assert ifd.is_overview == bool(want.new_subfile_type & 1), where

    # The full-resolution image is the first plain IFD; masks are exactly the bit-4 IFDs.
    plain = [i for i, w in enumerate(truth.ifds) if w.new_subfile_type & 5 == 0]
    assert header.image is header.ifds[plain[0]]
    assert [m.index for m in header.masks] == [
        w.index for w in truth.ifds if w.new_subfile_type & 4
    ]
    assert all(o.image_width <= header.image.image_width for o in header.overviews)


@pytest.mark.parametrize("case", cases(PARSE))
def test_ghost_header_matches(case: Case, case_path: Path) -> None:
    """GDAL's structural metadata, keyed as GDAL itself matches them (whitespace-insensitive:
    GDAL pads the line after KNOWN_INCOMPATIBLE_EDITION=NO with a space so that it can be
    rewritten to YES in place, giving `` MASK_INTERLEAVED_WITH_IMAGERY=YES``)."""
    truth = tiff_truth(case_path)
    got = parsed(case_path).gdal_structural_metadata
    if truth.ghost is None:
        assert got == {}
    else:
        assert got == truth.ghost


@pytest.mark.parametrize("case", cases(PARSE))
def test_band_tiles_slices_tables(case: Case, case_path: Path) -> None:
    header = parsed(case_path)
    truth = tiff_truth(case_path)
    for ifd, want in zip(header.ifds, truth.ifds, strict=True):
        bands = ifd.samples_per_pixel
        per_band = ifd.tiles_per_band
        assert ifd.tiles_across == math.ceil(want.image_width / want.tile_width)
        assert ifd.tiles_down == math.ceil(want.image_height / want.tile_height)
        for band in range(bands):
            offsets, counts = ifd.band_tiles(band)
            if want.planar_configuration == 2:
                window = slice(band * per_band, (band + 1) * per_band)
                assert np.array_equal(offsets, want.tile_offsets[window]), (ifd.index, band)
                assert np.array_equal(counts, want.tile_byte_counts[window]), (ifd.index, band)
            else:
                assert np.array_equal(offsets, want.tile_offsets)
                assert np.array_equal(counts, want.tile_byte_counts)
        if want.planar_configuration == 2:
            joined = np.concatenate([ifd.band_tiles(b)[0] for b in range(bands)])
            assert np.array_equal(joined, want.tile_offsets)


def test_every_fixture_tiff_is_a_case(fixture_tiffs: list[tuple[str, Path]]) -> None:
    """The parametrization above covers every shared TIFF, each with a verdict."""
    by_name = {c.name: c.expect for c in all_cases() if c.kind == "fixture"}
    assert sorted(by_name) == sorted(name for name, _ in fixture_tiffs)
    assert by_name["rasterio/rotated.tif"] == ANY_ERROR
    assert by_name["rasterio/RGB.byte.tif"] == NOT_TILED
    assert by_name["rasterio/cogeo.tif"] == PARSE


def test_corpus_covers_band_interleaving(cog_corpus: list[tuple[str, Path]]) -> None:
    """The planar=2 checks above must not be vacuous: the corpus has multi-band planar files."""
    planar = [
        name
        for name, path in cog_corpus
        if name.startswith("gtiff-band-interleave")
        and tiff_truth(path).ifds[0].planar_configuration == 2
        and tiff_truth(path).ifds[0].samples_per_pixel > 1
    ]
    assert len(planar) >= 3, planar


# ------------------------------------------------------------------------------------------------
# Georeferencing against rasterio (transform, nodata) and the GeoKeys (EPSG)


@pytest.mark.parametrize("case", cases(PARSE))
def test_geo_matches_truth(case: Case, case_path: Path) -> None:
    truth = tiff_truth(case_path)
    rio = rasterio_truth(case_path)
    geo = parsed(case_path).geo

    # Raw tag values, as stored.
    assert geo.pixel_scale == truth.pixel_scale
    assert geo.tiepoint == truth.tiepoint
    assert geo.model_transformation == truth.model_transformation
    assert geo.raster_type == truth.raster_type

    # Transform: rasterio's (a, c, e, f), PixelIsPoint already shifted to the area convention.
    if rio.georeferenced:
        assert geo.transform is not None
        for got, want, name in zip(geo.transform, rio.rasteret_transform, "acef", strict=True):
            assert math.isclose(got, want, rel_tol=1e-12, abs_tol=1e-9), (
                f"transform {name}: got {got!r}, rasterio {want!r} "
                f"(raster_type {truth.raster_type})"
            )
    else:
        # No geotransform (no tags, or GCPs only): rasterio reports identity, we report None.
        assert geo.transform is None, geo.transform

    # Nodata: the GDAL_NODATA text as a float, and what GDAL makes of it.
    assert same_float(geo.nodata, truth.expected_nodata), (geo.nodata, truth.gdal_nodata_text)
    assert same_float(geo.nodata, rio.nodata), (geo.nodata, rio.nodata)

    # GeoKeys, decoded by hand from the raw tags.
    assert set(geo.geo_keys) == set(truth.geo_keys)
    for key, want_key in truth.geo_keys.items():
        got_key = geo.geo_keys[key]
        if isinstance(want_key, str):
            assert isinstance(got_key, str), key
            assert normalize_geo_ascii(got_key) == want_key, key
        else:
            assert got_key == want_key and type(got_key) is type(want_key), (key, got_key)

    # EPSG: what the keys name. rasterio must agree whenever the keys name a code (a GCP-only
    # file carries the GCPs' CRS); where they do not, rasterio may still *identify* one by
    # lookup - pinned in RASTERIO_IDENTIFIED_EPSG - but the header does not say it.
    want_epsg = truth.geokey_epsg
    assert geo.epsg == want_epsg, (
        f"epsg {geo.epsg}, GeoKeys say {want_epsg} "
        f"(model {truth.geo_keys.get(GT_MODEL_TYPE)}, "
        f"projected {truth.geo_keys.get(PROJECTED_CS_TYPE)}, "
        f"geographic {truth.geo_keys.get(GEOGRAPHIC_TYPE)})"
    )
    rio_epsg = rio.epsg if rio.crs_wkt is not None else rio.gcps_epsg
    if want_epsg is not None:
        assert rio_epsg == want_epsg, "truth disagrees with GDAL"
    else:
        assert rio_epsg == RASTERIO_IDENTIFIED_EPSG.get(case.id), rio_epsg

    if want_epsg is not None:
        assert geo.crs == f"EPSG:{want_epsg}"
    elif set(truth.geo_keys) - {GT_MODEL_TYPE, GT_RASTER_TYPE}:
        # A CRS without an EPSG code (user-defined keys, citations): described, never dropped.
        assert isinstance(geo.crs, str) and geo.crs.strip(), geo.crs
        assert not geo.crs.startswith("EPSG:"), geo.crs
    elif rio.crs_wkt is None and rio.gcps == 0:
        assert geo.crs is None, geo.crs


def test_corpus_covers_geo_conventions(cog_corpus: list[tuple[str, Path]]) -> None:
    """The corpus must exercise PixelIsPoint, user-defined CRSs, NaN and negative nodata."""
    truths = {name: tiff_truth(path) for name, path in cog_corpus}
    assert sum(t.raster_type == 2 for t in truths.values()) >= 2
    assert sum(t.has_geo_key_directory and t.geokey_epsg is None for t in truths.values()) >= 2
    nodata = [t.expected_nodata for t in truths.values() if t.expected_nodata is not None]
    assert any(math.isnan(v) for v in nodata)
    assert any(v < 0 for v in nodata)
    assert {t.geokey_epsg for t in truths.values()} >= {4326, 32633, 3857}


# ------------------------------------------------------------------------------------------------
# Files the parser must refuse


@pytest.mark.parametrize("case", cases(NOT_TILED, UNSUPPORTED, ANY_ERROR))
def test_refuses_unreadable_layouts(case: Case, case_path: Path) -> None:
    truth = tiff_truth(case_path)
    rio = rasterio_truth(case_path)
    data = case_path.read_bytes()
    if case.expect == NOT_TILED:
        assert not truth.is_tiled and not rio.rotated
        expected: type[TiffError] = NotTiledError
    elif case.expect == UNSUPPORTED:
        assert truth.is_tiled and rio.rotated
        expected = UnsupportedTiffError
    else:
        assert not truth.is_tiled and rio.rotated
        expected = TiffError
    with pytest.raises(expected) as info:
        parse_tiff_bytes(data)
    # Striped or rotated: both are refusals of a valid file, never "corrupt"/"truncated".
    assert info.value.error_class in {"not_tiled", "unsupported"}, info.value
    # The incremental path fails the same way.
    with pytest.raises(expected):
        read_header(lambda offset, length: data[offset : offset + length])


# ------------------------------------------------------------------------------------------------
# Incremental parsing: read_header and parse_header/NeedBytes


@pytest.mark.parametrize("first_read", FIRST_READS)
@pytest.mark.parametrize("case", cases(PARSE))
def test_read_header_matches_whole_file_parse(case: Case, case_path: Path, first_read: int) -> None:
    data = case_path.read_bytes()
    truth = tiff_truth(case_path)
    calls: list[tuple[int, int]] = []

    def read_range(offset: int, length: int) -> bytes:
        assert offset >= 0 and length > 0, (offset, length)
        calls.append((offset, length))
        return data[offset : offset + length]

    header, stats = read_header(read_range, first_read=first_read)
    assert_headers_equal(header, parsed(case_path), f"{case.id} first_read={first_read}")
    assert stats.reads == len(calls)
    assert calls[0] == (0, first_read)
    assert stats.bytes_read == sum(len(data[o : o + n]) for o, n in calls)
    if truth.header_end <= first_read:
        # Every IFD and tag value lies inside the first read: no second round trip.
        assert stats.reads == 1, calls
    # One layer of unknowns per round: IFDs, then their out-of-line values.
    assert stats.reads <= 1 + 2 * len(truth.ifds), calls


@pytest.mark.parametrize(
    "case",
    [
        p
        for p in cases(PARSE)
        if p.values[0].kind == "corpus" and p.values[0].name.startswith("cog-")
    ],
)
def test_gdal_cogs_need_one_default_read(case: Case, case_path: Path) -> None:
    """Files from GDAL's COG driver put every header first: one 64 KiB read is enough."""
    data = case_path.read_bytes()
    truth = tiff_truth(case_path)
    assert truth.ghost is not None and truth.ghost.get("LAYOUT") == "IFDS_BEFORE_DATA"
    assert truth.header_end <= 65536, "corpus COG headers are meant to fit in 64 KiB"
    _, stats = read_header(lambda offset, length: data[offset : offset + length])
    assert stats.reads == 1
    assert stats.bytes_read == min(65536, len(data))


def test_tables_beyond_16k_need_more_reads(cog_corpus: list[tuple[str, Path]]) -> None:
    """Tile tables past the first read are fetched, and a 16 KiB start costs extra reads."""
    paths = dict(cog_corpus)
    for name in (
        "cog-deflate-u8-1b-b32-many-tiles",
        "gtiff-sparse-20000-u8-b256",
        "gtiff-sparse-bigtiff-20000-u8-b256",
    ):
        data = paths[name].read_bytes()
        assert tiff_truth(paths[name]).header_end > 16384
        header, stats = read_header(lambda o, n, d=data: d[o : o + n], first_read=16384)
        assert stats.reads >= 2, name
        assert header.image.tile_offsets.size == header.image.tiles_per_band
    sparse = parsed(paths["gtiff-sparse-20000-u8-b256"]).image
    assert sparse.tile_offsets.size == 79 * 79
    assert np.count_nonzero(sparse.tile_byte_counts) == 2  # only two tiles were written


def _drive_exact(data: bytes, start: int, *, known_size: bool) -> tuple[TiffHeader, list, int]:
    """Feed parse_header exactly the ranges it asks for, starting from ``data[:start]``."""
    buffer = ByteBuffer(len(data) if known_size else None)
    buffer.add(0, data[:start])
    rounds: list[tuple[tuple[int, int], ...]] = []
    for _ in range(100):
        result = parse_header(buffer)
        if not isinstance(result, NeedBytes):
            return result, rounds, buffer.bytes_held
        assert result.ranges, "NeedBytes without ranges"
        assert list(result.ranges) == sorted(result.ranges), result.ranges
        progress = False
        for (offset, length), nxt in zip(result.ranges, (*result.ranges[1:], None), strict=True):
            assert offset >= 0 and length > 0, result.ranges
            if nxt is not None:
                assert offset + length < nxt[0], f"ranges not merged: {result.ranges}"
            if known_size:
                assert offset + length <= len(data), f"asks past the known end: {result.ranges}"
            chunk = data[offset : offset + length]
            if buffer.view(offset, len(chunk), "test") is None:
                progress = True
            buffer.add(offset, chunk)
            if len(chunk) < length:
                buffer.mark_end_of_file(len(data))
        assert progress, f"asked again for bytes it already has: {result.ranges}"
        rounds.append(result.ranges)
    raise AssertionError(f"no header after {len(rounds)} rounds")


@pytest.mark.parametrize("known_size", [True, False], ids=["size-known", "size-unknown"])
@pytest.mark.parametrize("case", cases(PARSE))
def test_need_bytes_from_16_bytes(case: Case, case_path: Path, known_size: bool) -> None:
    data = case_path.read_bytes()
    truth = tiff_truth(case_path)

    buffer = ByteBuffer(len(data) if known_size else None)
    buffer.add(0, data[:16])
    first = parse_header(buffer)
    assert isinstance(first, NeedBytes), "16 bytes cannot hold a whole header"
    assert all(offset + length > 16 for offset, length in first.ranges), first.ranges

    header, rounds, held = _drive_exact(data, 16, known_size=known_size)
    # The ghost header is compared in test_ghost_header_survives_incremental_parse.
    assert_headers_equal(header, parsed(case_path), case.id, ghost=False)
    assert len(rounds) <= 2 + 3 * len(truth.ifds), rounds
    # Fed only what it asked for, the parser held header bytes, never tile data (1 KiB of
    # slack for GDAL's ghost header between the file header and IFD0).
    assert held <= truth.header_bytes + 1024, (held, truth.header_bytes)


@pytest.mark.parametrize("start", [16, 64])
def test_ghost_header_survives_incremental_parse(
    cog_corpus: list[tuple[str, Path]], start: int
) -> None:
    """A header must not depend on how its bytes arrived: starting from a short first read,
    GDAL's structural metadata (ghost header, bytes 8..~200) is still reported."""
    path = dict(cog_corpus)["cog-deflate-u8-1b-b256-utm-ovr3-nodata0"]
    data = path.read_bytes()
    header, _, _ = _drive_exact(data, start, known_size=True)
    assert header.gdal_structural_metadata == parsed(path).gdal_structural_metadata
    assert header.gdal_structural_metadata.get("LAYOUT") == "IFDS_BEFORE_DATA"


def test_need_bytes_ranges_are_exact_for_a_known_file(cog_corpus: list[tuple[str, Path]]) -> None:
    """With the first 16 bytes of a classic TIFF, the first thing missing is IFD0 itself."""
    path = dict(cog_corpus)["cog-deflate-u8-1b-b256-utm-ovr3-nodata0"]
    data = path.read_bytes()
    ifd0 = int.from_bytes(data[4:8], "little")
    buffer = ByteBuffer(len(data))
    buffer.add(0, data[:16])
    result = parse_header(buffer)
    assert isinstance(result, NeedBytes)
    assert any(start <= ifd0 < start + length for start, length in result.ranges), (
        ifd0,
        result.ranges,
    )
