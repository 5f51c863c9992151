"""STAC Item dicts → record batches, band maps and the source registry, on real items.

The items are the shared fixtures as published by Earth Search and Planetary Computer; where
a test needs a defect real catalogs also produce (a property with the wrong type, a missing
footprint), it changes one field of a real item and says so.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import shapely
from asset_values import core

from rasteret_assets.contract import ASSET_TYPE, DATETIME_TYPE
from rasteret_assets.ingest.stac.band_map import BandMap, BandMapError
from rasteret_assets.ingest.stac.items import (
    DECLARED_PROPERTIES,
    PROPERTIES_JSON,
    StacItemConverter,
    StacItemError,
    record_schema,
)
from rasteret_assets.sources import (
    CloudConfig,
    DataSource,
    UnknownDataSourceError,
    get_source,
    list_sources,
    register_source,
)


def load(stac_fixtures: Path, name: str) -> list[dict[str, Any]]:
    data = json.loads((stac_fixtures / name).read_text())
    return data["features"] if isinstance(data, dict) else data


@pytest.fixture
def earth_search_pages(stac_fixtures: Path) -> list[list[dict[str, Any]]]:
    return [
        load(stac_fixtures, "earth-search/search_cql2_page1.json"),
        load(stac_fixtures, "earth-search/search_cql2_page2.json"),
    ]


S2_BANDS = BandMap({"B04": "red", "B08": "nir"})


# -- record batches ----------------------------------------------------------------------


def test_pages_with_mixed_property_types_share_one_declared_schema(
    earth_search_pages: list[list[dict[str, Any]]],
) -> None:
    # Page 1 mixes sentinel-1-grd (no eo:cloud_cover), sentinel-2-l1c (eo:cloud_cover == 0,
    # an int) and sentinel-2-*-l2a (floats); page 2 has yet another mix.
    converter = StacItemConverter(S2_BANDS)
    batches = [converter.to_record_batch(page) for page in earth_search_pages]
    assert all(b.schema == record_schema(["B04", "B08"]) for b in batches)
    table = pa.Table.from_batches(batches)
    rows = {r["id"]: r for r in table.to_pylist()}
    assert rows["S2B_20EPT_20250731_0_L1C"]["eo:cloud_cover"] == 0.0
    s1 = [r for r in rows.values() if r["collection"] == "sentinel-1-grd"]
    assert s1 and all(r["eo:cloud_cover"] is None for r in s1)
    # Undeclared properties survive, unchanged, in the JSON column.
    raw = next(i for i in earth_search_pages[0] if i["id"] == "S2B_T20EPT_20250731T131905_L2A")
    kept = json.loads(rows[raw["id"]][PROPERTIES_JSON])
    assert kept["s2:product_type"] == raw["properties"]["s2:product_type"]
    assert kept["mgrs:utm_zone"] == raw["properties"]["mgrs:utm_zone"]
    assert "eo:cloud_cover" not in kept and "datetime" not in kept
    assert rows[raw["id"]]["proj:epsg"] == raw["properties"]["proj:epsg"] == 32720
    assert rows[raw["id"]]["platform"] == "sentinel-2b"


def test_assets_keep_href_and_band_index_of_mapped_bands_only(
    earth_search_pages: list[list[dict[str, Any]]],
) -> None:
    item = next(i for i in earth_search_pages[0] if i["collection"] == "sentinel-2-c1-l2a")
    bands = BandMap({"R": "visual", "G": "visual", "N": "nir"}, {"R": 0, "G": 1})
    rewrite = {"https://e84-earth-search-sentinel-data.s3.us-west-2.amazonaws.com/": "s3://e84/"}
    batch = StacItemConverter(bands, url_rewrite_patterns=rewrite).to_record_batch([item])
    kept = batch.column("assets")[0].as_py()
    assets = core(kept)
    assert batch.schema.field("assets").type == pa.struct(
        [pa.field(b, ASSET_TYPE) for b in ("R", "G", "N")]
    )
    suffix = item["assets"]["visual"]["href"].split(".amazonaws.com/", 1)[1]
    assert assets["R"] == {"href": f"s3://e84/{suffix}", "band_index": 0}
    assert assets["G"] == {"href": f"s3://e84/{suffix}", "band_index": 1}
    assert assets["N"]["href"].endswith("/B08.tif") and assets["N"]["href"].startswith("s3://e84/")
    given = item["assets"]["nir"]
    assert (kept["N"]["title"], kept["N"]["roles"]) == (given["title"], given["roles"])


def test_band_missing_from_some_items_is_null_there(
    earth_search_pages: list[list[dict[str, Any]]],
) -> None:
    converter = StacItemConverter(BandMap({"SCL": "scl", "HH": "hh"}))
    table = pa.Table.from_batches([converter.to_record_batch(p) for p in earth_search_pages])
    by_collection = {}
    for row in table.to_pylist():
        by_collection.setdefault(row["collection"], []).append(row["assets"])
    assert all(a["HH"] is not None and a["SCL"] is None for a in by_collection["sentinel-1-grd"])
    assert all(a["SCL"] is not None and a["HH"] is None for a in by_collection["sentinel-2-l2a"])
    # L1C has no scene classification: the asset key count says so.
    assert all(a["SCL"] is None for a in by_collection["sentinel-2-l1c"])
    assert converter.asset_keys["hh"] == len(by_collection["sentinel-1-grd"])


def test_null_datetime_falls_back_to_start_datetime(stac_fixtures: Path) -> None:
    items = load(stac_fixtures, "planetary-computer/io-lulc-annual-v02_items_4.json")
    assert all(i["properties"]["datetime"] is None for i in items)
    batch = StacItemConverter(BandMap({"lulc": "data"})).to_record_batch(items)
    assert batch.schema.field("datetime").type == DATETIME_TYPE
    assert batch.column("datetime").to_pylist() == batch.column("start_datetime").to_pylist()
    assert batch.column("datetime")[0].as_py().isoformat() == "2023-01-01T00:00:00+00:00"
    assert batch.column("end_datetime")[0].as_py().isoformat() == "2024-01-01T00:00:00+00:00"


def test_geometry_becomes_wkb_of_the_same_footprint(stac_fixtures: Path) -> None:
    items = load(stac_fixtures, "planetary-computer/sentinel-2-l2a_items_4.json")
    batch = StacItemConverter(BandMap({"B04": "B04"})).to_record_batch(items)
    for item, wkb in zip(items, batch.column("geometry").to_pylist(), strict=True):
        expected = shapely.geometry.shape(item["geometry"])
        assert shapely.from_wkb(wkb).equals(expected)


def test_crs_falls_back_to_the_mapped_asset(stac_fixtures: Path) -> None:
    item = copy.deepcopy(load(stac_fixtures, "planetary-computer/sentinel-2-l2a_items_4.json")[0])
    # Some catalogs only declare the projection per asset: move it there.
    epsg = item["properties"].pop("proj:epsg")
    item["assets"]["B04"]["proj:epsg"] = epsg
    batch = StacItemConverter(BandMap({"B04": "B04"})).to_record_batch([item])
    assert batch.column("proj:epsg").to_pylist() == [epsg]


def test_repeated_items_are_dropped_and_counted(stac_fixtures: Path) -> None:
    items = load(stac_fixtures, "planetary-computer/sentinel-2-l2a_items_4.json")
    converter = StacItemConverter(BandMap({"B04": "B04"}))
    first = converter.to_record_batch(items[:3])
    second = converter.to_record_batch(items[2:])  # item 2 again, as after a catalog update
    assert (first.num_rows, second.num_rows) == (3, 1)
    assert converter.duplicates_dropped == 1 and converter.items_seen == 4


@pytest.mark.parametrize(
    ("change", "field", "fragment"),
    [
        (
            lambda i: i["properties"].update({"eo:cloud_cover": "12.5"}),
            "properties.eo:cloud_cover",
            "expected a number, got str",
        ),
        (
            lambda i: i["properties"].update({"proj:epsg": 32647.5}),
            "properties.proj:epsg",
            "expected an integer",
        ),
        (
            lambda i: i["properties"].update({"platform": ["Sentinel-2B"]}),
            "properties.platform",
            "expected a string",
        ),
        (
            lambda i: i["properties"].update({"datetime": "19 April 2024"}),
            "properties.datetime",
            "not an RFC 3339 timestamp",
        ),
        (lambda i: i.update({"geometry": None}), "geometry", "GeoJSON geometry"),
        (
            lambda i: i.update({"geometry": {"type": "Polygon", "coordinates": []}}),
            "geometry",
            "non-empty",
        ),
        (lambda i: i["assets"]["B04"].pop("href"), "assets.B04.href", "no href"),
    ],
)
def test_bad_item_raises_naming_item_and_field(
    stac_fixtures: Path, change: Any, field: str, fragment: str
) -> None:
    items = copy.deepcopy(load(stac_fixtures, "planetary-computer/sentinel-2-l2a_items_4.json"))
    change(items[2])
    with pytest.raises(StacItemError) as info:
        StacItemConverter(BandMap({"B04": "B04"})).to_record_batch(items)
    assert info.value.item_id == items[2]["id"]
    assert info.value.field == field
    assert fragment in str(info.value) and items[2]["id"] in str(info.value)


def test_integral_float_epsg_is_accepted(stac_fixtures: Path) -> None:
    item = copy.deepcopy(load(stac_fixtures, "planetary-computer/sentinel-2-l2a_items_4.json")[0])
    item["properties"]["proj:epsg"] = 32647.0  # as pandas-written JSON spells it
    batch = StacItemConverter(BandMap({"B04": "B04"})).to_record_batch([item])
    assert batch.column("proj:epsg").to_pylist() == [32647]


def test_item_without_id_is_rejected(stac_fixtures: Path) -> None:
    item = copy.deepcopy(load(stac_fixtures, "planetary-computer/sentinel-2-l2a_items_4.json")[0])
    del item["id"]
    with pytest.raises(StacItemError, match="id must be a non-empty string") as info:
        StacItemConverter(BandMap({"B04": "B04"})).to_record_batch([item])
    assert info.value.field == "id"


def test_declared_schema_does_not_depend_on_the_data() -> None:
    converter = StacItemConverter(S2_BANDS)
    empty = converter.to_record_batch([])
    assert empty.num_rows == 0 and empty.schema == record_schema(["B04", "B08"])
    names = empty.schema.names
    assert [p.name for p in DECLARED_PROPERTIES] == names[7:-1]


# -- band maps -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bands", "index", "message"),
    [
        ({}, {}, "band_map is empty"),
        ({"B04": ""}, {}, "non-empty asset key"),
        ({"B04": "red"}, {"B08": 0}, "not in band_map"),
        ({"B04": "red"}, {"B04": -1}, "non-negative integer"),
        ({"R": "image", "G": "image"}, {"R": 0}, "share an asset"),
    ],
)
def test_malformed_band_maps_are_rejected(bands: dict, index: dict, message: str) -> None:
    with pytest.raises(BandMapError, match=message):
        BandMap(bands, index)


def test_band_map_against_items_names_missing_bands_and_present_keys() -> None:
    bands = BandMap({"B04": "red", "B08": "B08"})
    with pytest.raises(BandMapError) as info:
        bands.check_against({"red": 3, "nir": 3, "blue": 1}, n_items=3)
    assert info.value.missing == {"B08": "B08"}
    assert info.value.available == ("blue", "nir", "red")
    assert "'B08' -> 'B08'" in str(info.value) and "blue, nir, red" in str(info.value)
    bands.check_against({"red": 3, "B08": 1}, n_items=3)  # present in some items is enough


# -- the source registry -------------------------------------------------------------------


def test_registered_sources_carry_band_maps_and_cloud_settings() -> None:
    assert {"sentinel-2-l2a", "sentinel-2-c1-l2a", "landsat-c2-l2"} <= set(list_sources())
    s2 = get_source("Sentinel-2-L2A")
    assert s2.band_map["B04"] == "red" and s2.band_map["B8A"] == "nir08"
    assert s2.cloud.anon is True and not s2.cloud.requester_pays
    assert s2.cloud.url_rewrite_patterns == {
        "https://sentinel-cogs.s3.us-west-2.amazonaws.com/": "s3://sentinel-cogs/"
    }
    landsat = get_source("landsat-c2l2-sr")  # rasteret 0.4's id is an alias
    assert landsat.id == "landsat-c2-l2" and landsat.band_map["B5"] == "nir08"
    assert landsat.cloud.requester_pays and landsat.cloud.anon is False


def test_unknown_source_lists_the_known_ones() -> None:
    with pytest.raises(UnknownDataSourceError) as info:
        get_source("sentinel-3")
    assert "sentinel-3" in str(info.value)
    for known in list_sources():
        assert known in str(info.value)


def test_registry_refuses_silent_overwrite_and_bad_settings() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_source(get_source("sentinel-2-l2a"))
    with pytest.raises(ValueError, match="anon must not be True"):
        CloudConfig(requester_pays=True, anon=True)
    with pytest.raises(ValueError, match="not in band_map"):
        DataSource("x", "x", "http://x", "x", {"B1": "b1"}, {"B2": 0})
