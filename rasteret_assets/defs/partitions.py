"""A source's monthly partitions: only the months it can have data in.

A static catalog says which months those are (its temporal extent), so its partitions stop
there unless the entry sets ``start_month``/``end_month``; other sources run from their
``start_month`` to ``end_month`` or through the current, still open, month.
"""

import functools
from datetime import datetime

import dagster as dg

from rasteret_assets.ingest.stac.extent import temporal_extent
from rasteret_assets.sources import ResolvedSource, SourcesConfigError


@functools.cache
def _catalog_extent(location: str) -> tuple[datetime | None, datetime | None]:
    return temporal_extent(location)


def _next_month(month: str) -> str:
    year, number = map(int, month.split("-"))
    return f"{year + number // 12}-{number % 12 + 1:02d}-01"


def partition_months(source: ResolvedSource) -> tuple[str, str | None]:
    """``(first month, last month or None for open-ended)``, both ``YYYY-MM``."""
    start, end = source.start_month, source.end_month
    if source.kind == "static_catalog" and (start is None or end is None):
        first, last = _catalog_extent(source.location)
        start = start or (f"{first:%Y-%m}" if first else None)
        end = end or (f"{last:%Y-%m}" if last else None)
    if start is None:
        raise SourcesConfigError(
            f"source {source.name!r}: field 'start_month': the catalog's temporal extent has "
            "no start; set start_month"
        )
    return start, end


def monthly_partitions(source: ResolvedSource) -> dg.MonthlyPartitionsDefinition:
    """Through the still open current month (``end_offset``), never past the last month."""
    start, end = partition_months(source)
    return dg.MonthlyPartitionsDefinition(
        start_date=f"{start}-01", end_date=end and _next_month(end), end_offset=1
    )
