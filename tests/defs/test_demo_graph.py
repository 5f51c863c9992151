"""Real Dagster runs of the built-in demo source (a static catalog of GDAL-written COGs)."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from dagster._core.storage.partition_status_cache import AssetPartitionStatus

from rasteret_assets.collection import Collection
from rasteret_assets.defs.assets import build_source_assets
from rasteret_assets.defs.resources import (
    ConcurrencyResource,
    StorageResource,
    WorkspaceResource,
)
from rasteret_assets.ingest.lineage import INGESTED_AT, LINEAGE_TYPES, RUN_ID
from rasteret_assets.sources import demo_source, resolve

SOURCE = resolve(demo_source())
ASSETS = build_source_assets(SOURCE)


def resources(root: Path) -> dict[str, object]:
    return {
        "workspace": WorkspaceResource(root=str(root)),
        "storage": StorageResource(),
        "concurrency": ConcurrencyResource(max_concurrent=8, max_per_host=8),
    }


def materialize(root: Path, month: str) -> dg.ExecuteInProcessResult:
    result = dg.materialize(ASSETS, partition_key=month, resources=resources(root))
    assert result.success
    return result


def metadata(result: dg.ExecuteInProcessResult, name: str) -> dict[str, object]:
    key = dg.AssetKey(["demo", name])
    events = result.asset_materializations_for_node(f"demo__{name}")
    assert events, f"no materialization of {key}"
    return {k: v.value for k, v in events[-1].metadata.items()}


def test_a_month_materializes_the_three_assets(tmp_path: Path) -> None:
    result = materialize(tmp_path, "2024-02-01")
    records = metadata(result, "records")
    assert records["dagster/row_count"] == 2
    assert records["duplicate_items_dropped"] == records["items_without_band_assets"] == 0
    assert records["items_read"] >= 2
    headers = metadata(result, "cog_headers")
    assert headers["fetched"] == 6 and headers["reused"] == 0 and headers["failed"] == 0
    assert metadata(result, "collection")["published"] is True
    checks = result.get_asset_check_evaluations()
    assert checks and all(c.passed for c in checks)
    collection = Collection.open(tmp_path / "demo" / "collection")
    table = collection.to_table()
    assert table.num_rows == 2
    assert sorted(pc.unique(table.column("month")).to_pylist()) == [2]
    for band in ("red", "green", "nir"):
        column = table.column(f"{band}_metadata")
        assert column.null_count == 0
        assert pc.struct_field(column, "image_width").to_pylist() == [256, 256]


def test_rematerializing_a_month_reuses_headers_and_is_idempotent(tmp_path: Path) -> None:
    materialize(tmp_path, "2024-01-01")
    first = Collection.open(tmp_path / "demo" / "collection").to_table()
    again = materialize(tmp_path, "2024-01-01")
    headers = metadata(again, "cog_headers")
    assert headers["fetched"] == 0 and headers["reused"] == 6
    second = Collection.open(tmp_path / "demo" / "collection").to_table()
    # The same rows, only their lineage says they were published again, by another run.
    assert _without_lineage(second) == _without_lineage(first)
    assert set(second.column(RUN_ID).to_pylist()) == {again.run_id}
    assert second.column(INGESTED_AT)[0].as_py() > first.column(INGESTED_AT)[0].as_py()


def _without_lineage(table: pa.Table) -> list[dict[str, object]]:
    return table.drop_columns(list(LINEAGE_TYPES)).sort_by("id").to_pylist()


def test_months_are_independent_partitions(tmp_path: Path) -> None:
    materialize(tmp_path, "2024-01-01")
    materialize(tmp_path, "2024-03-01")
    table = Collection.open(tmp_path / "demo" / "collection").to_table()
    assert sorted(pc.unique(table.column("month")).to_pylist()) == [1, 3]
    assert table.num_rows == 4


def test_an_empty_month_materializes_zero_rows_and_skips_its_checks(tmp_path: Path) -> None:
    """A month inside the partitions but without items: zero rows, the same metadata keys as
    a month with data, and no check result (Dagster shows the checks as skipped)."""
    wide = resolve(SOURCE.spec.model_copy(update={"end_month": "2025-12"}))
    empty = dg.materialize(
        build_source_assets(wide), partition_key="2025-06-01", resources=resources(tmp_path)
    )
    full = materialize(tmp_path, "2024-02-01")
    assert metadata(empty, "records")["dagster/row_count"] == 0
    assert metadata(empty, "collection")["dagster/row_count"] == 0
    assert metadata(empty, "collection")["published"] is False
    assert empty.get_asset_check_evaluations() == []
    for name in ("records", "cog_headers", "collection"):
        assert metadata(empty, name).keys() == metadata(full, name).keys(), name


@pytest.mark.parametrize("month", ["2024-01-01"])
def test_definitions_load(month: str) -> None:
    from rasteret_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert {"demo/records", "demo/cog_headers", "demo/collection"} <= keys
    assert month in defs.resolve_job_def("demo_monthly").partitions_def.get_partition_keys()


def test_a_month_below_the_coverage_threshold_is_not_published(tmp_path: Path) -> None:
    """A header missing from ``cog_headers`` (what a failed URL leaves) drops coverage below a
    strict threshold; the blocking check keeps the month's published version untouched, and
    the instance records the month as failed (what the asset's partition list shows), not as
    materialized."""
    strict = resolve(SOURCE.spec.model_copy(update={"min_header_coverage": 1.0}))
    collection = build_source_assets(strict)[2]
    key = dg.AssetKey(["demo", "collection"])
    with dg.instance_for_test() as instance:
        assert dg.materialize(
            build_source_assets(strict),
            partition_key="2024-01-01",
            resources=resources(tmp_path),
            instance=instance,
        ).success
        headers_file = (
            tmp_path / "demo" / "cog_headers" / "year=2024" / "month=1" / "headers.parquet"
        )
        headers = pq.read_table(headers_file)
        pq.write_table(headers.slice(1), headers_file)
        before = Collection.open(tmp_path / "demo" / "collection").to_table()
        result = dg.materialize(
            [collection],
            partition_key="2024-01-01",
            resources=resources(tmp_path),
            raise_on_error=False,
            instance=instance,
        )
        status = instance.get_status_by_partition(
            key, ["2024-01-01", "2024-02-01"], collection.partitions_def
        )
    coverage = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert coverage["header_coverage"] is False
    # Blocked: the step fails and leaves no materialization, so the partition shows failed.
    assert not result.success
    assert result.asset_materializations_for_node("demo__collection") == []
    failure = result.failure_data_for_node("demo__collection")
    assert failure is not None and "header_coverage" in failure.error.message
    assert status == {"2024-01-01": AssetPartitionStatus.FAILED, "2024-02-01": None}
    after = Collection.open(tmp_path / "demo" / "collection").to_table()
    assert after.to_pylist() == before.to_pylist()
