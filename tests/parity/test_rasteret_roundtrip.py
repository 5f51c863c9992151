"""A real round trip with rasteret 0.4.1: it reads our collections, we read its collections.

rasteret runs in its own Python 3.12 environment (the ``rasteret_python`` fixture) through
``rasteret_side.py``. The records point at real COGs from the shared fixtures as local paths:
rasteret reads local paths through obstore's ``LocalStore``, while its HTTP store refuses
plain ``http://`` (the test range server) — and local paths keep everything on this machine.

1. The project builds a collection with the reference functions
   (``enrich_table_with_cog_metadata`` + ``build_collection_from_table``); ``rasteret.load``
   reports its name, description, data source and dates, and ``get_numpy`` returns exactly
   rasterio's pixels for windows crossing tile boundaries. The same holds for a month the
   Dagster graph published from the records as a ``record_table`` source.
2. rasteret builds collections from the same record table (``build_from_table`` with COG
   enrichment, and ``build_collection_from_table`` with a date range); ``Collection.open``
   reads them: footer keys, band codes, naive ``datetime`` as UTC, date and bbox filters.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import rasterio
import shapely
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from rasteret_assets.collection import Collection
from rasteret_assets.contract import RASTERET_METADATA_FIELDS
from rasteret_assets.defs.assets import build_source_assets
from rasteret_assets.defs.resources import (
    ConcurrencyResource,
    StorageResource,
    WorkspaceResource,
)
from rasteret_assets.ingest import (
    build_collection_from_table,
    build_url_index_from_assets,
    enrich_table_with_cog_metadata,
)
from rasteret_assets.sources import SourceSpec, resolve

RASTERET_SIDE = Path(__file__).with_name("rasteret_side.py")
NAME = "fixture-cogs"
DATA_SOURCE = "rio-tiler-fixtures"
DESCRIPTION = "two rio-tiler COGs, built for the rasteret round trip"
DATE_RANGE = ("2024-01-01", "2024-03-31")
BAND = "B01"

#: record id → (fixture COG, acquisition time, pixel window (col, row, width, height)).
#: Windows cross internal tile boundaries (256 px tiles in cog.tif, 512 in scene_band1.tif).
SCENES = {
    "scene-a": (
        "rio-tiler/cog.tif",
        datetime(2024, 1, 15, 10, 30, tzinfo=UTC),
        (1000, 1200, 400, 300),
    ),
    "scene-b": (
        "rio-tiler/scene_band1.tif",
        datetime(2024, 3, 2, 11, tzinfo=UTC),
        (380, 420, 150, 120),
    ),
}


def run_rasteret(python: str, *args: str | Path, cwd: Path) -> None:
    """Run ``rasteret_side.py`` in the rasteret environment; fail with its stderr."""
    done = subprocess.run(
        [python, str(RASTERET_SIDE), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=cwd,
        env={"PATH": "/usr/bin:/bin", "HOME": str(cwd), "PYTHONNOUSERSITE": "1"},
    )
    if done.returncode != 0:
        pytest.fail(f"rasteret 0.4.1 failed ({done.returncode}):\n{done.stderr[-4000:]}")


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def records(tiff_fixtures: Path) -> pa.Table:
    """The record table both sides build from: contract columns, footprints in lon/lat."""
    rows = []
    for record_id, (relative, when, _) in SCENES.items():
        path = (tiff_fixtures / relative).resolve()  # obstore refuses '..' in paths
        with rasterio.open(path) as src:
            footprint = shapely.box(*transform_bounds(src.crs, "EPSG:4326", *src.bounds))
        rows.append(
            {
                "id": record_id,
                "datetime": when,
                "geometry": shapely.to_wkb(footprint),
                "assets": {BAND: {"href": str(path)}},
            }
        )
    asset = pa.struct([("href", pa.string())])
    schema = pa.schema(
        [
            ("id", pa.string()),
            ("datetime", pa.timestamp("us", tz="UTC")),
            ("geometry", pa.binary()),
            ("assets", pa.struct([(BAND, asset)])),
        ]
    )
    return pa.Table.from_pylist(rows, schema=schema)


@pytest.fixture(scope="module")
def project_collection(records: pa.Table, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's collection of ``records``, built with the reference's functions."""
    index = build_url_index_from_assets(records)
    enriched = asyncio.run(enrich_table_with_cog_metadata(records, index, [BAND]))
    root = tmp_path_factory.mktemp("project") / "collection"
    build_collection_from_table(
        enriched,
        name=NAME,
        description=DESCRIPTION,
        data_source=DATA_SOURCE,
        date_range=DATE_RANGE,
        workspace_dir=root,
    )
    return root


def window_request(tiff_fixtures: Path, record_ids: list[str]) -> list[dict[str, Any]]:
    """Per scene, a box in the raster's CRS whose edges sit a quarter pixel inside the window.

    Pixel centres decide which pixels a polygon covers (rasterio's rule, which rasteret
    follows), so the box selects exactly the window's pixels, free of float ties at edges.
    """
    windows = []
    for record_id in record_ids:
        relative, _, (col, row, width, height) = SCENES[record_id]
        with rasterio.open(tiff_fixtures / relative) as src:
            transform, epsg = src.transform, src.crs.to_epsg()
        left, top = transform @ (col + 0.25, row + 0.25)
        right, bottom = transform @ (col + width - 0.25, row + height - 0.25)
        windows.append(
            {"id": record_id, "band": BAND, "epsg": epsg, "box": [left, bottom, right, top]}
        )
    return windows


def rasteret_load(
    python: str, collection: Path, record_ids: list[str], tiff_fixtures: Path, work: Path
) -> dict[str, Any]:
    """``rasteret.load`` a collection and ``get_numpy`` each record's window.

    Asserts the pixels are exactly rasterio's; returns what rasteret reports about the
    collection.
    """
    request = work / "request.json"
    request.write_text(json.dumps({"windows": window_request(tiff_fixtures, record_ids)}))
    result, pixels = work / "result.json", work / "pixels.npz"
    run_rasteret(python, "load", collection, request, result, pixels, cwd=work)
    with np.load(pixels) as arrays:
        for record_id in record_ids:
            relative, _, (col, row, width, height) = SCENES[record_id]
            with rasterio.open(tiff_fixtures / relative) as src:
                expected = src.read(1, window=Window(col, row, width, height))
            got = arrays[record_id]
            assert got.shape == (1, height, width), record_id
            assert got.dtype == expected.dtype, record_id
            assert len(np.unique(expected)) > 5, "a window with structure, not a flat area"
            np.testing.assert_array_equal(got[0], expected, err_msg=record_id)
    return read_json(result)


def test_rasteret_loads_a_project_collection(
    rasteret_python: str, project_collection: Path, tiff_fixtures: Path, tmp_path: Path
) -> None:
    reported = rasteret_load(
        rasteret_python, project_collection, list(SCENES), tiff_fixtures, tmp_path
    )
    assert reported == {
        "name": NAME,
        "data_source": DATA_SOURCE,
        "description": DESCRIPTION,
        # The caller's date range, as rasteret itself records one (midnight of each date).
        "start_date": "2024-01-01T00:00:00+00:00",
        "end_date": "2024-03-31T00:00:00+00:00",
        "bands": [BAND],
        "records": len(SCENES),
    }


def test_rasteret_loads_a_month_the_dagster_graph_published(
    rasteret_python: str, records: pa.Table, tiff_fixtures: Path, tmp_path: Path
) -> None:
    """The Dagster month files carry the same footer keys as the library's files."""
    table = tmp_path / "records.parquet"
    pq.write_table(records, table)
    source = resolve(
        SourceSpec(
            name="fixture_cogs",
            kind="record_table",
            location=str(table),
            data_source=DATA_SOURCE,
            band_map={BAND: BAND},
            start_month="2024-01",
        )
    )
    resources = {
        "workspace": WorkspaceResource(root=str(tmp_path / "ws")),
        # The platform's URL policy reads local files only under the roots it is given.
        "storage": StorageResource(allowed_local_roots=[str(tiff_fixtures.resolve())]),
        "concurrency": ConcurrencyResource(max_concurrent=4, max_per_host=4),
    }
    result = dg.materialize(
        build_source_assets(source), partition_key="2024-01-01", resources=resources
    )
    assert result.success
    collection = tmp_path / "ws" / "fixture_cogs" / "collection"
    reported = rasteret_load(rasteret_python, collection, ["scene-a"], tiff_fixtures, tmp_path)
    assert reported == {
        "name": "fixture_cogs",
        "data_source": DATA_SOURCE,
        "description": f"fixture_cogs: record_table {table}",
        # A month file covers its partition window.
        "start_date": "2024-01-01T00:00:00+00:00",
        "end_date": "2024-01-31T23:59:59.999999+00:00",
        "bands": [BAND],
        "records": 1,
    }


def test_project_opens_collections_rasteret_built(
    rasteret_python: str,
    records: pa.Table,
    project_collection: Path,
    tmp_path: Path,
) -> None:
    source = tmp_path / "records.parquet"
    pq.write_table(records, source)
    built_dir, exported_dir = tmp_path / f"{NAME}_records", tmp_path / "exported"
    request = tmp_path / "request.json"
    request.write_text(
        json.dumps(
            {
                "name": NAME,
                "data_source": DATA_SOURCE,
                "description": DESCRIPTION,
                "date_range": DATE_RANGE,
                "bands": [BAND],
                "records_dir": str(built_dir),
                "exported_dir": str(exported_dir),
            }
        )
    )
    result = tmp_path / "result.json"
    run_rasteret(rasteret_python, "build", source, request, result, cwd=tmp_path)
    reported = read_json(result)
    assert reported["built"]["bands"] == reported["exported"]["bands"] == [BAND]

    ours = Collection.open(project_collection).to_table().sort_by("id")
    built, exported = Collection.open(built_dir), Collection.open(exported_dir)
    # rasteret 0.4.1 stores datetime without a zone; the scan declares it UTC.
    assert pq.read_schema(next(built_dir.rglob("*.parquet"))).field("datetime").type == (
        pa.timestamp("us")
    )
    for collection in (built, exported):
        assert (collection.name, collection.data_source) == (NAME, DATA_SOURCE)
        assert collection.band_codes == [BAND]
        assert collection.partition_cols == ["year", "month"]
        assert collection.schema.field("datetime").type == pa.timestamp("us", tz="UTC")
        table = collection.to_table().sort_by("id")
        assert table.column("id").to_pylist() == list(SCENES)
        assert table.column("datetime").to_pylist() == [when for _, when, _ in SCENES.values()]
        # rasteret's 17 metadata fields are the project's, value for value.
        for name in (f.name for f in RASTERET_METADATA_FIELDS):
            theirs = [m[name] for m in table.column(f"{BAND}_metadata").to_pylist()]
            assert theirs == [m[name] for m in ours.column(f"{BAND}_metadata").to_pylist()], name
        assert table.column("proj:epsg").to_pylist() == ours.column("proj:epsg").to_pylist()

        january = collection.filter(date_range=("2024-01-01", "2024-01-31"))
        assert january.to_table(columns=["id"]).column("id").to_pylist() == ["scene-a"]
        assert [Path(f.path).parent.name for f in january.fragments()] == ["month=1"]
        # The end date is a whole day: scene-b was taken at 11:00 on 2 March.
        march_2 = collection.filter(date_range=("2024-03-02", "2024-03-02"))
        assert march_2.to_table(columns=["id"]).column("id").to_pylist() == ["scene-b"]
        near_b = collection.filter(bbox=(-11.5, 24.5, -11.4, 24.6))
        assert near_b.to_table(columns=["id"]).column("id").to_pylist() == ["scene-b"]

    assert (built.description, built.date_range) == ("", None)
    assert exported.description == DESCRIPTION
    assert (exported.start_date, exported.end_date) == (
        datetime(2024, 1, 1, tzinfo=UTC),
        datetime(2024, 3, 31, tzinfo=UTC),
    )
