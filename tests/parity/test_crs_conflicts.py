"""A record whose bands' headers disagree on the CRS: the library refuses it as rasteret 0.4.1
does; the Dagster month leaves it out, counts it and warns through a non-blocking check."""

from __future__ import annotations

import asyncio
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from parity.inputs import BANDS, collection_metadata, run_month, table_source, with_href
from rasteret_assets.collection import Collection
from rasteret_assets.ingest import (
    RecordTableBuilder,
    build_url_index_from_assets,
    enrich_table_with_cog_metadata,
)


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
    source = table_source(conflicting, tmp_path / "records.parquet", name="table")
    result = run_month(source, tmp_path / "ws", other_crs_cog.parent)
    assert result.success
    ids = conflicting.column("id").to_pylist()
    published = Collection.open(tmp_path / "ws" / "table" / "collection").to_table()
    assert published.column("id").to_pylist() == ids[1:]
    metadata = collection_metadata(result, "table")
    assert metadata["crs_conflicts_left_out"].value == 1
    check = next(
        c for c in result.get_asset_check_evaluations() if c.check_name == "crs_consistent"
    )
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert repr(ids[0]) in str(check.metadata["examples"].value)
