"""A ``record_table`` source: monthly assets read the table by pushdown, and a sensor notices
a rewritten table (per-file ETag, else size + mtime) and requests exactly the months it
touches. The table is the demo catalog's records written as Parquet; the COGs are the demo's
real GDAL files."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from month_records import scan_month
from servers.moto_s3 import MotoS3

from rasteret_assets.collection import Collection
from rasteret_assets.contract import ContractError
from rasteret_assets.defs.assets import build_source_assets
from rasteret_assets.defs.automation import table_changes_sensor
from rasteret_assets.defs.resources import (
    ConcurrencyResource,
    StorageResource,
    WorkspaceResource,
)
from rasteret_assets.sources import (
    ResolvedSource,
    SourcesConfigError,
    SourceSpec,
    demo_source,
    load_sources,
    resolve,
)

BANDS = {"red": "red", "green": "green", "nir": "nir"}


@pytest.fixture(scope="module")
def demo_records() -> pa.Table:
    """All demo records (January to March 2024) as a record table would hold them."""
    table, _ = scan_month(
        resolve(demo_source()), datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 4, 1, tzinfo=UTC)
    )
    assert table is not None
    return table.drop_columns([c for c in ("year", "month") if c in table.column_names])


def month_of(table: pa.Table, month: int) -> pa.Table:
    return table.filter(pc.equal(pc.month(table.column("datetime")), month))


def table_source(location: str, **extra: object) -> ResolvedSource:
    return resolve(
        SourceSpec(
            name="table",
            kind="record_table",
            location=location,
            band_map=BANDS,
            start_month="2024-01",
            **extra,
        )
    )


def test_monthly_graph_reads_only_its_month(demo_records: pa.Table, tmp_path: Path) -> None:
    path = tmp_path / "records.parquet"
    pq.write_table(demo_records, path, row_group_size=2)
    resources = {
        "workspace": WorkspaceResource(root=str(tmp_path / "ws")),
        "storage": StorageResource(),
        "concurrency": ConcurrencyResource(max_concurrent=4, max_per_host=4),
    }
    result = dg.materialize(
        build_source_assets(table_source(str(path))),
        partition_key="2024-02-01",
        resources=resources,
    )
    assert result.success
    published = Collection.open(tmp_path / "ws" / "table" / "collection").to_table()
    expected = month_of(demo_records, 2)
    assert sorted(published.column("id").to_pylist()) == sorted(expected.column("id").to_pylist())
    for band in BANDS:
        assert published.column(f"{band}_metadata").null_count == 0
    # The keys rasteret 0.4.1's loader reads; the month file covers its partition window.
    (month_file,) = (tmp_path / "ws" / "table" / "collection").rglob("*.parquet")
    footer = pq.read_schema(month_file).metadata
    assert (footer[b"name"], footer[b"rasteret_collection_version"]) == (b"table", b"1")
    assert footer[b"date_range"] == b"2024-02-01T00:00:00+00:00,2024-02-29T23:59:59.999999+00:00"
    checks = result.get_asset_check_evaluations()
    assert checks and all(c.passed for c in checks)


def test_band_map_naming_a_missing_asset_is_a_typed_error(
    demo_records: pa.Table, tmp_path: Path
) -> None:
    path = tmp_path / "records.parquet"
    pq.write_table(demo_records, path)
    source = resolve(table_source(str(path)).spec.model_copy(update={"band_map": {"swir": "B11"}}))
    with pytest.raises(ContractError, match=r"asset key\(s\) \['B11'\].*'red'"):
        scan_month(source, datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 2, 1, tzinfo=UTC))


def test_a_record_table_source_must_name_its_bands(tmp_path: Path) -> None:
    sources = tmp_path / "sources.yaml"
    sources.write_text(
        "sources:\n  - name: t\n    kind: record_table\n    location: x.parquet\n"
        "    start_month: 2024-01\n"
    )
    with pytest.raises(SourcesConfigError, match=r"source 't'.*band_map"):
        load_sources(sources)


def tick(source: ResolvedSource, cursor: str | None) -> dg.SensorResult:
    sensor = table_changes_sensor(source)
    with dg.instance_for_test() as instance:
        return sensor(dg.build_sensor_context(cursor=cursor, instance=instance))


def keys_of(result: dg.SensorResult) -> list[str]:
    return [r.partition_key for r in result.run_requests or []]


def rewrite(path: Path, table: pa.Table) -> None:
    """Rewrite a file and move its mtime on, as a later export would."""
    before = path.stat().st_mtime_ns if path.exists() else 0
    pq.write_table(table, path)
    os.utime(path, ns=(before + 10**9, before + 10**9))


def test_sensor_requests_exactly_the_months_a_rewrite_touches(
    demo_records: pa.Table, tmp_path: Path
) -> None:
    root = tmp_path / "table"
    root.mkdir()
    january, february, march = (month_of(demo_records, m) for m in (1, 2, 3))
    pq.write_table(january, root / "a.parquet")
    pq.write_table(pa.concat_tables([february, march]), root / "b.parquet")
    (root / "_SUCCESS").write_text("")  # writer marker files are not data
    source = table_source(str(root))

    first = tick(source, None)
    assert not first.run_requests
    files = json.loads(first.cursor)["files"]
    assert {Path(n).name: s["months"] for n, s in files.items()} == {
        "a.parquet": ["2024-01-01"],
        "b.parquet": ["2024-02-01", "2024-03-01"],
    }

    unchanged = tick(source, first.cursor)
    assert keys_of(unchanged) == []
    assert unchanged.cursor == first.cursor

    # b loses its March rows: March must re-run (to drop them) as well as February.
    rewrite(root / "b.parquet", february)
    second = tick(source, first.cursor)
    assert keys_of(second) == ["2024-02-01", "2024-03-01"]
    files = json.loads(second.cursor)["files"]
    assert files[str(root / "b.parquet")]["months"] == ["2024-02-01"]

    # A new file with March rows, and a removed file with January rows.
    pq.write_table(march, root / "c.parquet")
    (root / "a.parquet").unlink()
    third = tick(source, second.cursor)
    assert keys_of(third) == ["2024-01-01", "2024-03-01"]
    assert sorted(Path(n).name for n in json.loads(third.cursor)["files"]) == [
        "b.parquet",
        "c.parquet",
    ]
    run_keys = {r.run_key for r in [*second.run_requests, *third.run_requests]}
    assert len(run_keys) == 4  # a month that changes again gets a new run key


def test_sensor_follows_etags_on_s3(demo_records: pa.Table, moto_s3: MotoS3) -> None:
    key = "tables/records.parquet"
    sink = pa.BufferOutputStream()
    pq.write_table(month_of(demo_records, 1), sink)
    moto_s3.put(moto_s3.private_bucket, key, sink.getvalue().to_pybytes())
    options = {
        "key": moto_s3.key_id,
        "secret": moto_s3.secret,
        "client_kwargs": {"endpoint_url": moto_s3.endpoint_url, "region_name": moto_s3.region},
    }
    source = table_source(f"s3://{moto_s3.private_bucket}/{key}", location_options=options)
    first = tick(source, None)
    (state,) = json.loads(first.cursor)["files"].values()
    assert state["stamp"].startswith("etag:")

    # Rewritten in place with other months: the ETag changes with the content.
    sink = pa.BufferOutputStream()
    pq.write_table(month_of(demo_records, 3), sink)
    moto_s3.put(moto_s3.private_bucket, key, sink.getvalue().to_pybytes())
    second = tick(source, first.cursor)
    assert keys_of(second) == ["2024-01-01", "2024-03-01"]
    assert options["secret"] not in second.cursor
