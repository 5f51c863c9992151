"""Constants and table edits shared by the rasteret-parity tests."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq

from rasteret_assets.defs.assets import build_source_assets
from rasteret_assets.defs.resources import (
    ConcurrencyResource,
    StorageResource,
    WorkspaceResource,
)
from rasteret_assets.sources import ResolvedSource, SourceSpec, resolve

BANDS = ["red", "green", "nir"]
FEBRUARY = (datetime(2024, 2, 1, tzinfo=UTC), datetime(2024, 3, 1, tzinfo=UTC))
DERIVED = ["proj:code", "proj:epsg", "crs", "year", "month", "bbox", "scene_bbox"]


def with_href(table: pa.Table, row: int, band: str, href: str) -> pa.Table:
    """``table`` with one asset's href replaced."""
    rows = table.to_pylist()
    rows[row]["assets"][band]["href"] = href
    return pa.Table.from_pylist(rows, schema=table.schema)


def table_source(
    table: pa.Table, path: Path, *, name: str = "t", bands: Sequence[str] = BANDS, **extra: Any
) -> ResolvedSource:
    """``table`` written to ``path`` as a record-table source of its bands, from 2024-01."""
    pq.write_table(table, path)
    spec = SourceSpec(
        name=name,
        kind="record_table",
        location=str(path),
        band_map={b: b for b in bands},
        start_month="2024-01",
        **extra,
    )
    return resolve(spec)


def run_month(
    source: ResolvedSource, workspace: Path, local_root: Path, month: str = "2024-02-01"
) -> dg.ExecuteInProcessResult:
    """One month of ``source`` through the real Dagster graph, reading files under
    ``local_root`` (the URL policy reads local files only under the roots it is given)."""
    return dg.materialize(
        build_source_assets(source),
        partition_key=month,
        resources={
            "workspace": WorkspaceResource(root=str(workspace)),
            "storage": StorageResource(allowed_local_roots=[str(local_root)]),
            "concurrency": ConcurrencyResource(max_concurrent=4),
        },
    )


def collection_metadata(result: dg.ExecuteInProcessResult, name: str) -> dict[str, Any]:
    """The metadata of the run's materialization of ``name/collection``."""
    return next(
        m.materialization.metadata
        for m in result.get_asset_materialization_events()
        if m.asset_key == dg.AssetKey([name, "collection"])
    )
