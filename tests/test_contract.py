"""The Collection contract: rasteret's field layout and values built from real headers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rasteret_assets.contract import (
    BAND_METADATA_TYPE,
    IFD_TYPE,
    BandHeader,
    band_codes_of,
    band_metadata_array,
    band_metadata_scalar,
    ifd_struct_array,
    metadata_column,
    missing_columns,
)
from rasteret_assets.tiff import read_header_from_path

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "tiff"

RASTERET_FIELDS = [
    ("image_width", pa.int32()),
    ("image_height", pa.int32()),
    ("tile_width", pa.int32()),
    ("tile_height", pa.int32()),
    ("dtype", pa.string()),
    ("transform", pa.list_(pa.float64())),
    ("predictor", pa.int32()),
    ("compression", pa.int32()),
    ("tile_offsets", pa.list_(pa.int64())),
    ("tile_byte_counts", pa.list_(pa.int64())),
    ("pixel_scale", pa.list_(pa.float64())),
    ("tiepoint", pa.list_(pa.float64())),
    ("nodata", pa.float64()),
    ("samples_per_pixel", pa.int32()),
    ("planar_configuration", pa.int32()),
    ("photometric", pa.int32()),
    ("extra_samples", pa.list_(pa.int32())),
]


def fixture(relative: str) -> Path:
    path = FIXTURES / relative
    if not path.exists():
        pytest.skip(f"shared fixture {relative} not available")
    return path


def test_first_seventeen_fields_are_rasterets_in_order() -> None:
    fields = [(f.name, f.type) for f in BAND_METADATA_TYPE][: len(RASTERET_FIELDS)]
    assert fields == RASTERET_FIELDS
    extras = [f.name for f in BAND_METADATA_TYPE][len(RASTERET_FIELDS) :]
    assert extras == ["overviews", "masks", "jpeg_tables", "crs", "source_etag", "source_size"]


def test_column_helpers() -> None:
    schema = pa.schema(
        [
            ("id", pa.string()),
            ("B04_metadata", BAND_METADATA_TYPE),
            ("note_metadata", pa.string()),
        ]
    )
    assert metadata_column("B04") == "B04_metadata"
    assert band_codes_of(schema) == ["B04"]
    # rasteret 0.4.1 writes only its 17 fields; a struct lacking one of them is no band.
    reference = pa.struct([pa.field(name, kind) for name, kind in RASTERET_FIELDS])
    partial = pa.struct([pa.field(name, kind) for name, kind in RASTERET_FIELDS[:-1]])
    written_by_rasteret = pa.schema([("red_metadata", reference), ("qa_metadata", partial)])
    assert band_codes_of(written_by_rasteret) == ["red"]
    assert missing_columns(schema) == ["datetime", "geometry", "assets"]


def test_values_match_the_parsed_header() -> None:
    header, _ = read_header_from_path(fixture("rio-tiler/cog_int16.tif"))
    value = band_metadata_scalar(header, etag='"e1"', size=1234).as_py()
    image = header.image
    assert value["image_width"] == image.image_width == 2658
    assert value["image_height"] == image.image_height == 2667
    assert value["dtype"] == "int16"
    assert value["tile_offsets"] == image.tile_offsets.tolist()
    assert value["tile_byte_counts"] == image.tile_byte_counts.tolist()
    assert value["transform"] == list(header.geo.transform)
    assert value["nodata"] == -32768.0
    assert value["crs"] == "EPSG:32621"
    assert value["source_etag"] == '"e1"'
    assert value["source_size"] == 1234
    assert [o["image_width"] for o in value["overviews"]] == [
        o.image_width for o in header.overviews
    ]
    assert value["overviews"][0]["tile_offsets"] == header.overviews[0].tile_offsets.tolist()


def test_planar_separate_bands_get_their_own_tile_block() -> None:
    header, _ = read_header_from_path(fixture("rasterio/all-nodata.tif"))
    image = header.image
    assert image.planar_configuration == 2 and image.samples_per_pixel == 4
    per_band = image.tiles_per_band
    rows = [BandHeader(header, band) for band in range(4)]
    values = band_metadata_array(rows).to_pylist()
    for band, value in enumerate(values):
        expected = image.tile_offsets[band * per_band : (band + 1) * per_band]
        assert value["tile_offsets"] == expected.tolist()
    assert len({tuple(v["tile_offsets"]) for v in values}) == 4


def test_masks_and_jpeg_tables_are_kept() -> None:
    header, _ = read_header_from_path(fixture("rasterio/cogeo.tif"))
    value = band_metadata_scalar(header, band_index=2).as_py()
    assert value["compression"] == 7
    assert value["jpeg_tables"] == header.image.jpeg_tables
    assert value["jpeg_tables"].startswith(b"\xff\xd8")
    assert len(value["masks"]) == 7
    assert len(value["overviews"]) == 6
    assert value["masks"][0]["image_width"] == 1024


def test_failed_assets_become_null_rows_and_survive_parquet(tmp_path: Path) -> None:
    header, _ = read_header_from_path(fixture("rio-tiler/cog.tif"))
    column = band_metadata_array([BandHeader(header), None, BandHeader(header, etag="x")])
    column.validate(full=True)
    assert column.type == BAND_METADATA_TYPE
    assert column.is_null().to_pylist() == [False, True, False]
    assert column[2]["overviews"].as_py() == column[0]["overviews"].as_py()
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"B01_metadata": column}), path)
    back = pq.read_table(path).column("B01_metadata").combine_chunks()
    assert back.type == BAND_METADATA_TYPE
    assert back.to_pylist() == column.to_pylist()


def test_many_rows_build_tile_tables_without_python_lists() -> None:
    header, _ = read_header_from_path(fixture("rio-tiler/cog.tif"))
    column = band_metadata_array([BandHeader(header)] * 500)
    offsets = column.field("tile_offsets").flatten().to_numpy()
    assert offsets.size == 500 * header.image.tile_offsets.size
    np.testing.assert_array_equal(
        offsets[-header.image.tile_offsets.size :], header.image.tile_offsets
    )


def test_band_index_out_of_range_is_rejected() -> None:
    header, _ = read_header_from_path(fixture("rio-tiler/cog.tif"))
    with pytest.raises(ValueError, match="band_index 3 out of range"):
        band_metadata_scalar(header, band_index=3)


@pytest.mark.parametrize(
    ("relative", "expected"),
    [("rio-tiler/cog_int16.tif", None), ("cogeotiff/rgba8_cog.tiff", [2])],
)
def test_extra_samples_is_null_when_the_tag_is_absent(
    relative: str, expected: list[int] | None
) -> None:
    """rasteret 0.4.1 stores null, not ``[]``, for a file without an ExtraSamples tag."""
    header, _ = read_header_from_path(fixture(relative))
    assert header.image.extra_samples == (None if expected is None else tuple(expected))
    assert band_metadata_scalar(header).as_py()["extra_samples"] == expected
    (ifd,) = ifd_struct_array([(header.image, None)], IFD_TYPE).to_pylist()
    assert ifd["extra_samples"] == expected
