"""Footprints as a rasteret user's tables have them: missing (derived from the headers where
they were parsed, else null and counted) or in another CRS (reprojected to lon/lat)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyarrow as pa
import pytest
import rasterio
import shapely
from rasterio.warp import transform_bounds

from parity.inputs import BANDS, collection_metadata, run_month, table_source
from rasteret_assets.collection import Collection
from rasteret_assets.contract import ContractError
from rasteret_assets.ingest import (
    RecordTableBuilder,
    build_collection_from_table,
    build_url_index_from_assets,
    enrich_table_with_cog_metadata,
)


def without_footprints(table: pa.Table, missing_file: Path | None = None) -> pa.Table:
    """Every geometry null; record 1's assets pointed at ``missing_file`` when given."""
    rows = table.to_pylist()
    for row in rows:
        row["geometry"] = None
    if missing_file is not None:
        for asset in rows[1]["assets"].values():
            asset["href"] = str(missing_file)
    return pa.Table.from_pylist(rows, schema=table.schema)


def lon_lat_bounds(href: str) -> tuple[float, float, float, float]:
    with rasterio.open(href) as dataset:
        return transform_bounds(dataset.crs, "EPSG:4326", *dataset.bounds, densify_pts=21)


def test_reference_functions_derive_footprints_from_headers(
    february: pa.Table, tmp_path: Path
) -> None:
    table = without_footprints(february, tmp_path / "gone.tif")
    enriched = asyncio.run(
        enrich_table_with_cog_metadata(table, build_url_index_from_assets(table), BANDS)
    )
    built = build_collection_from_table(enriched, workspace_dir=tmp_path / "c").to_table()
    rows = {r["id"]: r for r in built.to_pylist()}
    first, second = (rows[i] for i in table.column("id").to_pylist())
    expected = lon_lat_bounds(first["assets"]["red"]["href"])
    box = first["bbox"]
    assert np.allclose([box["xmin"], box["ymin"], box["xmax"], box["ymax"]], expected, atol=1e-6)
    assert shapely.from_wkb(first["geometry"]).is_valid
    assert second["geometry"] is None and second["bbox"] is None
    frame = gpd.read_parquet(tmp_path / "c")  # the GeoParquet metadata stays valid
    assert frame.geometry.isna().sum() == 1 and frame.crs.to_string() == "OGC:CRS84"


def test_the_dagster_month_derives_and_counts_footprints(
    february: pa.Table, tmp_path: Path
) -> None:
    table = without_footprints(february, tmp_path / "gone.tif")
    source = table_source(table, tmp_path / "records.parquet", min_header_coverage=0.5)
    result = run_month(source, tmp_path / "ws", tmp_path)
    assert result.success
    metadata = collection_metadata(result, "t")
    assert metadata["footprints_from_headers"].value == 1
    assert metadata["footprints_missing"].value == 1
    published = Collection.open(tmp_path / "ws" / "t" / "collection").to_table()
    assert published.column("bbox").null_count == 1
    bbox_check = next(
        c for c in result.get_asset_check_evaluations() if c.check_name == "bbox_valid"
    )
    assert bbox_check.passed and bbox_check.metadata["without_footprint"].value == 1


@pytest.fixture
def web_mercator(february: pa.Table) -> gpd.GeoDataFrame:
    """The records with footprints in EPSG:3857, as GeoPandas holds them after ``to_crs``."""
    frame = gpd.GeoDataFrame(
        {"id": february.column("id").to_pylist()},
        geometry=gpd.GeoSeries.from_wkb(february.column("geometry").to_pylist(), crs=4326),
    )
    return frame.to_crs(3857)


def test_a_geoarrow_column_in_another_crs_is_reprojected(
    february: pa.Table, web_mercator: gpd.GeoDataFrame
) -> None:
    arrow = pa.table(web_mercator.to_arrow(geometry_encoding="WKB"))
    table = february.set_column(
        february.schema.get_field_index("geometry"),
        arrow.schema.field("geometry"),
        arrow["geometry"],
    )
    built = build_collection_from_table(table).to_table()
    original = shapely.from_wkb(february.column("geometry").to_pylist())
    moved = shapely.from_wkb(built.column("geometry").to_pylist())
    assert np.allclose(shapely.bounds(moved), shapely.bounds(original), atol=1e-7)


def test_a_geoparquet_record_table_in_another_crs_is_reprojected(
    february: pa.Table, web_mercator: gpd.GeoDataFrame, tmp_path: Path
) -> None:
    frame = web_mercator.merge(february.drop_columns(["geometry"]).to_pandas(), on="id", how="left")
    path = tmp_path / "records.parquet"
    frame.to_parquet(path)
    built = RecordTableBuilder(path).build().to_table()
    original = dict(zip(february["id"].to_pylist(), february["geometry"].to_pylist(), strict=True))
    for record_id, wkb in zip(built["id"].to_pylist(), built["geometry"].to_pylist(), strict=True):
        assert np.allclose(
            shapely.bounds(shapely.from_wkb(wkb)),
            shapely.bounds(shapely.from_wkb(original[record_id])),
            atol=1e-7,
        )


@pytest.mark.parametrize(
    ("metadata", "cause"),
    [
        (b"{not json", "not JSON"),
        (b'["crs"]', "a JSON list, not an object"),
        (b'{"columns": ["geometry"]}', "'columns' is not an object"),
        (b'{"columns": {"geometry": "EPSG:3857"}}', "columns.geometry is not an object"),
    ],
)
def test_unreadable_geoparquet_metadata_is_refused_not_read_as_lon_lat(
    february: pa.Table, metadata: bytes, cause: str
) -> None:
    table = february.replace_schema_metadata({b"geo": metadata})
    with pytest.raises(ContractError, match=f"column 'geometry': cannot tell its CRS.*{cause}"):
        build_collection_from_table(table)


def test_unreadable_geoarrow_metadata_is_refused_not_read_as_lon_lat(february: pa.Table) -> None:
    index = february.schema.get_field_index("geometry")
    field = february.schema.field(index).with_metadata(
        {b"ARROW:extension:name": b"geoarrow.wkb", b"ARROW:extension:metadata": b"{bad"}
    )
    table = february.set_column(index, field, february.column(index))
    with pytest.raises(ContractError, match="GeoArrow extension metadata is not JSON"):
        build_collection_from_table(table)
