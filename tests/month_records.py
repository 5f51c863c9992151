"""A month of a source's records as one table: what the records step would write, for tests."""

from __future__ import annotations

import asyncio
from datetime import datetime

import pyarrow as pa

from rasteret_assets.ingest.steps import RecordsResult, month_records
from rasteret_assets.sources import ResolvedSource


def scan_month(
    source: ResolvedSource, start: datetime, end: datetime
) -> tuple[pa.Table | None, dict[str, int]]:
    """The normalised records of ``[start, end)`` (``None`` when there are none) and the
    scan's counts."""

    async def collect() -> tuple[list[pa.Table], RecordsResult]:
        result = RecordsResult()
        return [t async for t in month_records(source, start, end, result)], result

    tables, result = asyncio.run(collect())
    return (pa.concat_tables(tables) if tables else None), result.counts
