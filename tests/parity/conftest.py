"""Shared inputs of the rasteret-parity tests: the demo's records as a record table."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
from month_records import scan_month

from parity.inputs import DERIVED, FEBRUARY
from rasteret_assets.sources import demo_source, resolve


@pytest.fixture(scope="session")
def february() -> pa.Table:
    """The demo's two February records, as a user's table would hold them: no CRS columns,
    no derived columns."""
    records, _ = scan_month(resolve(demo_source()), *FEBRUARY)
    assert records is not None and records.num_rows == 2
    return records.drop_columns([c for c in DERIVED if c in records.column_names])


@pytest.fixture(scope="session")
def other_crs_cog(tiff_fixtures: Path) -> Path:
    """A real COG in EPSG:32629, a zone none of the demo's files use."""
    return tiff_fixtures / "rio-tiler" / "scene_band1.tif"
