"""Hostile record tables: wrong column types, null ids, nested values where strings belong.

Each table is a real Parquet file (the synthetic stac-geoparquet shape of
``synthetic_records``, one column made wrong) read by ``RecordTableBuilder`` exactly as a
user's table would be. Record tables have no skip rule: every case is a
:class:`ContractError` whose ``column`` names the field and whose message names a record (by
id, or by row when the id itself is unusable) — and nothing is written or fetched.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import shapely
from servers.range_server import RangeServer

from ingest.synthetic_records import synthetic_records
from rasteret_assets.contract import ContractError
from rasteret_assets.ingest import RecordTableBuilder
from rasteret_assets.ingest.tables.month import month_tables

ROWS = 20
Change = Callable[[pa.Table], pa.Table]


def records() -> pa.Table:
    return synthetic_records(ROWS, months=1)


def replace(table: pa.Table, name: str, values: pa.Array) -> pa.Table:
    return table.set_column(table.column_names.index(name), name, values)


def replace_asset_field(table: pa.Table, band: str, name: str, values: pa.Array) -> pa.Table:
    """``assets.{band}.{name}`` replaced by ``values`` (other fields and bands untouched)."""
    assets = table.column("assets").combine_chunks()
    bands = {f.name: assets.field(f.name) for f in assets.type}
    child = bands[band]
    fields = {f.name: child.field(f.name) for f in child.type}
    fields[name] = values
    bands[band] = pa.StructArray.from_arrays(list(fields.values()), names=list(fields))
    return replace(
        table, "assets", pa.StructArray.from_arrays(list(bands.values()), names=list(bands))
    )


def replace_asset(table: pa.Table, band: str, values: pa.Array) -> pa.Table:
    assets = table.column("assets").combine_chunks()
    bands = {f.name: assets.field(f.name) for f in assets.type}
    bands[band] = values
    return replace(
        table, "assets", pa.StructArray.from_arrays(list(bands.values()), names=list(bands))
    )


def hrefs(table: pa.Table, band: str) -> list[str]:
    return pc.struct_field(table.column("assets").combine_chunks().field(band), "href").to_pylist()


def epoch_seconds(table: pa.Table) -> pa.Array:
    return pc.divide(table.column("datetime").cast(pa.int64()), 1000).combine_chunks()


def one_row(values: list, row: int, value: object, kind: pa.DataType | None = None) -> pa.Array:
    values = list(values)
    values[row] = value
    return pa.array(values, kind)


def geometries_as(encode: Callable[[shapely.Geometry], object]) -> Change:
    def change(table: pa.Table) -> pa.Table:
        shapes = shapely.from_wkb(table.column("geometry").to_pylist())
        return replace(table, "geometry", pa.array([encode(g) for g in shapes]))

    return change


CASES: dict[str, tuple[Change, str, str]] = {
    # datetime: epoch seconds look like integers, which are read as years
    "datetime-epoch": (
        lambda t: replace(t, "datetime", epoch_seconds(t)),
        "datetime",
        r"integers are read as years .*'SYN_0'",
    ),
    "datetime-float": (
        lambda t: replace(t, "datetime", epoch_seconds(t).cast(pa.float64())),
        "datetime",
        r"cannot read double as a datetime.*record 'SYN_0'",
    ),
    "datetime-list": (
        lambda t: replace(t, "datetime", pa.array([["2024-01-05"]] * ROWS)),
        "datetime",
        r"cannot read list<.*string> as a datetime.*record 'SYN_0'",
    ),
    "datetime-one-bad-string": (
        lambda t: replace(
            t,
            "datetime",
            one_row(t.column("datetime").cast(pa.string()).to_pylist(), 7, "07/01/2024"),
        ),
        "datetime",
        r"not an RFC 3339 timestamp in record 'SYN_7'",
    ),
    # geometry: strings are GeoJSON; WKT and hex WKB are not guessed at
    "geometry-wkt": (
        geometries_as(shapely.to_wkt),
        "geometry",
        r"invalid GeoJSON in .*'SYN_0'.*WKT",
    ),
    "geometry-hex-wkb": (
        geometries_as(lambda g: shapely.to_wkb(g, hex=True)),
        "geometry",
        r"invalid GeoJSON .*'SYN_0'",
    ),
    "geometry-int": (
        lambda t: replace(t, "geometry", pa.array(range(ROWS))),
        "geometry",
        r"cannot read int64 as a geometry.*record 'SYN_0'",
    ),
    # ids
    "id-null": (
        lambda t: replace(t, "id", one_row(t.column("id").to_pylist(), 12, None, pa.string())),
        "id",
        r"rows \[12\]",
    ),
    "id-struct": (
        lambda t: replace(t, "id", pa.array([{"value": f"S{i}"} for i in range(ROWS)])),
        "id",
        r"cannot use struct<value: string> as ids.*row 0",
    ),
    "id-list": (
        lambda t: replace(t, "id", pa.array([[f"S{i}"] for i in range(ROWS)])),
        "id",
        r"cannot use list<.*string> as ids.*row 0",
    ),
    # nested values where strings or integers belong
    "href-list": (
        lambda t: replace_asset_field(t, "B04", "href", pa.array([[h] for h in hrefs(t, "B04")])),
        "assets.B04.href",
        r"href must be a string, got list<.*string>.*record 'SYN_0'",
    ),
    "href-struct": (
        lambda t: replace_asset_field(
            t, "B04", "href", pa.array([{"url": h} for h in hrefs(t, "B04")])
        ),
        "assets.B04.href",
        r"href must be a string.*record 'SYN_0'",
    ),
    "band-index-string": (
        lambda t: replace_asset_field(t, "B04", "band_index", pa.array(["0"] * ROWS)),
        "assets.B04.band_index",
        r"band_index must be an integer, got string.*record 'SYN_0'",
    ),
    "asset-list": (
        lambda t: replace_asset(t, "B04", pa.array([[{"href": h}] for h in hrefs(t, "B04")])),
        "assets.B04",
        r"an asset must be an href string or a struct with 'href'.*record 'SYN_0'",
    ),
    "assets-list": (
        lambda t: replace(t, "assets", pa.array([hrefs(t, "B04")[i : i + 1] for i in range(ROWS)])),
        "assets",
        r"cannot read list<.*string> as assets.*record 'SYN_0'",
    ),
    "assets-json-href-list": (
        lambda t: replace(
            t, "assets", pa.array([json.dumps({"B04": {"href": [h]}}) for h in hrefs(t, "B04")])
        ),
        "assets.B04.href",
        r"href must be a string.*record 'SYN_0'",
    ),
    # CRS
    "epsg-fraction": (
        lambda t: replace(t, "proj:epsg", pa.array([32633.5] * ROWS)),
        "proj:epsg",
        r"not an integer EPSG code.*record 'SYN_0'",
    ),
    "epsg-list": (
        lambda t: replace(t, "proj:epsg", pa.array([[32633]] * ROWS)),
        "proj:epsg",
        r"expected integer EPSG codes, got list<.*int64>.*record 'SYN_0'",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_column_is_an_error_naming_column_and_record(tmp_path: Path, case: str) -> None:
    change, column, pattern = CASES[case]
    path = tmp_path / "records.parquet"
    pq.write_table(change(records()), path)
    workspace = tmp_path / "out"
    with pytest.raises(ContractError, match=pattern) as caught:
        RecordTableBuilder(path, workspace_dir=workspace).build(batch_size=8)
    assert caught.value.column == column
    assert not workspace.exists() or not any(workspace.rglob("*.parquet"))


def test_monthly_records_step_raises_the_same_errors(tmp_path: Path) -> None:
    change, column, pattern = CASES["href-list"]
    path = tmp_path / "records.parquet"
    pq.write_table(change(records()), path)
    start, end = datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 2, 1, tzinfo=UTC)
    with pytest.raises(ContractError, match=pattern) as caught:
        list(month_tables(str(path), start, end, band_map={"B04": "B04"}))
    assert caught.value.column == column


@pytest.mark.parametrize("band_codes", [["B04"], None], ids=["band-codes", "raster-survey"])
def test_enrich_path_rejects_nested_hrefs_before_any_request(
    tmp_path: Path, range_server: RangeServer, band_codes: list[str] | None
) -> None:
    table = records()
    served = [range_server.url(f"/cogs/{i}.tif") for i in range(ROWS)]
    table = replace_asset_field(table, "B02", "href", pa.array(served))
    table = replace_asset_field(table, "B04", "href", pa.array([[h] for h in served]))
    path = tmp_path / "records.parquet"
    pq.write_table(table, path)
    builder = RecordTableBuilder(path, enrich_cog=True, band_codes=band_codes)
    with pytest.raises(ContractError, match=r"href must be a string.*record 'SYN_0'") as caught:
        builder.build(workspace_dir=None)
    assert caught.value.column == "assets.B04.href"
    assert range_server.total_requests == 0


def test_href_column_of_lists_names_column_and_record(tmp_path: Path) -> None:
    table = records().drop_columns(["assets"])
    table = table.append_column("url", pa.array([[f"s3://b/{i}.tif"] for i in range(ROWS)]))
    path = tmp_path / "records.parquet"
    pq.write_table(table, path)
    builder = RecordTableBuilder(path, href_column="url", band_index_map={"red": 0})
    with pytest.raises(ContractError, match=r"hrefs must be strings.*record 'SYN_0'") as caught:
        builder.build(workspace_dir=None)
    assert caught.value.column == "url"
