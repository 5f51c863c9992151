"""Asset checks of a month's collection table, as plain functions returning check results.

They run on the table *before* it is written, so a blocking failure keeps a broken month
from being published: the previous version of the partition stays in place.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import dagster as dg
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rasteret_assets.contract import (
    BAND_METADATA_TYPE,
    BBOX,
    BBOX_TYPE,
    DATETIME,
    DATETIME_TYPE,
    GEOMETRY,
    ID,
    metadata_column,
    missing_columns,
)

SCHEMA = "contract_schema"
UNIQUE_IDS = "unique_ids"
IN_PARTITION = "datetime_in_partition"
BBOX_VALID = "bbox_valid"
COVERAGE = "header_coverage"
TILE_TABLES = "tile_table_consistency"

CHECK_DESCRIPTIONS = {
    SCHEMA: "Contract columns exist with the contract's Arrow types.",
    UNIQUE_IDS: "No record id appears twice in the month.",
    IN_PARTITION: "Every record's datetime lies inside the partition's month.",
    BBOX_VALID: "Every bbox is ordered and inside lon/lat bounds.",
    COVERAGE: "Share of (record, band) assets with parsed headers reaches the threshold.",
    TILE_TABLES: "Each band's tile table has one entry per tile of its grid.",
}
BLOCKING = frozenset({SCHEMA, UNIQUE_IDS, COVERAGE, TILE_TABLES})


def check_specs(
    asset_key: dg.AssetKey, partitions: dg.PartitionsDefinition
) -> list[dg.AssetCheckSpec]:
    """Partitioned like the asset, so the UI shows each month's own check results."""
    return [
        dg.AssetCheckSpec(
            name,
            asset=asset_key,
            description=text,
            blocking=name in BLOCKING,
            partitions_def=partitions,
        )
        for name, text in CHECK_DESCRIPTIONS.items()
    ]


def _result(name: str, passed: bool, **metadata: object) -> dg.AssetCheckResult:
    severity = dg.AssetCheckSeverity.ERROR if name in BLOCKING else dg.AssetCheckSeverity.WARN
    return dg.AssetCheckResult(
        check_name=name, passed=bool(passed), severity=severity, metadata=metadata
    )


def contract_schema(table: pa.Table, band_codes: Sequence[str]) -> dg.AssetCheckResult:
    expected = {ID: pa.string(), DATETIME: DATETIME_TYPE, GEOMETRY: pa.binary(), BBOX: BBOX_TYPE}
    expected |= {metadata_column(b): BAND_METADATA_TYPE for b in band_codes}
    wrong = [
        f"{name}: {table.schema.field(name).type} (expected {kind})"
        for name, kind in expected.items()
        if name in table.column_names and table.schema.field(name).type != kind
    ]
    missing = missing_columns(table.schema) + [
        n
        for n in expected
        if n not in table.column_names and n not in missing_columns(table.schema)
    ]
    return _result(SCHEMA, not wrong and not missing, missing=missing, wrong_types=wrong)


def unique_ids(table: pa.Table) -> dg.AssetCheckResult:
    counts = pc.value_counts(table.column(ID))
    repeated = [v["values"] for v in counts.to_pylist() if v["counts"] > 1]
    return _result(UNIQUE_IDS, not repeated, duplicates=len(repeated), examples=repeated[:5])


def datetime_in_partition(table: pa.Table, start: datetime, end: datetime) -> dg.AssetCheckResult:
    when = table.column(DATETIME)
    outside = pc.or_(pc.less(when, start), pc.greater_equal(when, end))
    bad = table.filter(outside).column(ID).to_pylist()
    return _result(
        IN_PARTITION,
        not bad,
        outside=len(bad),
        examples=bad[:5],
        window=f"[{start.isoformat()}, {end.isoformat()})",
    )


def bbox_valid(table: pa.Table) -> dg.AssetCheckResult:
    box = table.column(BBOX).combine_chunks()
    xmin, ymin, xmax, ymax = (
        box.field(n).to_numpy(zero_copy_only=False) for n in ("xmin", "ymin", "xmax", "ymax")
    )
    ok = (
        np.isfinite(xmin)
        & np.isfinite(ymin)
        & np.isfinite(xmax)
        & np.isfinite(ymax)
        & (xmin <= xmax)
        & (ymin <= ymax)
        & (xmin >= -180)
        & (xmax <= 180)
        & (ymin >= -90)
        & (ymax <= 90)
    )
    bad = pc.filter(table.column(ID), pa.array(~ok)).to_pylist()
    return _result(BBOX_VALID, not bad, invalid=len(bad), examples=bad[:5])


def header_coverage(
    table: pa.Table, band_codes: Sequence[str], threshold: float
) -> dg.AssetCheckResult:
    total = covered = 0
    per_band = {}
    for band in band_codes:
        column = table.column(metadata_column(band))
        have = len(column) - column.null_count
        per_band[band] = have
        covered += have
        total += len(column)
    share = covered / total if total else 1.0
    return _result(
        COVERAGE,
        share >= threshold,
        coverage=dg.MetadataValue.float(share),
        threshold=threshold,
        covered=covered,
        assets=total,
        per_band=per_band,
    )


def tile_table_consistency(table: pa.Table, band_codes: Sequence[str]) -> dg.AssetCheckResult:
    bad: list[str] = []
    for band in band_codes:
        meta = table.column(metadata_column(band)).combine_chunks()
        valid = meta.is_valid()
        if not pc.any(valid).as_py():
            continue
        present = meta.filter(valid)
        width, height, tw, th = (
            present.field(n).to_numpy(zero_copy_only=False).astype(np.int64)
            for n in ("image_width", "image_height", "tile_width", "tile_height")
        )
        expected = -(-width // tw) * -(-height // th)
        actual = pc.list_value_length(present.field("tile_offsets")).to_numpy(zero_copy_only=False)
        counts = pc.list_value_length(present.field("tile_byte_counts")).to_numpy(
            zero_copy_only=False
        )
        wrong = (actual != expected) | (counts != expected)
        ids = table.column(ID).filter(valid).filter(pa.array(wrong)).to_pylist()
        bad += [f"{i}:{band}" for i in ids]
    return _result(TILE_TABLES, not bad, inconsistent=len(bad), examples=bad[:5])
