"""A record whose bands' headers disagree on the CRS: the library refuses it as rasteret 0.4.1
does; the Dagster month leaves it out, counts it and warns through a non-blocking check."""

from __future__ import annotations

import asyncio
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from parity.inputs import BANDS, with_href
from rasteret_assets.collection import Collection
from rasteret_assets.defs.assets import build_source_assets
from rasteret_assets.defs.resources import (
    ConcurrencyResource,
    StorageResource,
    WorkspaceResource,
)
from rasteret_assets.ingest import (
    RecordTableBuilder,
    build_url_index_from_assets,
    enrich_table_with_cog_metadata,
)
from rasteret_assets.sources import SourceSpec, resolve


@pytest.fixture
def conflicting(february: pa.Table, other_crs_cog: Path) -> pa.Table:
    """Record 0's ``nir`` in EPSG:32629, its other bands in the demo's CRS."""
    return with_href(february, 0, "nir", str(other_crs_cog))


def test_the_reference_function_refuses_the_record(conflicting: pa.Table) -> None:
    bad = conflicting.column("id")[0].as_py()
    with pytest.raises(ValueError, match="Conflicting CRS values detected") as info:
        asyncio.run(
            enrich_table_with_cog_metadata(
                conflicting, build_url_index_from_assets(conflicting), BANDS
            )
        )
    assert repr(bad) in str(info.value) and "EPSG:32629" in str(info.value)


def test_the_record_table_builder_refuses_the_record(conflicting: pa.Table, tmp_path: Path) -> None:
    path = tmp_path / "records.parquet"
    pq.write_table(conflicting, path)
    builder = RecordTableBuilder(path, enrich_cog=True, band_codes=BANDS)
    with pytest.raises(ValueError, match="Conflicting CRS values detected"):
        builder.build()


def test_the_dagster_month_leaves_the_record_out_and_warns(
    conflicting: pa.Table, other_crs_cog: Path, tmp_path: Path
) -> None:
    path = tmp_path / "records.parquet"
    pq.write_table(conflicting, path)
    source = resolve(
        SourceSpec(
            name="table",
            kind="record_table",
            location=str(path),
            band_map={b: b for b in BANDS},
            start_month="2024-01",
        )
    )
    result = dg.materialize(
        build_source_assets(source),
        partition_key="2024-02-01",
        resources={
            "workspace": WorkspaceResource(root=str(tmp_path / "ws")),
            "storage": StorageResource(allowed_local_roots=[str(other_crs_cog.parent)]),
            "concurrency": ConcurrencyResource(max_concurrent=4),
        },
    )
    assert result.success
    ids = conflicting.column("id").to_pylist()
    published = Collection.open(tmp_path / "ws" / "table" / "collection").to_table()
    assert published.column("id").to_pylist() == ids[1:]
    materialization = next(
        m
        for m in result.get_asset_materialization_events()
        if m.asset_key == dg.AssetKey(["table", "collection"])
    )
    metadata = materialization.materialization.metadata
    assert metadata["crs_conflicts_left_out"].value == 1
    check = next(
        c for c in result.get_asset_check_evaluations() if c.check_name == "crs_consistent"
    )
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert repr(ids[0]) in str(check.metadata["examples"].value)
