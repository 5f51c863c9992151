"""STAC asset fields stay beside ``href``, typed: a Landsat C2 L2 user still finds the
reflectance scale and offset, whether the records came as STAC items or a record table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rasteret_assets.contract import ASSET_TYPE
from rasteret_assets.ingest import RecordTableBuilder
from rasteret_assets.ingest.stac.band_map import BandMap
from rasteret_assets.ingest.stac.items import StacItemConverter, StacItemError

LANDSAT_TABLE = "geoparquet/pc_landsat-c2-l2_100.parquet"
LANDSAT_ITEMS = "landsat-c2-l2_items_4.json"


def landsat_items(stac_fixtures: Path) -> list[dict]:
    document = json.loads((stac_fixtures / "planetary-computer" / LANDSAT_ITEMS).read_text())
    return document if isinstance(document, list) else document["features"]


def assert_reflectance_fields(red: dict) -> None:
    (band,) = red["raster:bands"]
    assert (band["scale"], band["offset"], band["nodata"]) == (2.75e-05, -0.2, 0.0)
    assert band["data_type"] == "uint16"
    assert red["eo:bands"][0]["common_name"] == "red"
    assert "data" in red["roles"] and red["type"].startswith("image/tiff")


def test_stac_items_keep_their_asset_fields(stac_fixtures: Path) -> None:
    items = landsat_items(stac_fixtures)
    batch = StacItemConverter(BandMap({"red": "red", "nir": "nir08"})).to_record_batch(items)
    assert {f.type for f in batch.schema.field("assets").type} == {ASSET_TYPE}
    for row in batch.column("assets").to_pylist():
        assert_reflectance_fields(row["red"])


def test_record_tables_keep_their_asset_fields(stac_fixtures: Path) -> None:
    path = stac_fixtures.parent / LANDSAT_TABLE
    if not path.exists():
        pytest.skip(f"shared fixture {path} not found")
    table = RecordTableBuilder(path).build().to_table(columns=["assets"])
    assert_reflectance_fields(table.column("assets")[0].as_py()["red"])


def test_an_asset_field_of_the_wrong_shape_names_the_item(stac_fixtures: Path) -> None:
    items = landsat_items(stac_fixtures)
    items[1]["assets"]["red"]["raster:bands"] = "scale=2.75e-05"
    with pytest.raises(StacItemError, match=items[1]["id"]):
        StacItemConverter(BandMap({"red": "red"})).to_record_batch(items)


def test_nan_nodata_written_as_text_becomes_a_number(stac_fixtures: Path) -> None:
    items = landsat_items(stac_fixtures)[:1]
    items[0]["assets"]["red"]["raster:bands"][0]["nodata"] = "nan"
    batch = StacItemConverter(BandMap({"red": "red"})).to_record_batch(items)
    nodata = batch.column("assets")[0].as_py()["red"]["raster:bands"][0]["nodata"]
    assert nodata != nodata  # NaN
