"""One path from records to collection: every door gives the same rows.

The same demo files go through the reference functions + ``build_collection_from_table``,
both builders, and the Dagster graph (a record-table source and the static-catalog demo);
``{band}_metadata``, ``proj:epsg`` and ``crs`` must agree row for row. Also the regressions
of the "one path" issue: a registry-only source, URL rewrites applied once, one URL
identity, and checks that never pass with nothing to check.
"""

from __future__ import annotations

import asyncio
import json
import math
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from month_records import scan_month
from servers.range_server import RangeServer

from rasteret_assets.collection import Collection
from rasteret_assets.defs.assets import build_source_assets
from rasteret_assets.defs.resources import (
    ConcurrencyResource,
    StorageResource,
    WorkspaceResource,
)
from rasteret_assets.ingest import (
    RecordTableBuilder,
    StacCollectionBuilder,
    build_collection_from_table,
    build_url_index_from_assets,
    enrich_table_with_cog_metadata,
)
from rasteret_assets.sources import DEMO_CATALOG, ResolvedSource, SourceSpec, demo_source, resolve

BANDS = ["red", "green", "nir"]
FEBRUARY = (datetime(2024, 2, 1, tzinfo=UTC), datetime(2024, 3, 1, tzinfo=UTC))
CRS_COLUMNS = ["proj:code", "proj:epsg", "crs", "year", "month"]


def run_month(source: ResolvedSource, root: Path, **storage: Any) -> dg.ExecuteInProcessResult:
    result = dg.materialize(
        build_source_assets(source),
        partition_key="2024-02-01",
        resources={
            "workspace": WorkspaceResource(root=str(root)),
            "storage": StorageResource(**storage),
            "concurrency": ConcurrencyResource(max_concurrent=8, max_per_host=8),
        },
        raise_on_error=False,
    )
    return result


def rows_by_id(table: pa.Table) -> dict[str, dict[str, Any]]:
    columns = ["id", "proj:epsg", "crs", *(f"{b}_metadata" for b in BANDS)]
    return {row["id"]: row for row in table.select(columns).to_pylist()}


def same(a: Any, b: Any) -> bool:
    """Equality that treats NaN nodata as equal to itself."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return a == b


@pytest.fixture
def feb_table(tmp_path: Path) -> Path:
    """The demo's February records as a record table without any CRS column."""
    records, _ = scan_month(resolve(demo_source()), *FEBRUARY)
    assert records is not None and records.num_rows == 2
    path = tmp_path / "records.parquet"
    pq.write_table(
        records.drop_columns([c for c in CRS_COLUMNS if c in records.column_names]), path
    )
    return path


def test_every_door_gives_the_same_rows(feb_table: Path, tmp_path: Path) -> None:
    raw = pq.read_table(feb_table)
    enriched = asyncio.run(
        enrich_table_with_cog_metadata(raw, build_url_index_from_assets(raw), BANDS)
    )
    reference = build_collection_from_table(enriched, workspace_dir=tmp_path / "a").to_table()
    table_builder = RecordTableBuilder(
        feb_table, enrich_cog=True, band_codes=BANDS, workspace_dir=tmp_path / "b"
    ).build()
    stac_builder = StacCollectionBuilder(
        data_source="demo",
        stac_api=str(DEMO_CATALOG),
        band_map={b: b for b in BANDS},
        static_catalog=True,
        workspace_dir=tmp_path / "c",
    ).build(date_range=("2024-02-01", "2024-02-29"))
    table_source = resolve(
        SourceSpec(
            name="table",
            kind="record_table",
            location=str(feb_table),
            band_map={b: b for b in BANDS},
            start_month="2024-01",
        )
    )
    assert run_month(table_source, tmp_path / "d").success
    assert run_month(resolve(demo_source()), tmp_path / "e").success
    doors = {
        "reference functions": reference,
        "RecordTableBuilder": table_builder.to_table(),
        "StacCollectionBuilder": stac_builder.to_table(),
        "Dagster record_table": Collection.open(tmp_path / "d" / "table" / "collection").to_table(),
        "Dagster static catalog": Collection.open(
            tmp_path / "e" / "demo" / "collection"
        ).to_table(),
    }
    expected = rows_by_id(reference)
    assert len(expected) == 2
    for row in expected.values():
        assert row["crs"] and row["crs"].startswith("EPSG:") and row["proj:epsg"]
        assert all(row[f"{b}_metadata"] is not None for b in BANDS)
    for door, table in doors.items():
        got = rows_by_id(table)
        assert got.keys() == expected.keys(), door
        for record_id, row in expected.items():
            assert same(got[record_id], row), f"{door} differs for {record_id}"


def earth_search_copy(directory: Path, collection: str = "sentinel-2-l2a") -> Path:
    """The demo catalog with its items in an Earth Search collection (same asset keys:
    red/green/nir are B04/B03/B08 there) and absolute hrefs onto the packaged COGs."""
    shutil.copytree(DEMO_CATALOG.parent, directory / "catalog")
    for path in (directory / "catalog" / "items").rglob("*.json"):
        item = json.loads(path.read_text())
        item["collection"] = collection
        for asset in item["assets"].values():
            original = DEMO_CATALOG.parent / "items" / path.parent.name / asset["href"]
            asset["href"] = str(original.resolve())
        path.write_text(json.dumps(item))
    return directory / "catalog" / "catalog.json"


def registry_only(name: str, kind: str, location: str) -> ResolvedSource:
    return resolve(
        SourceSpec(
            name=name,
            kind=kind,
            location=location,
            data_source="sentinel-2-l2a",
            start_month="2024-01",
            collection="sentinel-2-l2a" if kind == "stac_api" else None,
        )
    )


def assert_registry_bands_enriched(root: Path, name: str) -> None:
    table = Collection.open(root / name / "collection").to_table()
    assert table.num_rows == 2
    for band in ("B04", "B03", "B08"):
        assert table.column(f"{band}_metadata").null_count == 0, band
    assert table.column("B02_metadata").null_count == 2  # no blue asset in these items


def test_a_static_catalog_source_naming_only_a_registered_data_source(tmp_path: Path) -> None:
    source = registry_only("s2_static", "static_catalog", str(earth_search_copy(tmp_path)))
    assert source.band_codes[:4] == ("B01", "B02", "B03", "B04")
    result = run_month(source, tmp_path / "ws")
    assert result.success
    assert all(c.passed for c in result.get_asset_check_evaluations())
    assert_registry_bands_enriched(tmp_path / "ws", "s2_static")


def test_a_stac_api_source_naming_only_a_registered_data_source(
    tmp_path: Path, rustac_executable: str
) -> None:
    from servers.rustac_server import start_rustac

    catalog = earth_search_copy(tmp_path)
    items = [json.loads(p.read_text()) for p in (catalog.parent / "items").rglob("*.json")]
    for item in items:
        item["links"] = []
    collection = json.loads((catalog.parent / "collection.json").read_text())
    collection.update(id="sentinel-2-l2a", links=[])
    (tmp_path / "collection.json").write_text(json.dumps(collection))
    (tmp_path / "items.json").write_text(
        json.dumps({"type": "FeatureCollection", "features": items})
    )
    (tmp_path / "log").mkdir()
    server = start_rustac(
        rustac_executable,
        [tmp_path / "collection.json", tmp_path / "items.json"],
        log_dir=tmp_path / "log",
    )
    try:
        source = registry_only("s2_api", "stac_api", server.url)
        result = run_month(source, tmp_path / "ws")
    finally:
        server.stop()
    assert result.success
    assert_registry_bands_enriched(tmp_path / "ws", "s2_api")


def served_table(tmp_path: Path, server: RangeServer, prefix: str, queries: list[str]) -> Path:
    """February's demo records with hrefs onto the range server under ``prefix``."""
    records, _ = scan_month(resolve(demo_source()), *FEBRUARY)
    assert records is not None
    rows = records.drop_columns(["year", "month"]).to_pylist()
    for number, row in enumerate(rows):
        for band, asset in row["assets"].items():
            name = Path(asset["href"]).relative_to(DEMO_CATALOG.parent / "items")
            asset["href"] = server.url(f"{prefix}/{name}") + queries[number % len(queries)]
            row["assets"][band] = asset
    path = tmp_path / "served.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def test_url_rewrites_are_applied_once(tmp_path: Path, range_server: RangeServer) -> None:
    range_server.add_directory("/b", DEMO_CATALOG.parent / "items")
    table = served_table(tmp_path, range_server, "/a", [""])
    base = range_server.base_url.rstrip("/")
    # a -> b is the rewrite; b -> c must not chain onto it (nothing is served under /c).
    rules = {f"{base}/a/": f"{base}/b/", f"{base}/b/": f"{base}/c/"}
    source = resolve(
        SourceSpec(
            name="rewritten",
            kind="record_table",
            location=str(table),
            band_map={b: b for b in BANDS},
            url_rewrite_patterns=rules,
            start_month="2024-01",
        )
    )
    result = run_month(source, tmp_path / "ws")
    assert result.success
    collection = Collection.open(tmp_path / "ws" / "rewritten" / "collection").to_table()
    hrefs = [a["red"]["href"] for a in collection.column("assets").to_pylist()]
    assert hrefs and all(h.startswith(f"{base}/b/") for h in hrefs)
    assert collection.column("red_metadata").null_count == 0


def test_one_identity_per_url_query_parameters_that_address_objects_count(
    tmp_path: Path, range_server: RangeServer
) -> None:
    range_server.add_directory("/cogs", DEMO_CATALOG.parent / "items")
    table = served_table(tmp_path, range_server, "/cogs", ["?versionId=1", "?versionId=2"])
    source = resolve(
        SourceSpec(
            name="versions",
            kind="record_table",
            location=str(table),
            band_map={b: b for b in BANDS},
            start_month="2024-01",
        )
    )
    assert run_month(source, tmp_path / "ws").success
    headers = pq.read_table(
        tmp_path / "ws" / "versions" / "cog_headers" / "year=2024" / "month=2" / "headers.parquet"
    )
    urls = headers.column("url").to_pylist()
    assert len(urls) == 6 and len({u.split("?")[0] for u in urls}) == 6
    assert {u.rsplit("?", 1)[1] for u in urls} == {"versionId=1", "versionId=2"}


def test_a_month_with_no_asset_url_is_not_published(tmp_path: Path, feb_table: Path) -> None:
    records = pq.read_table(feb_table)
    assets = records.column("assets").combine_chunks()
    no_red = pa.StructArray.from_arrays(
        [pa.nulls(len(assets), assets.type.field("red").type), assets.field("green")],
        names=["red", "green"],
    )
    path = tmp_path / "no_urls.parquet"
    pq.write_table(records.set_column(records.column_names.index("assets"), "assets", no_red), path)
    source = resolve(
        SourceSpec(
            name="empty_bands",
            kind="record_table",
            location=str(path),
            band_map={"red": "red"},
            start_month="2024-01",
        )
    )
    result = run_month(source, tmp_path / "ws")
    coverage = [
        c for c in result.get_asset_check_evaluations() if c.check_name == "header_coverage"
    ]
    assert coverage and not coverage[0].passed
    assert coverage[0].metadata["assets"].value == 0
    assert not (tmp_path / "ws" / "empty_bands" / "collection" / "year=2024").exists()
