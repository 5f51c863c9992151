"""The three steps of the Dagster graph as plain functions: scan, headers, join.

Kept out of ``defs/`` so that they can be tested and reused without Dagster: each takes a
month's inputs as Arrow tables and returns Arrow tables plus the figures an asset reports.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc

from rasteret_assets.contract import ASSETS, DATETIME, BandHeader, band_metadata_array
from rasteret_assets.contract import metadata_column as metadata_name
from rasteret_assets.ingest.headers.engine import HeaderOutcome, ProgressLog, fetch_headers
from rasteret_assets.ingest.headers.rows import outcomes_table
from rasteret_assets.ingest.headers.stored import headers_by_url
from rasteret_assets.ingest.normalize.columns import with_column
from rasteret_assets.ingest.stac.builder import StacCollectionBuilder, with_header_crs
from rasteret_assets.storage import RetryPolicy, StorageBackend, redact_url

logger = logging.getLogger(__name__)


async def scan_stac_month(
    builder: StacCollectionBuilder,
    start: datetime,
    end: datetime,
    *,
    bbox: Sequence[float] | None = None,
    query: dict | None = None,
    filter: dict | str | None = None,
) -> pa.Table | None:
    """Records of items acquired in ``[start, end)``; ``None`` when the month has none.

    STAC date ranges are inclusive, so the search asks for ``end - 1 µs`` and a last filter
    keeps exactly the month's items even if the server rounds. Bad items raise or are counted
    by the rules of :mod:`.stac_items`; afterwards ``builder.item_counts.as_metadata()``
    holds the counts (repeats dropped, records without band assets) for the asset metadata.
    """
    batches = [
        batch
        async for batch in builder.iter_record_batches(
            tuple(bbox) if bbox else None,
            (start, end - timedelta(microseconds=1)),
            query,
            filter=filter,
        )
    ]
    if not batches or sum(b.num_rows for b in batches) == 0:
        return None
    table = pa.Table.from_batches(batches)
    when = table.column(DATETIME)
    inside = pc.and_(pc.greater_equal(when, start), pc.less(when, end))
    table = table.filter(inside)
    return table if table.num_rows else None


def asset_urls(records: pa.Table, band_codes: Sequence[str]) -> dict[str, str]:
    """``{key: href}`` of every asset the bands use; the key is the href without a query."""
    urls: dict[str, str] = {}
    assets = records.column(ASSETS).combine_chunks()
    for band in band_codes:
        if band not in {f.name for f in assets.type}:
            continue
        hrefs = pc.struct_field(assets.field(band), "href")
        for href in hrefs.drop_null().unique().to_pylist():
            urls.setdefault(redact_url(href), href)
    return urls


@dataclass
class HeaderStats:
    """What one ``cog_headers`` run did, for the asset's metadata."""

    fetched: int = 0
    reused: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    requests: int = 0
    bytes_read: int = 0
    elapsed: float = 0.0

    @property
    def failed(self) -> int:
        return sum(self.errors.values())

    @property
    def headers_per_second(self) -> float:
        return self.fetched / self.elapsed if self.elapsed else 0.0


def reusable_rows(previous: pa.Table | None, urls: dict[str, str]) -> pa.Table | None:
    """Successful rows of an earlier run for URLs still in use: their header is known.

    COG hrefs in STAC catalogs are immutable by convention (a reprocessed scene gets a new
    href), so a known URL is not fetched again; failures are always retried.
    """
    if previous is None or previous.num_rows == 0:
        return None
    wanted = pa.array(list(urls), pa.string())
    keep = pc.and_(
        pc.equal(previous.column("status"), "ok"), pc.is_in(previous.column("url"), wanted)
    )
    rows = previous.filter(keep)
    return rows if rows.num_rows else None


async def refresh_headers(
    urls: dict[str, str],
    previous: pa.Table | None,
    backend: StorageBackend,
    *,
    max_concurrent: int,
    retry: RetryPolicy | None = None,
) -> tuple[pa.Table, HeaderStats]:
    """One ``cog_headers`` row per URL: reused from ``previous`` or fetched now."""
    stats = HeaderStats()
    reused = reusable_rows(previous, urls)
    known = set(reused.column("url").to_pylist()) if reused is not None else set()
    stats.reused = len(known)
    todo = [href for key, href in urls.items() if key not in known]
    started = time.perf_counter()
    outcomes: list[HeaderOutcome] = []
    if todo:
        progress = ProgressLog(len(todo))
        stream: AsyncIterator[HeaderOutcome] = fetch_headers(
            todo, backend, max_concurrent=max_concurrent, retry=retry, progress=progress
        )
        async for outcome in stream:
            outcomes.append(outcome)
            stats.requests += outcome.requests
            stats.bytes_read += outcome.bytes_read
            if not outcome.ok:
                stats.errors[outcome.status] += 1
    stats.elapsed = time.perf_counter() - started
    stats.fetched = len(outcomes) - stats.failed
    tables = [outcomes_table(outcomes)]
    if reused is not None:
        tables.append(reused.cast(tables[0].schema))
    return pa.concat_tables(tables).sort_by("url"), stats


def attach_band_metadata(
    records: pa.Table, headers: pa.Table, band_codes: Sequence[str]
) -> pa.Table:
    """``records`` plus ``{band}_metadata`` (null where the asset failed) and header CRS."""
    known = headers_by_url(headers)
    assets = records.column(ASSETS).combine_chunks()
    present = {f.name for f in assets.type}
    table = records
    out_of_range = 0
    for band in band_codes:
        rows: list[BandHeader | None] = [None] * records.num_rows
        if band in present:
            refs = assets.field(band)
            hrefs = pc.struct_field(refs, "href").to_pylist()
            indexes = pc.struct_field(refs, "band_index").to_pylist()
            for row, (href, band_index) in enumerate(zip(hrefs, indexes, strict=True)):
                found = known.get(redact_url(href)) if href else None
                if found is None:
                    continue
                if (band_index or 0) < found.header.image.samples_per_pixel:
                    rows[row] = BandHeader(found.header, band_index or 0, found.etag, found.size)
                else:
                    out_of_range += 1
        name = metadata_name(band)
        column = band_metadata_array(rows)
        table = with_column(table, name, column)
    if out_of_range:
        logger.warning(
            "%d asset(s) name a band_index past their file's samples; left without metadata",
            out_of_range,
        )
    return with_header_crs(table, band_codes)
