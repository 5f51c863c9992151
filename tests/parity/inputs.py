"""Constants and table edits shared by the rasteret-parity tests."""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa

BANDS = ["red", "green", "nir"]
FEBRUARY = (datetime(2024, 2, 1, tzinfo=UTC), datetime(2024, 3, 1, tzinfo=UTC))
DERIVED = ["proj:code", "proj:epsg", "crs", "year", "month", "bbox", "scene_bbox"]


def with_href(table: pa.Table, row: int, band: str, href: str) -> pa.Table:
    """``table`` with one asset's href replaced."""
    rows = table.to_pylist()
    rows[row]["assets"][band]["href"] = href
    return pa.Table.from_pylist(rows, schema=table.schema)
