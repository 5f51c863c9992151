"""The per-month steps the Dagster assets call: records, header rows, collection.

Plain functions over a :class:`~rasteret_assets.sources.ResolvedSource` and a workspace
:class:`~rasteret_assets.collection.store.Store`, so they are tested and reused without
Dagster. Each streams: records and header rows flow in Arrow batches from their source to a
staged Parquet file that is swapped in atomically, and the collection step joins a batch of
records at a time to the header rows it needs (:mod:`.headers.join`, the one join every door
uses). Memory is bounded by a batch, not by the month.

URL rewrites are applied once, when records are made (the STAC item converter, or the record
table's preparation): the stored href is the URL that is read, and storage never rewrites.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from rasteret_assets.collection import CollectionInfo, PartitionedWriter, normalize_date_range
from rasteret_assets.collection.partition_file import DATA_FILE, PartitionFile
from rasteret_assets.collection.staged import StagedParquet
from rasteret_assets.collection.store import Store
from rasteret_assets.contract import (
    ASSETS,
    COG_HEADERS_SCHEMA,
    DATETIME,
    ID,
    DuplicateIdsError,
    require_unique_ids,
)
from rasteret_assets.ingest.headers.engine import ProgressLog
from rasteret_assets.ingest.headers.join import JoinReport, join_headers
from rasteret_assets.ingest.headers.rows import JOIN_COLUMNS, add_urls, url_identity
from rasteret_assets.ingest.headers.stream import header_rows
from rasteret_assets.ingest.lineage import Lineage
from rasteret_assets.ingest.month_checks import MonthChecks
from rasteret_assets.ingest.normalize.credentials import strip_asset_credentials
from rasteret_assets.ingest.normalize.footprints import FootprintCounts, fill_footprints
from rasteret_assets.ingest.normalize.table import normalize_table
from rasteret_assets.ingest.stac.band_map import BandMapError
from rasteret_assets.ingest.stac.builder import StacCollectionBuilder
from rasteret_assets.ingest.stac.items import StacItemConverter
from rasteret_assets.ingest.tables.month import BATCH_ROWS, in_window, month_tables
from rasteret_assets.sources import CloudConfig, ResolvedSource
from rasteret_assets.storage import RetryPolicy, StorageBackend, redact_url

HEADERS_FILE = "headers.parquet"
#: Records per batch of the collection step: the unit of its memory.
JOIN_BATCH_ROWS = 8192
#: Header rows per row group of ``headers.parquet``: what the join reads at a time.
HEADER_ROW_GROUP = 1000
#: Failed URLs kept per error class as examples for the ``cog_headers`` check.
FAILED_URL_EXAMPLES = 3


def month_dir(start: datetime) -> str:
    """The hive partition directory of a month, ``year=YYYY/month=M``."""
    return f"year={start.year}/month={start.month}"


# -- records -----------------------------------------------------------------------------


@dataclass
class RecordsResult:
    """What one records step did."""

    rows: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    hrefs_credentials_removed: int = 0
    uri: str | None = None
    schema: pa.Schema | None = None


def stac_builder(source: ResolvedSource) -> StacCollectionBuilder:
    """The STAC builder of a resolved source: its band map, collection and rewrites."""
    return StacCollectionBuilder(
        data_source=source.data_source,
        stac_api=source.location,
        stac_collection=source.collection,
        band_map=dict(source.band_map or {}),
        band_index_map=dict(source.band_index_map),
        cloud_config=CloudConfig(url_rewrite_patterns=dict(source.url_rewrites)),
        static_catalog=source.kind == "static_catalog",
    )


async def write_records(
    source: ResolvedSource, start: datetime, end: datetime, store: Store
) -> RecordsResult:
    """Scan ``[start, end)`` of the source into ``year=/month=/part-0.parquet`` under ``store``.

    Batches are normalised and stripped of credentials as they arrive; ids must be unique
    across the month. A month without records writes nothing (the caller removes the stale
    partition). Raises :class:`BandMapError` when the band map matches no asset of any
    record, naming the source.
    """
    result = RecordsResult()
    info = CollectionInfo(name=source.name, data_source=source.data_source)
    partition = PartitionFile(
        store, month_dir(start), info=info, run_id=uuid.uuid4().hex, row_group_size=BATCH_ROWS
    )
    ids: list[pa.Array] = []
    try:
        async for raw in month_records(source, start, end, result):
            table, stripped = strip_asset_credentials(raw)
            result.hrefs_credentials_removed += stripped
            ids.append(table.column(ID).combine_chunks())
            partition.write(table)
            result.rows += table.num_rows
        if not result.rows:
            partition.abort()
            return result
        _require_unique(ids, source)
        result.schema = partition.schema
        result.uri = partition.commit()
    except BaseException:
        partition.abort()
        raise
    return result


async def month_records(
    source: ResolvedSource, start: datetime, end: datetime, result: RecordsResult
) -> AsyncIterator[pa.Table]:
    """The source's normalised records of ``[start, end)``, a batch at a time.

    ``result.counts`` receives the STAC scan's counts when the scan ends.
    """
    if source.kind == "record_table":
        for table in month_tables(
            source.location,
            start,
            end,
            filesystem=source.location_filesystem(),
            column_map=source.column_map,
            href_column=source.href_column,
            band_index_map=source.band_index_map,
            url_rewrite_patterns=source.url_rewrites,
            band_map=None if source.href_column else source.band_map,
        ):
            yield table
        return
    builder = stac_builder(source)
    converter = builder.converter()
    async for table in stac_month(
        builder,
        start,
        end,
        bbox=source.bbox,
        query=source.query,
        filter=source.filter,
        converter=converter,
    ):
        yield normalize_table(table)
    result.counts = converter.counts.as_metadata()
    _require_band_assets(source, converter)


async def stac_month(
    builder: StacCollectionBuilder,
    start: datetime,
    end: datetime,
    *,
    bbox: Sequence[float] | None = None,
    query: dict | None = None,
    filter: dict | str | None = None,
    converter: StacItemConverter | None = None,
) -> AsyncIterator[pa.Table]:
    """Raw records of items acquired in ``[start, end)``, a search page at a time.

    STAC date ranges are inclusive, so the search asks up to ``end - 1 µs`` and a last
    filter keeps exactly the month's items even if the server rounds. Bad items raise or are
    counted by the rules of :mod:`.stac.items` (``builder.item_counts``).
    """
    async for batch in builder.iter_record_batches(
        tuple(bbox) if bbox else None,
        (start, end - timedelta(microseconds=1)),
        query,
        filter=filter,
        converter=converter,
    ):
        table = in_window(pa.Table.from_batches([batch]), start, end)
        if table.num_rows:
            yield table


def _require_band_assets(source: ResolvedSource, converter: StacItemConverter) -> None:
    """A band map that matches no asset of any item is a wrong map, not an empty month."""
    if not converter.items_seen or any(converter.asset_keys.values()):
        return
    raise BandMapError(
        f"source {source.name!r}: its band map {dict(source.band_map or {})} matches no asset "
        f"of the {converter.items_seen} item(s) read; set band_map to the items' asset keys",
        missing=dict(source.band_map or {}),
        available=(),
    )


def _require_unique(ids: list[pa.Array], source: ResolvedSource) -> None:
    """Ids must be unique across the whole month, not only within a batch."""
    try:
        require_unique_ids(pa.chunked_array(ids, pa.string()))
    except DuplicateIdsError as error:
        raise DuplicateIdsError(
            f"source {source.name!r}: {error}", column=error.column, ids=error.ids
        ) from None


# -- header rows -------------------------------------------------------------------------


@dataclass
class HeaderStats:
    """What one header step did, for the asset's metadata."""

    urls: int = 0
    fetched: int = 0
    reused: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    #: A few failed URLs per error class, without query strings.
    examples: dict[str, list[str]] = field(default_factory=dict)
    requests: int = 0
    bytes_read: int = 0
    elapsed: float = 0.0

    @property
    def failed(self) -> int:
        return sum(self.errors.values())

    @property
    def headers_per_second(self) -> float:
        return self.fetched / self.elapsed if self.elapsed else 0.0


def month_urls(records: pq.ParquetFile, band_codes: Sequence[str]) -> dict[str, str]:
    """``{identity: href}`` of every asset URL the bands use, in record order."""
    urls: dict[str, str] = {}
    for batch in records.iter_batches(columns=[ASSETS], batch_size=65536):
        assets = batch.column(0)
        present = {f.name for f in assets.type}
        for band in band_codes:
            if band not in present:
                continue
            add_urls(urls, pc.struct_field(assets.field(band), "href"))
    return urls


async def write_header_rows(
    urls: dict[str, str],
    previous: pq.ParquetFile | None,
    backend: StorageBackend,
    sink: StagedParquet,
    *,
    max_concurrent: int,
    retry: RetryPolicy | None = None,
    workers: int | None = None,
) -> HeaderStats:
    """One header row per URL into ``sink``: reused from ``previous`` or fetched now.

    COG hrefs are immutable by convention (a reprocessed scene gets a new href), so a URL
    with a successful row is not read again; failures are always retried. Rows stream: the
    reused ones row group by row group, the fetched ones a batch at a time as they arrive.
    """
    stats = HeaderStats(urls=len(urls))
    wanted = pa.array(list(urls), pa.string())
    known: set[str] = set()
    if previous is not None:
        for group in range(previous.num_row_groups):
            rows = previous.read_row_group(group)
            keep = pc.and_(pc.equal(rows.column("status"), "ok"), pc.is_in(rows["url"], wanted))
            rows = rows.filter(keep)
            if rows.num_rows:
                sink.write(rows.cast(COG_HEADERS_SCHEMA))
                known.update(rows.column("url").to_pylist())
    stats.reused = len(known)
    todo = [href for key, href in urls.items() if key not in known]
    started = time.perf_counter()
    if todo:
        stream = header_rows(
            todo,
            backend,
            max_concurrent=max_concurrent,
            retry=retry,
            batch_size=HEADER_ROW_GROUP,
            workers=workers,
            progress=ProgressLog(len(todo)),
        )
        async for rows in stream:
            sink.write(rows)
            status = rows.column("status")
            failures = rows.filter(pc.not_equal(status, "ok")).select(["status", "url"])
            failed = failures.column("status").to_pylist()
            stats.errors.update(failed)
            for error_class, url in zip(failed, failures.column("url").to_pylist(), strict=True):
                examples = stats.examples.setdefault(error_class, [])
                if len(examples) < FAILED_URL_EXAMPLES:
                    examples.append(redact_url(url))
            stats.fetched += rows.num_rows - len(failed)
            stats.requests += pc.sum(rows.column("requests")).as_py() or 0
            stats.bytes_read += pc.sum(rows.column("bytes_read")).as_py() or 0
    stats.elapsed = time.perf_counter() - started
    return stats


# -- collection --------------------------------------------------------------------------


class HeaderFile:
    """A month's ``headers.parquet``, read a row group at a time by the rows a batch needs.

    Only the URL and status columns are held for the whole month (the look-up index); the
    header payload of a row group is read when a batch of records refers to it.
    """

    def __init__(self, file: pq.ParquetFile) -> None:
        self.file = file
        meta = file.metadata
        sizes = [meta.row_group(g).num_rows for g in range(meta.num_row_groups)]
        self.group_starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        urls = file.read(columns=["url", "status"])
        ok = pc.equal(urls.column("status"), "ok").to_numpy(zero_copy_only=False)
        self.urls = pc.if_else(pa.array(ok), urls.column("url").combine_chunks(), None)

    def rows_for(self, keys: pa.Array) -> pa.Table:
        """The successful header rows of ``keys`` (any that exist)."""
        # Hash the batch's keys, not the month's URLs: the set stays the size of a batch.
        wanted = pc.fill_null(pc.is_in(self.urls, value_set=keys.unique()), False)
        found = np.flatnonzero(wanted.to_numpy(zero_copy_only=False))
        if not len(found):
            return COG_HEADERS_SCHEMA.empty_table().select(list(JOIN_COLUMNS))
        groups = np.unique(np.searchsorted(self.group_starts, found, side="right") - 1)
        rows = self.file.read_row_groups(groups.tolist(), columns=list(JOIN_COLUMNS))
        local = pc.is_in(rows.column("url"), value_set=keys.unique())
        return rows.filter(local)


@dataclass
class CollectionResult:
    """What one collection step did: the checks' verdicts and whether the month was published."""

    rows: int = 0
    published: bool = False
    uri: str | None = None
    checks: MonthChecks | None = None
    join: JoinReport = field(default_factory=JoinReport)
    footprints: FootprintCounts = field(default_factory=FootprintCounts)
    schema: pa.Schema | None = None
    datetime_range: str | None = None


def publish_month(
    source: ResolvedSource,
    start: datetime,
    end: datetime,
    records: pq.ParquetFile,
    headers: pq.ParquetFile,
    collection_uri: str,
    *,
    storage_options: dict | None = None,
    lineage: Lineage | None = None,
) -> CollectionResult:
    """Join the month's records to their header rows and publish it unless a blocking check fails.

    Records are already normalised (the records step did it); the join adds
    ``{band}_metadata`` and backfills ``proj:epsg``/``crs``; ``lineage`` appends where each
    row came from (:mod:`.lineage`). Batches are checked as they are
    written to the month's staged file; the file replaces the live partition only when every
    blocking check passes, else it is discarded and the previous version stays.
    """
    bands = list(source.band_codes)
    checks = MonthChecks(bands, start, end, source.min_header_coverage)
    result = CollectionResult(checks=checks)
    index = HeaderFile(headers)
    info = CollectionInfo(
        name=source.name,
        description=f"{source.name}: {source.kind} {source.location}",
        data_source=source.data_source,
        # The partition's window, inclusive: what the month's file covers.
        date_range=normalize_date_range((start, end - timedelta(microseconds=1))),
    )
    first = last = None
    writer = PartitionedWriter(
        collection_uri, info=info, storage_options=storage_options, buffer_bytes=16 << 20
    )
    with writer:
        for batch in records.iter_batches(batch_size=JOIN_BATCH_ROWS):
            table = pa.Table.from_batches([batch])
            keys = _batch_keys(table, bands)
            joined, _ = join_headers(
                table, index.rows_for(keys), bands, report=result.join, on_crs_conflict="drop"
            )
            if not joined.num_rows:  # every record of the batch left out
                continue
            joined, footprints = fill_footprints(joined, bands)
            result.footprints.add(footprints)
            if lineage is not None:
                joined = lineage.append_to(joined)
            result.schema = result.schema or joined.schema
            checks.update(joined)
            span = pc.min_max(joined.column(DATETIME))
            first = span["min"] if first is None or span["min"].as_py() < first.as_py() else first
            last = span["max"] if last is None or span["max"].as_py() > last.as_py() else last
            writer.write(joined)
            result.rows += joined.num_rows
        checks.finish(result.join)
        if checks.blocked:
            writer.abort()
    if not checks.blocked and result.rows:
        result.published = True
        result.uri = f"{collection_uri.rstrip('/')}/{month_dir(start)}/{DATA_FILE}"
        result.datetime_range = f"{first.as_py().isoformat()} .. {last.as_py().isoformat()}"
    return result


def _batch_keys(table: pa.Table, bands: Sequence[str]) -> pa.Array:
    assets = table.column(ASSETS).combine_chunks()
    present = {f.name for f in assets.type}
    hrefs = [pc.struct_field(assets.field(b), "href") for b in bands if b in present]
    if not hrefs:
        return pa.array([], pa.string())
    return url_identity(pa.concat_arrays(hrefs).drop_null())
