"""The checks of a month's collection, accumulated batch by batch as the month is joined.

Plain logic, no Dagster: :mod:`rasteret_assets.defs.checks` turns each :class:`CheckOutcome`
into an asset check result. Checks run *before* the month is swapped in, so a blocking
failure keeps a broken month from being published.

A check with nothing to check does not pass: a month whose records name no asset URL for
any band, or whose URLs all failed, fails ``header_coverage`` whatever the threshold.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

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
from rasteret_assets.ingest.headers.join import JoinReport

SCHEMA = "contract_schema"
UNIQUE_IDS = "unique_ids"
IN_PARTITION = "datetime_in_partition"
BBOX_VALID = "bbox_valid"
COVERAGE = "header_coverage"
TILE_TABLES = "tile_table_consistency"
CRS_CONSISTENT = "crs_consistent"

CHECK_DESCRIPTIONS = {
    SCHEMA: "Contract columns exist with the contract's Arrow types.",
    UNIQUE_IDS: "No record id appears twice in the month.",
    IN_PARTITION: "Every record's datetime lies inside the partition's month.",
    BBOX_VALID: (
        "Every bbox is ordered and inside lon/lat bounds; records without a footprint (null "
        "bbox: none given and none derivable from their headers) are counted, not failed."
    ),
    COVERAGE: (
        "Share of (record, band) assets with parsed headers reaches the threshold; a month "
        "with no asset URL, or none read, fails."
    ),
    TILE_TABLES: "Each band's tile table has one entry per tile of its grid.",
    CRS_CONSISTENT: (
        "Every record's bands share one CRS; records whose bands disagree are left out of "
        "the month (rasteret cannot read them as one stack) and named here."
    ),
}
BLOCKING = frozenset({SCHEMA, UNIQUE_IDS, COVERAGE, TILE_TABLES})
EXAMPLES = 5


@dataclass
class CheckOutcome:
    """One check's verdict with the figures that explain it."""

    name: str
    passed: bool
    metadata: dict[str, Any]

    @property
    def blocking(self) -> bool:
        return self.name in BLOCKING


@dataclass
class _Tally:
    count: int = 0
    examples: list[str] = field(default_factory=list)

    def add(self, ids: Sequence[str]) -> None:
        self.count += len(ids)
        self.examples += [str(i) for i in ids[: EXAMPLES - len(self.examples)]]


class MonthChecks:
    """Feed every joined batch to :meth:`update`, then :meth:`finish`; read :attr:`outcomes`."""

    def __init__(
        self, bands: Sequence[str], start: datetime, end: datetime, min_coverage: float
    ) -> None:
        self.bands = list(bands)
        self.start, self.end = start, end
        self.min_coverage = min_coverage
        self.rows = 0
        self.wrong_schema: list[str] = []
        self.missing: list[str] = []
        self.ids: list[pa.Array] = []
        self.outside = _Tally()
        self.bad_bbox = _Tally()
        self.no_footprint = _Tally()
        self.bad_tiles = _Tally()
        self.outcomes: list[CheckOutcome] = []

    def update(self, table: pa.Table) -> None:
        if not self.rows:
            self._schema(table.schema)
        self.rows += table.num_rows
        self.ids.append(table.column(ID).combine_chunks())
        when = table.column(DATETIME)
        outside = pc.or_(pc.less(when, self.start), pc.greater_equal(when, self.end))
        self.outside.add(table.filter(outside).column(ID).to_pylist())
        self.bad_bbox.add(_invalid_bboxes(table))
        self.no_footprint.add(table.filter(table.column(BBOX).is_null()).column(ID).to_pylist())
        for band in self.bands:
            self.bad_tiles.add(_inconsistent_tiles(table, band))

    def finish(self, join: JoinReport) -> list[CheckOutcome]:
        """The month's verdicts (``join`` is the month's join report)."""
        ids = pa.chunked_array(self.ids, pa.string()) if self.ids else pa.array([], pa.string())
        counts = pc.value_counts(ids)
        repeated = [v["values"] for v in counts.to_pylist() if v["counts"] > 1]
        self.outcomes = [
            CheckOutcome(
                SCHEMA,
                not self.wrong_schema and not self.missing,
                {"missing": self.missing, "wrong_types": self.wrong_schema},
            ),
            CheckOutcome(
                UNIQUE_IDS,
                not repeated,
                {"duplicates": len(repeated), "examples": repeated[:EXAMPLES]},
            ),
            CheckOutcome(
                IN_PARTITION,
                not self.outside.count,
                {
                    "outside": self.outside.count,
                    "examples": self.outside.examples,
                    "window": f"[{self.start.isoformat()}, {self.end.isoformat()})",
                },
            ),
            CheckOutcome(
                BBOX_VALID,
                not self.bad_bbox.count,
                {
                    "invalid": self.bad_bbox.count,
                    "examples": self.bad_bbox.examples,
                    "without_footprint": self.no_footprint.count,
                    "without_footprint_examples": self.no_footprint.examples,
                },
            ),
            self._coverage(join),
            CheckOutcome(
                TILE_TABLES,
                not self.bad_tiles.count,
                {"inconsistent": self.bad_tiles.count, "examples": self.bad_tiles.examples},
            ),
            CheckOutcome(
                CRS_CONSISTENT,
                not join.crs_conflicts,
                {
                    "left_out": join.crs_conflicts,
                    "examples": join.crs_conflict_examples[:EXAMPLES],
                },
            ),
        ]
        return self.outcomes

    @property
    def blocked(self) -> list[str]:
        """Names of the blocking checks that failed."""
        return [o.name for o in self.outcomes if o.blocking and not o.passed]

    def _coverage(self, join: JoinReport) -> CheckOutcome:
        assets, covered = join.total_assets, join.total_joined
        share = covered / assets if assets else 0.0
        if not assets:
            reason = "the records name no asset URL for any band: nothing to publish"
        elif not covered:
            reason = "no asset header could be read"
        else:
            reason = None
        metadata: dict[str, Any] = {
            "coverage": share,
            "threshold": self.min_coverage,
            "covered": covered,
            "assets": assets,
            "per_band": dict(join.joined),
            "band_index_errors": join.band_index_errors,
        }
        if reason:
            metadata["reason"] = reason
        return CheckOutcome(COVERAGE, bool(covered) and share >= self.min_coverage, metadata)

    def _schema(self, schema: pa.Schema) -> None:
        expected = {
            ID: pa.string(),
            DATETIME: DATETIME_TYPE,
            GEOMETRY: pa.binary(),
            BBOX: BBOX_TYPE,
        } | {metadata_column(b): BAND_METADATA_TYPE for b in self.bands}
        self.wrong_schema = [
            f"{name}: {schema.field(name).type} (expected {kind})"
            for name, kind in expected.items()
            if name in schema.names and schema.field(name).type != kind
        ]
        absent = missing_columns(schema)
        self.missing = absent + [n for n in expected if n not in schema.names and n not in absent]


def _invalid_bboxes(table: pa.Table) -> list[str]:
    box = table.column(BBOX).combine_chunks()
    xmin, ymin, xmax, ymax = (
        box.field(n).to_numpy(zero_copy_only=False) for n in ("xmin", "ymin", "xmax", "ymax")
    )
    with np.errstate(invalid="ignore"):
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
    # A record without a footprint has a null bbox: counted as such, not as an invalid box.
    ok |= box.is_null().to_numpy(zero_copy_only=False)
    return pc.filter(table.column(ID), pa.array(~ok)).to_pylist()


def _inconsistent_tiles(table: pa.Table, band: str) -> list[str]:
    name = metadata_column(band)
    if name not in table.column_names:
        return []
    meta = table.column(name).combine_chunks()
    valid = meta.is_valid()
    if not pc.any(valid).as_py():
        return []
    present = meta.filter(valid)
    width, height, tw, th = (
        present.field(n).to_numpy(zero_copy_only=False).astype(np.int64)
        for n in ("image_width", "image_height", "tile_width", "tile_height")
    )
    expected = -(-width // tw) * -(-height // th)
    offsets = pc.list_value_length(present.field("tile_offsets")).to_numpy(zero_copy_only=False)
    counts = pc.list_value_length(present.field("tile_byte_counts")).to_numpy(zero_copy_only=False)
    wrong = (offsets != expected) | (counts != expected)
    ids = table.column(ID).filter(valid).filter(pa.array(wrong)).to_pylist()
    return [f"{i}:{band}" for i in ids]
