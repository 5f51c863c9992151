"""Small contract details a rasteret 0.4.1 user's code relies on."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from month_records import scan_month

from parity.inputs import FEBRUARY, table_source
from rasteret_assets.ingest import RecordTableBuilder, build_collection_from_table


def test_build_collection_from_table_keeps_the_callers_year_and_month(
    february: pa.Table, tmp_path: Path
) -> None:
    """A caller may partition by its own calendar (here: a hydrological year)."""
    table = february.append_column("year", pa.array([2023, 2023], pa.int64()))
    table = table.append_column("month", pa.array([5, 5], pa.int64()))
    kept = build_collection_from_table(table, workspace_dir=tmp_path / "c").to_table()
    assert kept.column("year").to_pylist() == [2023, 2023]
    assert kept.column("month").to_pylist() == [5, 5]
    assert {p.name for p in (tmp_path / "c").iterdir()} == {"year=2023"}


def test_the_dagster_records_step_derives_year_and_month_from_datetime(
    february: pa.Table, tmp_path: Path
) -> None:
    path = tmp_path / "records.parquet"
    table = february.append_column("year", pa.array([1999, 1999], pa.int32()))
    source = table_source(table.append_column("month", pa.array([7, 7], pa.int32())), path)
    records, _ = scan_month(source, *FEBRUARY)
    assert records is not None
    assert records.column("year").to_pylist() == [2024, 2024]
    assert records.column("month").to_pylist() == [2, 2]


def test_error_messages_keep_the_references_wording(february: pa.Table, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="missing required columns"):
        build_collection_from_table(february.drop_columns(["geometry"]))
    path = tmp_path / "records.parquet"
    pq.write_table(
        pa.table({"id": ["a"], "datetime": pc.cast(pa.array([0]), pa.timestamp("s"))}), path
    )
    with pytest.raises(ValueError, match="href_column 'url' not found in table"):
        RecordTableBuilder(path, href_column="url", band_index_map={"b": 0}).build()
