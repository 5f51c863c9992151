"""``normalize_table`` / ``build_collection_from_table`` on real STAC and stac-geoparquet data.

Inputs are the shared fixtures (Planetary Computer stac-geoparquet exports and STAC item
JSON) plus small hand-made tables for the shapes real sources use less often.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import shapely
from asset_values import core

from rasteret_assets.collection import Collection
from rasteret_assets.contract import (
    ASSET_TYPE,
    BBOX_TYPE,
    DATETIME_TYPE,
    SCENE_BBOX_TYPE,
    ContractError,
    DuplicateIdsError,
    MissingColumnsError,
)
from rasteret_assets.ingest import build_collection_from_table, normalize_table

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures"
GEOPARQUET = FIXTURES / "geoparquet"
STAC = FIXTURES / "stac" / "planetary-computer"

SQUARE = {"type": "Polygon", "coordinates": [[[10, 40], [11, 40], [11, 41], [10, 41], [10, 40]]]}


def fixture(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"shared fixture {path} not found")
    return path


def stac_items(name: str) -> list[dict]:
    return json.loads(fixture(STAC / name).read_text())


def stac_table(items: list[dict]) -> pa.Table:
    """A record table as a STAC builder would hand it over: properties flattened."""
    rows = []
    for item in items:
        row = dict(item["properties"])
        row.update(
            id=item["id"],
            geometry=json.dumps(item["geometry"]),
            assets=json.dumps(item["assets"]),
        )
        rows.append(row)
    return pa.Table.from_pylist(rows)


def minimal(**columns: list) -> pa.Table:
    n = len(next(iter(columns.values())))
    base = {
        "id": [f"r{i}" for i in range(n)],
        "datetime": ["2024-01-15T10:00:00Z"] * n,
        "geometry": [json.dumps(SQUARE)] * n,
        "assets": [{"B04": f"s3://bucket/r{i}/B04.tif"} for i in range(n)],
    }
    base.update(columns)
    return pa.table(base)


# --------------------------------------------------------------------------- table checks


def test_missing_columns_error_lists_missing_and_present() -> None:
    table = pa.table({"id": ["a"], "geometry": [b""], "properties": [1]})
    with pytest.raises(MissingColumnsError) as err:
        normalize_table(table)
    message = str(err.value)
    assert "['datetime', 'assets']" in message
    assert "present ['id', 'geometry', 'properties']" in message


def test_duplicate_ids_are_rejected_by_name() -> None:
    table = minimal(id=["a", "b", "a", "c", "c", "c"])
    with pytest.raises(DuplicateIdsError) as err:
        normalize_table(table)
    assert "2 repeat" in str(err.value)
    assert set(err.value.ids) == {"a", "c"}


def test_null_id_is_rejected_with_its_row() -> None:
    with pytest.raises(ContractError, match=r"no id \(rows \[1\]"):
        normalize_table(minimal(id=["a", None]))


def test_integer_ids_become_strings() -> None:
    out = normalize_table(minimal(id=[7, 8]))
    assert out.schema.field("id").type == pa.string()
    assert out.column("id").to_pylist() == ["7", "8"]


# --------------------------------------------------------------------------- stac-geoparquet


def test_stac_geoparquet_fixture_normalises_to_the_contract() -> None:
    source = pq.read_table(fixture(GEOPARQUET / "pc_sentinel-2-l2a_100.parquet"))
    out = normalize_table(source)

    assert out.num_rows == source.num_rows == 100
    schema = out.schema
    assert schema.names[:8] == [
        "id",
        "datetime",
        "geometry",
        "assets",
        "bbox",
        "scene_bbox",
        "proj:epsg",
        "crs",
    ]
    assert schema.names[-2:] == ["year", "month"]
    assert schema.field("datetime").type == DATETIME_TYPE
    assert schema.field("geometry").type == pa.binary()
    assert schema.field("bbox").type == BBOX_TYPE
    assert schema.field("scene_bbox").type == SCENE_BBOX_TYPE
    assert schema.field("proj:epsg").type == pa.int32()
    assert schema.field("year").type == schema.field("month").type == pa.int32()
    assets_type = schema.field("assets").type
    assert {f.type for f in assets_type} == {ASSET_TYPE}
    assert {"B04", "B08", "SCL", "visual"} <= {f.name for f in assets_type}

    # Row order, ids and instants are preserved (ms → us).
    assert out.column("id").to_pylist() == source.column("id").to_pylist()
    assert out.column("datetime").to_pylist() == source.column("datetime").to_pylist()
    # Footprints are the same geometry, re-encoded as ISO WKB.
    assert shapely.equals(
        shapely.from_wkb(out.column("geometry").to_numpy()),
        shapely.from_wkb(source.column("geometry").to_numpy()),
    ).all()
    # The derived bbox equals the bbox stac-geoparquet computed independently.
    for field in ("xmin", "ymin", "xmax", "ymax"):
        np.testing.assert_allclose(
            pc.struct_field(out.column("bbox"), field).to_numpy(),
            pc.struct_field(source.column("bbox"), field).to_numpy(),
            rtol=0,
            atol=1e-7,
        )
    scene = np.array(out.column("scene_bbox").to_pylist())
    assert scene[:, 0].tolist() == pc.struct_field(out.column("bbox"), "xmin").to_pylist()
    # Assets keep href and their STAC fields, typed, and gain band_index 0.
    first = out.column("assets")[0].as_py()["B04"]
    given = source.column("assets")[0].as_py()["B04"]
    assert (first["href"], first["band_index"]) == (given["href"], 0)
    assert (first["title"], first["type"], first["roles"]) == (
        given["title"],
        given["type"],
        given["roles"],
    )
    assert first["gsd"] == given["gsd"] and first["eo:bands"][0]["common_name"] == "red"
    assert out.column("proj:epsg").to_pylist() == source.column("proj:epsg").to_pylist()
    assert out.column("crs")[0].as_py() == f"EPSG:{source.column('proj:epsg')[0].as_py()}"
    assert out.column("year").to_pylist() == pc.year(source.column("datetime")).to_pylist()
    assert out.column("month").to_pylist() == pc.month(source.column("datetime")).to_pylist()
    # Properties pass through untouched, with their original types.
    for name in ("eo:cloud_cover", "s2:mgrs_tile", "links", "stac_extensions"):
        assert out.schema.field(name) == source.schema.field(name)
        assert out.column(name).equals(source.column(name))


def test_legacy_geoparquet_bbox_list_and_stale_metadata_are_replaced() -> None:
    source = pq.read_table(fixture(GEOPARQUET / "pc_naip_5_legacy.parquet"))
    assert source.schema.field("bbox").type == pa.list_(pa.float64())
    out = normalize_table(source)
    assert out.schema.field("bbox").type == BBOX_TYPE
    assert out.schema.metadata is None  # the 0.4.0 ``geo`` and pandas blobs describe the input
    legacy = np.array(source.column("bbox").to_pylist())
    assert np.allclose(np.array(out.column("scene_bbox").to_pylist()), legacy, atol=1e-7)


# --------------------------------------------------------------------------- datetimes


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (
            pa.array(["2024-01-15T10:00:00Z", "2024-01-15T12:00:00+02:00"]),
            [datetime(2024, 1, 15, 10, tzinfo=UTC)] * 2,
        ),
        (
            pa.array(["2024-01-15T10:00:00.123456789Z", "2024-01-15t10:00:00z"]),
            [
                datetime(2024, 1, 15, 10, 0, 0, 123456, tzinfo=UTC),
                datetime(2024, 1, 15, 10, tzinfo=UTC),
            ],
        ),
        (
            pa.array(["2024-01-15T10:00:00", "2024-01-15"]),
            [datetime(2024, 1, 15, 10, tzinfo=UTC), datetime(2024, 1, 15, tzinfo=UTC)],
        ),
        (
            pa.array(
                [datetime(2024, 1, 15, 10), datetime(2023, 12, 31, 23, 59)], pa.timestamp("s")
            ),
            [datetime(2024, 1, 15, 10, tzinfo=UTC), datetime(2023, 12, 31, 23, 59, tzinfo=UTC)],
        ),
        (
            pa.array([datetime(2024, 1, 1, 0, 30, tzinfo=UTC)] * 2, pa.timestamp("ms", "UTC")).cast(
                pa.timestamp("ms", "Europe/Berlin")
            ),
            [datetime(2024, 1, 1, 0, 30, tzinfo=UTC)] * 2,
        ),
        (
            pa.array([date(2024, 2, 29), date(1999, 12, 31)]),
            [datetime(2024, 2, 29, tzinfo=UTC), datetime(1999, 12, 31, tzinfo=UTC)],
        ),
        (
            pa.array([2021, 1985], pa.int16()),
            [datetime(2021, 1, 1, tzinfo=UTC), datetime(1985, 1, 1, tzinfo=UTC)],
        ),
    ],
    ids=[
        "rfc3339-offsets",
        "nanos-lowercase",
        "naive-strings",
        "naive-ts",
        "zoned-ts",
        "dates",
        "years",
    ],
)
def test_datetime_forms_become_utc_microseconds(values: pa.Array, expected: list) -> None:
    out = normalize_table(minimal(datetime=values))
    assert out.schema.field("datetime").type == DATETIME_TYPE
    assert out.column("datetime").to_pylist() == expected
    assert out.column("year").to_pylist() == [e.year for e in expected]
    assert out.column("month").to_pylist() == [e.month for e in expected]


def test_offset_moves_a_record_into_the_utc_month() -> None:
    out = normalize_table(minimal(datetime=["2024-02-01T01:30:00+02:00"]))
    assert (out.column("year")[0].as_py(), out.column("month")[0].as_py()) == (2024, 1)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (pa.array([1.5, 2.0]), r"cannot read double as a datetime"),
        (
            pa.array(["2024-01-15T10:00:00Z", "2024-13-01"]),
            r"not an RFC 3339 timestamp in record 'r1' \(e.g. '2024-13-01'\)",
        ),
        (
            pa.array([2024, 20240115]),
            r"read as years .*out of range in record 'r1' \(e.g. 20240115\)",
        ),
    ],
)
def test_unreadable_datetimes_raise_naming_records(values: pa.Array, message: str) -> None:
    with pytest.raises(ContractError, match=message) as err:
        normalize_table(minimal(datetime=values))
    assert err.value.column == "datetime"


def test_null_datetime_falls_back_to_start_datetime_of_real_stac_items() -> None:
    """io-lulc annual items have ``datetime: null`` and a start/end period (STAC's rule)."""
    items = stac_items("io-lulc-annual-v02_items_4.json")
    table = stac_table(items)
    assert table.column("datetime").null_count == 4
    out = normalize_table(table)
    assert set(out.column("datetime").to_pylist()) == {datetime(2023, 1, 1, tzinfo=UTC)}
    months = zip(out.column("year").to_pylist(), out.column("month").to_pylist(), strict=True)
    assert set(months) == {(2023, 1)}


def test_null_datetime_without_start_datetime_names_the_records() -> None:
    with pytest.raises(
        ContractError, match=r"null, with no 'start_datetime' to fall back on, in record 'r1'"
    ) as err:
        normalize_table(minimal(datetime=["2024-01-01T00:00:00Z", None]))
    assert err.value.ids == ("r1",)


# --------------------------------------------------------------------------- geometry


def test_geometry_encodings_all_become_iso_wkb() -> None:
    shape = shapely.geometry.shape(SQUARE)
    as_struct = pa.array([SQUARE])  # a GeoJSON dict from Python → Arrow struct
    big_endian = shapely.to_wkb(shape, byte_order=0)
    with_srid = shapely.to_wkb(shapely.set_srid(shape, 4326), include_srid=True)
    for geometry in (
        pa.array([json.dumps(SQUARE)]),
        as_struct,
        pa.array([big_endian], pa.binary()),
        pa.array([with_srid], pa.large_binary()),
    ):
        out = normalize_table(minimal(geometry=geometry))
        wkb = out.column("geometry")[0].as_py()
        assert wkb == shapely.to_wkb(shape, flavor="iso", byte_order=1)
        assert out.column("bbox")[0].as_py() == {"xmin": 10, "ymin": 40, "xmax": 11, "ymax": 41}


@pytest.mark.parametrize(
    ("geometry", "message"),
    [
        (
            pa.array([b"\x01\x03\x00", shapely.to_wkb(shapely.box(0, 0, 1, 1))]),
            r"invalid WKB in record 'r0'",
        ),
        (pa.array(['{"type": "Polygon"}', json.dumps(SQUARE)]), r"invalid GeoJSON in record 'r0'"),
        (
            pa.array([json.dumps(SQUARE), '{"type": "Polygon", "coordinates": []}']),
            r"empty geometry in record 'r1'",
        ),
        (
            pa.array(
                [json.dumps(SQUARE), shapely.to_geojson(shapely.box(500000, 4e6, 6e5, 4.1e6))]
            ),
            r"outside lon/lat ranges .* in record 'r1'",
        ),
        (pa.array([1, 2]), r"cannot read int64 as a geometry"),
    ],
    ids=["bad-wkb", "bad-geojson", "empty", "projected", "wrong-type"],
)
def test_unusable_geometries_raise_naming_records(geometry: pa.Array, message: str) -> None:
    with pytest.raises(ContractError, match=message) as err:
        normalize_table(minimal(geometry=geometry))
    assert err.value.column == "geometry"


# --------------------------------------------------------------------------- antimeridian


def crossing_polygon() -> dict:
    """A footprint drawn the way many catalogues do: vertices jump 179 → -179."""
    ring = [[178.5, 50.0], [-179.0, 50.0], [-179.0, 52.0], [178.5, 52.0], [178.5, 50.0]]
    return {"type": "Polygon", "coordinates": [ring]}


def test_antimeridian_footprints_get_a_full_longitude_bbox() -> None:
    split = shapely.MultiPolygon([shapely.box(178.5, 50, 180, 52), shapely.box(-180, 50, -179, 52)])
    unwrapped = shapely.box(178.5, 50, 181, 52)
    table = minimal(
        geometry=[
            json.dumps(crossing_polygon()),
            shapely.to_geojson(split),
            shapely.to_geojson(unwrapped),
            json.dumps(SQUARE),
        ]
    )
    out = normalize_table(table)
    boxes = out.column("bbox").to_pylist()
    for crossing in boxes[:3]:
        assert crossing == {"xmin": -180.0, "ymin": 50.0, "xmax": 180.0, "ymax": 52.0}
    assert boxes[3] == {"xmin": 10.0, "ymin": 40.0, "xmax": 11.0, "ymax": 41.0}
    assert out.column("scene_bbox")[0].as_py() == [-180.0, 50.0, 180.0, 52.0]
    # The stored geometry is the one given (re-encoded), not rewritten.
    stored = shapely.from_wkb(out.column("geometry")[0].as_py())
    assert stored.equals(shapely.geometry.shape(crossing_polygon()))


def test_antimeridian_crossing_footprint_of_real_cog_is_found_by_bbox_queries() -> None:
    """cog_dateline.tif (UTM 60N) really straddles 180°: its lon/lat corners jump sign."""
    rasterio = pytest.importorskip("rasterio")
    from rasterio.warp import transform

    with rasterio.open(fixture(FIXTURES / "tiff" / "rio-tiler" / "cog_dateline.tif")) as src:
        b = src.bounds
        lons, lats = transform(
            src.crs,
            "EPSG:4326",
            [b.left, b.right, b.right, b.left, b.left],
            [b.bottom, b.bottom, b.top, b.top, b.bottom],
        )
    assert max(lons) > 178 and min(lons) < -178  # corners on both sides of 180°
    footprint = shapely.Polygon(zip(lons, lats, strict=True))
    table = minimal(
        id=["dateline", "elsewhere"],
        geometry=[shapely.to_geojson(footprint), json.dumps(SQUARE)],
    )
    collection = build_collection_from_table(table, name="dateline")
    east_of_180 = (179.2, 51.0, 179.8, 52.0)
    west_of_180 = (-179.0, 51.0, -178.8, 52.0)
    across = (179.5, 51.0, -179.5, 52.0)  # a query box that itself crosses
    for query in (east_of_180, west_of_180, across):
        found = collection.filter(bbox=query).to_table(columns=["id"])
        assert found.column("id").to_pylist() == ["dateline"], query
    # A plain range predicate — what any SQL user writes — finds it as well.
    con = duckdb.connect()
    con.register("records", collection.to_table(columns=["id", "bbox"]))
    hits = con.execute(
        "SELECT id FROM records WHERE bbox.xmin <= 179.8 AND bbox.xmax >= 179.2 "
        "AND bbox.ymin <= 52 AND bbox.ymax >= 51"
    ).fetchall()
    assert hits == [("dateline",)]


def test_real_io_lulc_tiles_on_the_antimeridian_are_found_from_both_sides() -> None:
    out = build_collection_from_table(stac_table(stac_items("io-lulc-annual-v02_items_4.json")))
    for query in ((179.0, 65.0, 179.9, 66.0), (-179.9, 65.0, -179.0, 66.0)):
        ids = out.filter(bbox=query).to_table(columns=["id"]).column("id").to_pylist()
        assert ids == ["60W-2023"], query


# --------------------------------------------------------------------------- assets


def test_assets_shapes_normalise_to_href_and_band_index() -> None:
    expected = [
        {"B04": {"href": "s3://b/1/B04.tif", "band_index": 0}, "B08": None},
        {
            "B04": {"href": "s3://b/2/B04.tif", "band_index": 0},
            "B08": {"href": "s3://b/2/B08.tif", "band_index": 0},
        },
    ]
    bare = [{"B04": "s3://b/1/B04.tif"}, {"B04": "s3://b/2/B04.tif", "B08": "s3://b/2/B08.tif"}]
    as_map = pa.array([list(r.items()) for r in bare], pa.map_(pa.string(), pa.string()))
    nested_map = pa.array(
        [[(k, {"href": v, "title": "x"}) for k, v in r.items()] for r in bare],
        pa.map_(pa.string(), pa.struct([("href", pa.string()), ("title", pa.string())])),
    )
    for assets in (pa.array(bare), as_map, nested_map, pa.array([json.dumps(r) for r in bare])):
        out = normalize_table(minimal(assets=assets))
        assert [core(r) for r in out.column("assets").to_pylist()] == expected
        assert {f.type for f in out.schema.field("assets").type} == {ASSET_TYPE}
        titles = pc.struct_field(pc.struct_field(out.column("assets"), "B04"), "title")
        assert titles.to_pylist() == (["x", "x"] if assets is nested_map else [None, None])


def test_band_index_is_kept_and_defaults_to_zero() -> None:
    assets = [
        {
            "red": {"href": "s3://b/rgb.tif", "band_index": 0},
            "nir": {"href": "s3://b/rgb.tif", "band_index": 3},
        },
        {"red": {"href": "s3://b/rgb2.tif", "band_index": None}, "nir": None},
    ]
    out = normalize_table(minimal(assets=assets))
    rows = [core(r) for r in out.column("assets").to_pylist()]
    assert rows[0]["nir"] == {"href": "s3://b/rgb.tif", "band_index": 3}
    assert rows[1] == {"red": {"href": "s3://b/rgb2.tif", "band_index": 0}, "nir": None}


@pytest.mark.parametrize(
    ("assets", "message"),
    [
        (
            pa.array([{"B04": {"href": "s3://x"}}, {"B04": {"href": None}}]),
            r"'assets.B04': an asset without href in record 'r1'",
        ),
        (pa.array(["{}", "{not json"]), r"record 'r1' holds invalid JSON"),
        (pa.array(['{"B04": "s3://x"}', "[1, 2]"]), r"record 'r1' holds JSON list"),
        (pa.array([{"B04": "s3://x"}, None]), r"null assets in record 'r1'"),
        (pa.array([{"B04": {"href": "s3://x", "band_index": -1}}] * 2), r"negative band_index"),
        (pa.array([1, 2]), r"cannot read int64 as assets"),
    ],
    ids=["no-href", "bad-json", "json-list", "null", "negative-index", "wrong-type"],
)
def test_bad_assets_raise_naming_records(assets: pa.Array, message: str) -> None:
    with pytest.raises(ContractError, match=message):
        normalize_table(minimal(assets=assets))


def test_real_stac_items_with_their_full_asset_objects() -> None:
    items = stac_items("sentinel-2-l2a_items_4.json")
    out = normalize_table(stac_table(items))
    assert out.column("id").to_pylist() == [i["id"] for i in items]
    for row, item in zip(out.column("assets").to_pylist(), items, strict=True):
        assert row["B04"]["href"] == item["assets"]["B04"]["href"]
    assert out.column("proj:epsg").to_pylist() == [32647, 32647, 32646, 32646]
    assert out.column("datetime")[0].as_py() == datetime(2024, 4, 19, 9, 55, 49, 24000, tzinfo=UTC)


# --------------------------------------------------------------------------- CRS


def test_raster_crs_is_read_from_every_stac_spelling() -> None:
    wkt_no_epsg = 'PROJCRS["USA_Contiguous_Albers",BASEGEOGCRS["NAD83"],ID["ESRI",102039]]'
    wkt_epsg = 'PROJCRS["WGS 84 / UTM zone 33N",BASEGEOGCRS["WGS 84"],ID["EPSG",32633]]'
    projjson = json.dumps({"type": "ProjectedCRS", "id": {"authority": "EPSG", "code": 3857}})
    table = minimal(
        **{
            "proj:code": ["EPSG:32613", "ESRI:102039", None, None, None, None],
            "proj:epsg": pa.array([None, None, 4326, None, None, None], pa.int64()),
            "crs": [None, None, None, "urn:ogc:def:crs:EPSG::2193", None, None],
            "proj:wkt2": [None, wkt_no_epsg, None, None, wkt_epsg, None],
            "proj:projjson": [None, None, None, None, None, projjson],
        }
    )
    out = normalize_table(table)
    assert out.column("proj:epsg").to_pylist() == [32613, None, 4326, 2193, 32633, 3857]
    assert out.column("crs").to_pylist() == [
        "EPSG:32613",
        "ESRI:102039",
        "EPSG:4326",
        "EPSG:2193",
        "EPSG:32633",
        "EPSG:3857",
    ]
    # The source columns stay as given.
    assert out.column("proj:code").equals(table.column("proj:code"))


def test_without_crs_columns_the_contract_columns_are_typed_nulls() -> None:
    out = normalize_table(minimal(id=["a"]))
    assert out.schema.field("proj:epsg").type == pa.int32()
    assert out.schema.field("crs").type == pa.string()
    assert out.column("proj:epsg").null_count == 1


# --------------------------------------------------------------------------- build


def test_build_in_memory_records_collection_metadata() -> None:
    source = pq.read_table(fixture(GEOPARQUET / "pc_landsat-c2-l2_100.parquet"))
    collection = build_collection_from_table(
        source, name="landsat", description="Denver", data_source="landsat-c2-l2"
    )
    assert (collection.name, collection.description, collection.data_source) == (
        "landsat",
        "Denver",
        "landsat-c2-l2",
    )
    times = source.column("datetime")
    assert collection.date_range == (pc.min(times).as_py(), pc.max(times).as_py())
    assert collection.count_rows() == 100
    assert collection.uri is None
    geo = json.loads(collection.schema.metadata[b"geo"])
    assert geo["columns"]["geometry"]["covering"]["bbox"]["xmin"] == ["bbox", "xmin"]


def test_build_date_range_is_kept_as_given_and_filters_include_the_end_day(
    tmp_path: Path,
) -> None:
    table = minimal(
        id=["jan-1", "jan-31-late", "feb-1"],
        datetime=["2024-01-01T00:00:00Z", "2024-01-31T23:59:59.5Z", "2024-02-01T00:00:00Z"],
    )
    date_range = ("2024-01-01", "2024-01-31")
    in_memory = build_collection_from_table(table, date_range=date_range)
    persisted = build_collection_from_table(table, date_range=date_range, workspace_dir=tmp_path)
    for collection in (in_memory, persisted, Collection.open(tmp_path)):
        # What the caller said, as rasteret 0.4.1 records it (midnight of the end date) …
        assert (collection.start_date, collection.end_date) == (
            datetime(2024, 1, 1, tzinfo=UTC),
            datetime(2024, 1, 31, tzinfo=UTC),
        )
        # … while a filter with the same range still includes the whole end day.
        chosen = collection.filter(date_range=date_range)
        assert sorted(chosen.to_table(columns=["id"]).column("id").to_pylist()) == [
            "jan-1",
            "jan-31-late",
        ]
    with pytest.raises(ValueError, match="starts after it ends"):
        build_collection_from_table(minimal(id=["a"]), date_range=("2024-02-01", "2024-01-01"))


def test_build_rejects_unknown_partition_columns() -> None:
    with pytest.raises(ContractError, match="partition column 'tile' is not in the table"):
        build_collection_from_table(minimal(id=["a"]), partition_cols=("year", "tile"))


def test_empty_table_is_an_error_not_an_empty_collection() -> None:
    with pytest.raises(ContractError, match="no records"):
        normalize_table(minimal(id=["a"]).slice(0, 0))
