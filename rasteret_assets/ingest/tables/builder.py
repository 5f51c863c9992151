"""``RecordTableBuilder``: a Parquet/GeoParquet record table → a Collection, streamed.

Pipeline (the reference API's): read → alias → prepare → enrich → normalize, batch by batch.

1. **plan** (:mod:`.record_plan`): one light pass over ``id``/``datetime`` (and, only when
   needed, the assets) checks ids for uniqueness across the whole table, finds the months
   present and the date range — before anything is written;
2. **read** (:mod:`.record_source`): record batches of ``batch_size`` rows with the
   ``columns`` projection and ``filter_expr`` pushed into the scan;
3. **alias / prepare** (:mod:`.record_prepare`): ``column_map`` aliases; ``assets`` from the
   table or from ``href_column`` + ``band_index_map``; ``url_rewrite_patterns`` applied to
   every href in the table, so the collection stores the URL that is actually read;
4. **enrich** (:mod:`.record_enrich`, with ``enrich_cog``): ``{band}_metadata`` from COG
   headers, each URL read once per build; without ``band_codes`` only assets that look like
   rasters (:mod:`.raster_assets`) are read;
5. **normalize** (:func:`.normalize.normalize_table`) and **write**: rows are routed to their
   month's staged file (:class:`~rasteret_assets.collection.PartitionedWriter`); the months
   are swapped in, each atomically, when the pass ends without error.

Memory is bounded by one batch plus the writer's buffers, whatever the table's length: the
table is never materialised. A table spanning more than ``months_per_pass`` months is
streamed once per group of months, so the number of staged files open at once stays
bounded too. Without ``workspace_dir`` the collection is returned in memory — only the
normalised output is held, never the raw table.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from rasteret_assets.collection import Collection, CollectionInfo, PartitionedWriter
from rasteret_assets.collection.streaming import DEFAULT_BUFFER_BYTES
from rasteret_assets.contract import (
    ASSETS,
    DATETIME,
    GEOMETRY,
    ID,
    PARTITION_COLUMNS,
    ContractError,
    MissingColumnsError,
)
from rasteret_assets.ingest.base import CollectionBuilder, run_sync
from rasteret_assets.ingest.headers.chunked import ChunkEnricher, EnrichmentReport
from rasteret_assets.ingest.headers.engine import DEFAULT_MAX_CONCURRENT
from rasteret_assets.ingest.headers.enrich import default_backend
from rasteret_assets.ingest.normalize.assets import normalize_assets
from rasteret_assets.ingest.normalize.table import (
    START_DATETIME,
    acquisition_times,
    normalize_table,
    record_ids,
)
from rasteret_assets.ingest.stac.builder import EnrichmentFailedError
from rasteret_assets.ingest.tables.plan import RecordPlan, describe_months, plan_records
from rasteret_assets.ingest.tables.prepare import RecordPreparer
from rasteret_assets.ingest.tables.scan import ColumnAliases, RecordSource, month_predicate
from rasteret_assets.sources import CloudConfig, find_source
from rasteret_assets.storage import StorageBackend

logger = logging.getLogger(__name__)

#: Rows per record batch: small enough that a batch of wide stac-geoparquet rows (two dozen
#: assets with their metadata) stays in the tens of megabytes.
DEFAULT_BATCH_SIZE = 16_384
#: With enrichment, assets (rows x bands) per batch: a ``{band}_metadata`` value of a
#: Sentinel-2-sized COG is ~3 KB of tile tables, so a batch's metadata stays ~150 MB.
ENRICH_ASSETS_PER_BATCH = 49_152
#: Months whose staged files are open at once; a longer table is streamed once per group.
DEFAULT_MONTHS_PER_PASS = 64

_UNSET: Any = object()


@dataclass
class BuildStats:
    """What one :meth:`RecordTableBuilder.build` did, for logs, asset metadata and tests."""

    rows_planned: int = 0
    rows_written: int = 0
    batches: int = 0
    #: Largest batch seen: the unit of memory, whatever the table's length.
    max_batch_rows: int = 0
    passes: int = 0
    #: Row groups read over all passes, after statistics pruning by ``filter_expr``.
    row_groups_read: int = 0
    months: list[str] = field(default_factory=list)
    plan_seconds: float = 0.0
    build_seconds: float = 0.0
    #: Highest ``pyarrow.total_allocated_bytes()`` seen after a batch was processed.
    peak_arrow_bytes: int = 0

    @property
    def rows_per_second(self) -> float:
        return self.rows_written / self.build_seconds if self.build_seconds else 0.0


class RecordTableBuilder(CollectionBuilder):
    """Build a Collection from an existing Parquet/GeoParquet record table (one row per item).

    The table needs the contract columns ``id``, ``datetime``, ``geometry`` and ``assets``,
    or columns that become them:

    * ``column_map`` ``{source: contract name}`` adds aliases (the source column stays); an
      alias may not shadow a column the table already has (that would silently pick one);
    * ``href_column`` + ``band_index_map`` build ``assets`` for tables without one: every
      band of the map points at the row's href, reading sample ``band_index_map[band]``
      (one multi-band file, several bands). With an ``assets`` column, ``band_index_map``
      sets the sample index of the bands it names instead;
    * ``url_rewrite_patterns`` ``{prefix: replacement}`` rewrite every href (longest prefix,
      once) in the table itself — the collection stores the readable URL.

    ``path`` is a file or directory, local or a URL (``s3://…`` through s3fs); ``filesystem``
    (a pyarrow or fsspec file system) is used for it when given. ``columns`` and
    ``filter_expr`` (source column names) are pushed down into the scan.

    ``enrich_cog`` reads every asset's COG header and adds ``{band}_metadata``; ``band_codes``
    names the bands, and without it every band that has an asset looking like a raster is
    enriched (thumbnails, previews and metadata files are never read). ``max_concurrent``
    caps requests in flight; ``backend`` replaces the default storage router (used as given,
    never closed). A failed asset leaves a null and a row in :attr:`enrichment`; a build in
    which no header at all can be read raises :class:`EnrichmentFailedError`.

    ``build(name=..., workspace_dir=...)`` overrides the constructor's values; the streaming
    knobs are ``batch_size`` (rows per record batch; 16,384, fewer when enriching many
    bands), ``buffer_bytes`` (normalised rows held for Z-ordering before they are appended to
    their month's file; 256 MiB) and ``months_per_pass`` (staged month files open at once;
    64). Unknown keywords raise ``TypeError``. After a build, :attr:`stats` and
    :attr:`enrichment` describe what happened.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        data_source: str = "",
        column_map: dict[str, str] | None = None,
        href_column: str | None = None,
        band_index_map: dict[str, int] | None = None,
        url_rewrite_patterns: dict[str, str] | None = None,
        filesystem: Any | None = None,
        columns: list[str] | None = None,
        filter_expr: ds.Expression | None = None,
        name: str = "",
        workspace_dir: str | Path | None = None,
        enrich_cog: bool = False,
        band_codes: list[str] | None = None,
        max_concurrent: int = DEFAULT_MAX_CONCURRENT,
        backend: StorageBackend | None = None,
    ) -> None:
        super().__init__(name=name, data_source=data_source, workspace_dir=workspace_dir)
        self.path = str(path)
        self.column_map = dict(column_map or {})
        self.aliases = ColumnAliases(self.column_map)
        self.href_column = href_column
        self.band_index_map = _checked_band_index_map(band_index_map)
        if href_column is not None and not self.band_index_map:
            raise ValueError(
                "href_column needs band_index_map ({band: sample index}) to name the bands "
                "its files hold, e.g. {'red': 0, 'green': 1, 'blue': 2}"
            )
        self.url_rewrite_patterns = _checked_patterns(url_rewrite_patterns)
        self.filesystem = filesystem
        if isinstance(columns, str):
            raise TypeError("columns must be a list of column names, not a string")
        self.columns = list(columns) if columns is not None else None
        if filter_expr is not None and not isinstance(filter_expr, ds.Expression):
            raise TypeError("filter_expr must be a pyarrow.dataset.Expression")
        self.filter_expr = filter_expr
        self.enrich_cog = bool(enrich_cog)
        self.band_codes = _checked_band_codes(band_codes)
        if not isinstance(max_concurrent, int) or max_concurrent < 1:
            raise ValueError(f"max_concurrent must be an integer >= 1, got {max_concurrent!r}")
        self.max_concurrent = max_concurrent
        self.backend = backend
        if not self.enrich_cog and (band_codes is not None or backend is not None):
            given = [n for n, v in (("band_codes", band_codes), ("backend", backend)) if v]
            raise ValueError(f"{' and '.join(given)} only take effect with enrich_cog=True")
        self.stats = BuildStats()
        self.enrichment: EnrichmentReport | None = None

    # -- public entry points -------------------------------------------------------------

    def build(self, **kwargs: Any) -> Collection:
        """Read, enrich, normalise and write the record table; return the Collection.

        Safe to call where an event loop already runs (see :func:`~.base.run_sync`).
        """
        return run_sync(self.build_async(**kwargs))

    async def build_async(
        self,
        *,
        name: str | None = None,
        workspace_dir: str | Path | None = _UNSET,
        batch_size: int | None = None,
        months_per_pass: int = DEFAULT_MONTHS_PER_PASS,
        buffer_bytes: int = DEFAULT_BUFFER_BYTES,
    ) -> Collection:
        """The build as a coroutine; the keyword arguments are those of :meth:`build`.

        Decoding, normalising and writing run in the awaiting loop's thread between header
        reads; code whose loop must stay responsive calls :meth:`build`, which then runs the
        build on a loop of its own in a worker thread.
        """
        if (batch_size is not None and batch_size < 1) or months_per_pass < 1 or buffer_bytes < 1:
            raise ValueError("batch_size, months_per_pass and buffer_bytes must be at least 1")
        name = name if name is not None else self.name
        workspace = self.workspace_dir if workspace_dir is _UNSET else workspace_dir
        started = time.perf_counter()
        self.stats = BuildStats()
        self.enrichment = None

        source, preparer = self._open()
        plan, asset_bands, enrich_bands = self._plan(
            source, preparer, batch_size or DEFAULT_BATCH_SIZE
        )
        self.stats.plan_seconds = time.perf_counter() - started
        batch_size = batch_size or _default_batch_size(len(enrich_bands))
        info = CollectionInfo(
            name=name or _default_name(self.path),
            description=self._description(source),
            data_source=self.data_source,
            date_range=plan.date_range,
        )
        groups = plan.month_groups(months_per_pass)
        self.stats.months = [f"{y}-{m:02d}" for y, m in sorted(plan.months)]
        logger.info(
            "record table %s: %d rows in %s, %d pass(es); enriching %s",
            source.display_path,
            plan.rows,
            describe_months(plan.months),
            len(groups),
            enrich_bands or "nothing",
        )
        stream = _Stream(
            source=source,
            preparer=preparer,
            batch_size=batch_size,
            asset_bands=asset_bands,
            filter_masks=bool(enrich_bands) and self.band_codes is None,
            stats=self.stats,
        )
        memory: list[pa.Table] = []
        own_backend = None
        try:
            if enrich_bands:
                backend = self.backend
                if backend is None:
                    own_backend = backend = default_backend(self.max_concurrent, self._cloud())
                stream.enricher = ChunkEnricher(
                    enrich_bands, backend, max_concurrent=self.max_concurrent
                )
                self.enrichment = stream.enricher.report
            for index, months in enumerate(groups):
                window = _month_window(source, self.aliases, plan, months, len(groups))
                only = months if len(groups) > 1 else None
                sink = (
                    PartitionedWriter(workspace, info=info, buffer_bytes=buffer_bytes)
                    if workspace is not None
                    else None
                )
                # Leaving the block commits the pass's months; an error discards them all.
                with sink if sink is not None else nullcontext():
                    async for table in stream.tables(window, only):
                        if sink is None:
                            memory.append(table)
                        else:
                            sink.write(table)
                        self.stats.rows_written += table.num_rows
                    if stream.enricher is not None:
                        _require_some_headers(
                            stream.enricher.report, final=index == len(groups) - 1
                        )
                self.stats.passes += 1
        finally:
            if own_backend is not None:
                await own_backend.close()
        self.stats.build_seconds = time.perf_counter() - started
        self.stats.row_groups_read = source.row_groups_read
        logger.info(
            "record table %s: %d rows written in %.1f s (%.0f rows/s)",
            source.display_path,
            self.stats.rows_written,
            self.stats.build_seconds,
            self.stats.rows_per_second,
        )
        if workspace is not None:
            return Collection.open(workspace)
        return _in_memory_collection(memory, info)

    # -- steps ---------------------------------------------------------------------------

    def _plan(
        self, source: RecordSource, preparer: RecordPreparer, batch_size: int
    ) -> tuple[RecordPlan, list[str], list[str]]:
        """First pass; returns the plan, the asset bands and the bands to enrich."""
        known_bands = preparer.bands_from_schema
        survey_rasters = self.enrich_cog and self.band_codes is None and not preparer.from_hrefs
        read_assets = known_bands is None or survey_rasters
        wanted = [ID, DATETIME, START_DATETIME]
        columns = [self.aliases.source_of(c) for c in wanted]
        columns = [c for c in dict.fromkeys(columns) if c in source.names]
        if read_assets:
            columns += [c for c in preparer.source_columns() if c not in columns]
        seen_bands: dict[str, None] = {}
        raster_bands: dict[str, None] = {}

        def observe(table: pa.Table, ids: pa.Array) -> None:
            raw = preparer.raw_assets(table, ids)
            seen_bands.update(dict.fromkeys(raw))
            if survey_rasters:
                # Malformed assets (an href list) must fail as such, not look like non-rasters.
                normalize_assets(table.column(ASSETS).combine_chunks(), ids, ASSETS)
                masks = preparer.raster_masks(table, ids, list(raw))
                raster_bands.update({b: None for b, m in masks.items() if m.any()})

        def batches() -> Iterator[pa.Table]:
            for batch in source.batches(batch_size, columns=columns):
                yield self.aliases.apply(pa.Table.from_batches([batch]))

        def rescan_ids() -> Iterator[pa.Array]:
            for table in batches():
                yield record_ids(table.column(ID).combine_chunks())

        plan = plan_records(
            batches(), observe=observe if read_assets else None, rescan_ids=rescan_ids
        )
        self.stats.rows_planned = plan.rows
        asset_bands = known_bands if known_bands is not None else list(seen_bands)
        plan.asset_bands = asset_bands
        unknown = sorted(set(self.band_index_map) - set(asset_bands))
        if unknown and not preparer.from_hrefs:
            raise ContractError(
                f"band_index_map names band(s) {unknown} that the assets do not have; "
                f"assets have {asset_bands}",
                column=ASSETS,
            )
        if not self.enrich_cog:
            return plan, asset_bands, []
        if self.band_codes is not None:
            missing = [b for b in self.band_codes if b not in asset_bands]
            if missing:
                raise ContractError(
                    f"band_codes {missing} are not asset keys of the record table; "
                    f"assets have {asset_bands}",
                    column=ASSETS,
                )
            return plan, asset_bands, list(self.band_codes)
        if preparer.from_hrefs:
            return plan, asset_bands, list(asset_bands)
        ordered = [b for b in asset_bands if b in raster_bands]
        plan.raster_bands = ordered
        if not ordered:
            raise ContractError(
                f"enrich_cog=True but no asset looks like a raster (bands {asset_bands}); "
                "name the bands to read with band_codes",
                column=ASSETS,
            )
        return plan, asset_bands, ordered

    def _open(self) -> tuple[RecordSource, RecordPreparer]:
        """The scan and the per-batch preparation, checked against the table's schema."""
        source = RecordSource(
            self.path,
            filesystem=self.filesystem,
            columns=self.columns,
            filter_expr=self.filter_expr,
        )
        preparer = RecordPreparer(
            self.aliases,
            href_column=self.href_column,
            band_index_map=self.band_index_map,
            url_rewrite_patterns=self.url_rewrite_patterns,
        )
        _require_contract_columns(preparer.check(source.schema), preparer)
        return source, preparer

    def _cloud(self) -> CloudConfig | None:
        """How the registered ``data_source`` reads its objects (e.g. Planetary Computer's
        signing); ``None`` for an unregistered one."""
        source = find_source(self.data_source) if self.data_source else None
        return source.cloud if source is not None else None

    def _description(self, source: RecordSource) -> str:
        what = f"records of {source.display_path}"
        return f"{what}, COG headers parsed" if self.enrich_cog else what


@dataclass
class _Stream:
    """One build's batch pipeline: read → alias → prepare → enrich → normalise."""

    source: RecordSource
    preparer: RecordPreparer
    batch_size: int
    asset_bands: Sequence[str]
    filter_masks: bool
    stats: BuildStats
    enricher: ChunkEnricher | None = None

    async def tables(
        self, window: ds.Expression | None, months: Sequence[tuple[int, int]] | None
    ) -> AsyncIterator[pa.Table]:
        """Normalised (and enriched) tables, one per record batch of the given months."""
        wanted = None if months is None else {y * 12 + m for y, m in months}
        aliases = self.preparer.aliases
        for batch in self.source.batches(self.batch_size, extra_filter=window):
            self.stats.batches += 1
            self.stats.max_batch_rows = max(self.stats.max_batch_rows, batch.num_rows)
            table = aliases.apply(pa.Table.from_batches([batch]))
            ids = record_ids(table.column(ID).combine_chunks())
            if wanted is not None:
                table, ids = _rows_in_months(table, ids, wanted)
            if table.num_rows == 0:
                continue
            masks = None
            if self.enricher is not None and self.filter_masks:
                masks = self.preparer.raster_masks(table, ids, self.enricher.bands)
            table = self.preparer.with_assets(table, ids, self.asset_bands)
            if self.enricher is not None:
                table = await self.enricher.enrich(table, masks)
            table = normalize_table(table)
            self.stats.peak_arrow_bytes = max(
                self.stats.peak_arrow_bytes, pa.total_allocated_bytes()
            )
            yield table


def _default_batch_size(enriched_bands: int) -> int:
    """16,384 rows; fewer when enriching many bands, so a batch's metadata stays bounded."""
    if not enriched_bands:
        return DEFAULT_BATCH_SIZE
    return max(256, min(DEFAULT_BATCH_SIZE, ENRICH_ASSETS_PER_BATCH // enriched_bands))


def _require_contract_columns(names: Sequence[str], preparer: RecordPreparer) -> None:
    required = [ID, DATETIME, GEOMETRY] + ([] if preparer.from_hrefs else [ASSETS])
    missing = [n for n in required if n not in names]
    if missing:
        hint = "" if preparer.from_hrefs else " (or give href_column + band_index_map)"
        raise MissingColumnsError(
            f"record table is missing contract column(s) {missing}{hint}; map source columns "
            f"onto them with column_map; columns: {list(names)}",
            column=missing[0],
        )


def _rows_in_months(table: pa.Table, ids: pa.Array, wanted: set[int]) -> tuple[pa.Table, pa.Array]:
    """The rows of ``table`` acquired in one of the ``wanted`` months (``year*12+month``)."""
    columns = {
        n: table.column(n).combine_chunks()
        for n in (DATETIME, START_DATETIME)
        if n in table.column_names
    }
    when = acquisition_times(columns, ids)
    keys = pc.add(pc.multiply(pc.year(when).cast(pa.int64()), 12), pc.month(when).cast(pa.int64()))
    keep = pc.is_in(keys, pa.array(sorted(wanted), pa.int64()))
    return table.filter(keep), ids.filter(keep)


def _month_window(
    source: RecordSource,
    aliases: ColumnAliases,
    plan: RecordPlan,
    months: Sequence[tuple[int, int]],
    passes: int,
) -> ds.Expression | None:
    """A scan predicate on the raw ``datetime`` for this pass's months, when it can prune.

    Only a timestamp column with no nulls maps one-to-one onto months; strings, years or
    rows falling back on ``start_datetime`` are filtered after reading instead.
    """
    if passes == 1 or plan.from_start_datetime:
        return None
    column = aliases.source_of(DATETIME)
    (y0, m0), (y1, m1) = months[0], months[-1]
    start = datetime(y0, m0, 1, tzinfo=UTC)
    end = datetime(y1 + m1 // 12, m1 % 12 + 1, 1, tzinfo=UTC)
    return month_predicate(source.schema.field(column).type, column, start, end)


def _require_some_headers(report: EnrichmentReport, *, final: bool) -> None:
    """Refuse to commit when not one header could be read: the URLs or credentials are wrong."""
    if report.ok == 0 and report.failed:
        errors = report.outcomes.column("error").drop_null()
        example = errors[0].as_py() if len(errors) else "no error recorded"
        raise EnrichmentFailedError(
            f"none of {report.failed} asset headers could be read "
            f"({dict(report.status_counts)}); e.g. {example}. Check url_rewrite_patterns, "
            "backend and credentials.",
            report.outcomes,
        )
    if final and report.ok == 0:
        raise EnrichmentFailedError(
            f"enrich_cog=True but no record has an href for bands {report.bands}",
            report.outcomes,
        )


def _in_memory_collection(tables: list[pa.Table], info: CollectionInfo) -> Collection:
    table = pa.concat_tables(tables)
    partitioning = tuple((c, str(table.schema.field(c).type)) for c in PARTITION_COLUMNS)
    info = replace(info, created=datetime.now(UTC).isoformat(), partitioning=partitioning)
    return Collection.from_table(table, info)


def _default_name(path: str) -> str:
    stem = Path(path.split("?", 1)[0].rstrip("/")).stem
    return stem or "record_table"


def _checked_band_index_map(value: Mapping[str, int] | None) -> dict[str, int]:
    mapping = dict(value or {})
    for band, index in mapping.items():
        if not isinstance(band, str) or not band:
            raise ValueError(f"band_index_map keys must be non-empty band codes, got {band!r}")
        if isinstance(index, bool) or not isinstance(index, int | np.integer) or index < 0:
            raise ValueError(f"band_index_map[{band!r}] must be a sample index >= 0, got {index!r}")
    return {band: int(index) for band, index in mapping.items()}


def _checked_patterns(value: Mapping[str, str] | None) -> dict[str, str]:
    patterns = dict(value or {})
    for prefix, replacement in patterns.items():
        if not isinstance(prefix, str) or not prefix or not isinstance(replacement, str):
            raise ValueError(
                f"url_rewrite_patterns entry {prefix!r}: {replacement!r} must map a non-empty "
                "prefix to a replacement string"
            )
    return patterns


def _checked_band_codes(value: Sequence[str] | None) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        raise TypeError("band_codes must be a list of band codes, not a string")
    codes = list(value)
    if not codes or not all(isinstance(c, str) and c for c in codes):
        raise ValueError(f"band_codes must be non-empty band code strings, got {value!r}")
    if len(set(codes)) != len(codes):
        raise ValueError(f"band_codes repeat: {codes}")
    return codes
