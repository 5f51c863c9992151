"""One asset group per source: ``records`` → ``cog_headers`` → ``collection``, monthly.

Asset functions are thin: they read the partition window, call the plain functions of
:mod:`rasteret_assets.ingest.steps` (driving the async engine with ``asyncio.run``) and
write Parquet through the workspace resource, returning ``MaterializeResult`` metadata that
explains the run in the UI.
"""

import asyncio
from datetime import datetime

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc

from rasteret_assets.collection import write_collection
from rasteret_assets.contract import DATETIME
from rasteret_assets.defs import checks
from rasteret_assets.defs.config import SourceConfig
from rasteret_assets.defs.resources import (
    ConcurrencyResource,
    StorageResource,
    WorkspaceResource,
)
from rasteret_assets.ingest.normalize.credentials import strip_asset_credentials
from rasteret_assets.ingest.normalize.table import build_collection_from_table, normalize_table
from rasteret_assets.ingest.stac.builder import StacCollectionBuilder
from rasteret_assets.ingest.steps import (
    asset_urls,
    attach_band_metadata,
    refresh_headers,
    scan_stac_month,
)
from rasteret_assets.ingest.tables.month import scan_record_table_month
from rasteret_assets.sources import CloudConfig
from rasteret_assets.storage import StorageRouter

HEADER_POOL = "rasteret_headers"
HEADERS_FILE = "headers.parquet"
RECORDS_FILE = "part-0.parquet"


def monthly_partitions(source: SourceConfig) -> dg.MonthlyPartitionsDefinition:
    """Months from the source's start through the current (still open) month."""
    return dg.MonthlyPartitionsDefinition(start_date=f"{source.start_month}-01", end_offset=1)


def partition_dir(start: datetime) -> tuple[str, str]:
    return f"year={start.year}", f"month={start.month}"


def _table_metadata(table: pa.Table, uri: str | None) -> dict[str, object]:
    metadata: dict[str, object] = {
        "dagster/row_count": table.num_rows,
        "dagster/column_schema": dg.TableSchema(
            columns=[dg.TableColumn(f.name, str(f.type)) for f in table.schema]
        ),
    }
    if uri:
        metadata["path"] = dg.MetadataValue.path(uri)
    return metadata


def _builder(source: SourceConfig) -> StacCollectionBuilder:
    return StacCollectionBuilder(
        data_source=source.data_source or source.name,
        stac_api=source.location,
        stac_collection=source.collection,
        band_map=source.band_map,
        band_index_map=source.band_index_map,
        cloud_config=CloudConfig(url_rewrite_patterns=source.url_rewrite_patterns),
        static_catalog=source.kind == "static_catalog",
    )


def scan_month(
    source: SourceConfig, start: datetime, end: datetime
) -> tuple[pa.Table | None, dict[str, int]]:
    """The raw records of ``[start, end)`` from whichever kind of source this is, and the
    scan's counts (items read, repeats dropped, items without band assets) for STAC kinds."""
    if source.kind == "record_table":
        table = scan_record_table_month(
            source.location,
            start,
            end,
            filesystem=source.location_filesystem(),
            data_source=source.data_source or source.name,
            column_map=source.column_map,
            href_column=source.href_column,
            band_index_map=source.band_index_map,
            url_rewrite_patterns=source.url_rewrite_patterns,
            band_map=None if source.href_column else source.band_map,
        )
        return table, {}
    builder = _builder(source)
    table = asyncio.run(
        scan_stac_month(
            builder, start, end, bbox=source.bbox, query=source.query, filter=source.filter
        )
    )
    return table, builder.item_counts.as_metadata() if builder.item_counts else {}


def build_source_assets(source: SourceConfig) -> list[dg.AssetsDefinition]:
    """The three monthly assets of ``source``."""
    partitions = monthly_partitions(source)
    prefix = [source.name]
    common = {
        "group_name": source.name,
        "partitions_def": partitions,
        "owners": source.owners,
        "tags": {"source_kind": source.kind},
        # One month per run: runs spread over executors/machines, and a failed month
        # retries alone.
        "backfill_policy": dg.BackfillPolicy.multi_run(max_partitions_per_run=1),
    }
    records_key = dg.AssetKey([*prefix, "records"])
    headers_key = dg.AssetKey([*prefix, "cog_headers"])
    collection_key = dg.AssetKey([*prefix, "collection"])

    @dg.asset(
        key=records_key,
        description=(
            f"Raw records of **{source.name}** for one month: the {source.kind.replace('_', ' ')}"
            f" at `{source.location}` scanned for items acquired in the partition's month, "
            "normalised to the Collection contract (id, datetime, geometry, assets, bbox) and "
            "written as GeoParquet."
        ),
        kinds={"stac" if source.kind != "record_table" else "parquet", "parquet"},
        **common,
    )
    def records(
        context: dg.AssetExecutionContext, workspace: WorkspaceResource
    ) -> dg.MaterializeResult:
        window = context.partition_time_window
        table, counts = scan_month(source, window.start, window.end)
        month = partition_dir(window.start)
        if table is None:
            removed = workspace.remove(source.name, "records", *month)
            context.log.info("no records in %s (stale partition removed: %s)", month, removed)
            return dg.MaterializeResult(metadata={"dagster/row_count": 0, **counts})
        normalized, stripped = strip_asset_credentials(normalize_table(table))
        if stripped:
            context.log.warning(
                "%d href(s) carried credentials (userinfo or signing parameters); stored "
                "without them, reads use the storage resource's credentials",
                stripped,
            )
        write_collection(
            normalized,
            workspace.uri(source.name, "records"),
            storage_options=workspace.storage_options or None,
        )
        uri = workspace.uri(source.name, "records", *month, RECORDS_FILE)
        metadata = _table_metadata(normalized, uri) | counts
        metadata["hrefs_credentials_removed"] = stripped
        return dg.MaterializeResult(metadata=metadata)

    @dg.asset(
        key=headers_key,
        deps=[records_key],
        description=(
            f"One row per unique asset URL of **{source.name}**'s month: every IFD level of the "
            "parsed COG header (tile offsets/byte counts, overviews, masks), ETag/size, status "
            "and error class. Incremental: URLs whose header is already known are reused."
        ),
        kinds={"cog", "parquet"},
        pool=HEADER_POOL,
        **common,
    )
    def cog_headers(
        context: dg.AssetExecutionContext,
        workspace: WorkspaceResource,
        storage: StorageResource,
        concurrency: ConcurrencyResource,
    ) -> dg.MaterializeResult:
        month = partition_dir(context.partition_time_window.start)
        recs = workspace.read_table(source.name, "records", *month, RECORDS_FILE)
        if recs is None or recs.num_rows == 0:
            workspace.remove(source.name, "cog_headers", *month)
            return dg.MaterializeResult(metadata={"dagster/row_count": 0, "fetched": 0})
        previous = workspace.read_table(source.name, "cog_headers", *month, HEADERS_FILE)
        options = storage.options(
            concurrency.max_concurrent,
            concurrency.max_per_host,
            {**source.storage_options, "url_rewrite_patterns": source.url_rewrite_patterns},
        )

        async def run() -> tuple[pa.Table, object]:
            backend = StorageRouter(options)
            try:
                return await refresh_headers(
                    asset_urls(recs, source.band_codes),
                    previous,
                    backend,
                    max_concurrent=concurrency.max_concurrent,
                    retry=concurrency.retry(),
                )
            finally:
                await backend.close()

        headers, stats = asyncio.run(run())
        uri = workspace.write_table(headers, source.name, "cog_headers", *month, HEADERS_FILE)
        metadata = _table_metadata(headers, uri)
        metadata |= {
            "fetched": stats.fetched,
            "reused": stats.reused,
            "failed": stats.failed,
            "errors_by_class": dict(stats.errors),
            "requests": stats.requests,
            "bytes_read": stats.bytes_read,
            "elapsed_s": round(stats.elapsed, 3),
            "headers_per_s": round(stats.headers_per_second, 1),
        }
        return dg.MaterializeResult(metadata=metadata)

    @dg.asset(
        key=collection_key,
        deps=[headers_key],
        description=(
            f"The **{source.name}** Collection's month partition (`year=YYYY/month=M`): records "
            "joined with their parsed headers as `{band}_metadata` columns, GeoParquet 1.1, "
            "replaced atomically. Blocking checks keep a broken month from being published."
        ),
        kinds={"geoparquet", "parquet"},
        check_specs=checks.check_specs(collection_key, partitions),
        **common,
    )
    def collection(
        context: dg.AssetExecutionContext, workspace: WorkspaceResource
    ) -> dg.MaterializeResult:
        window = context.partition_time_window
        month = partition_dir(window.start)
        recs = workspace.read_table(source.name, "records", *month, RECORDS_FILE)
        headers = workspace.read_table(source.name, "cog_headers", *month, HEADERS_FILE)
        if recs is None or headers is None or recs.num_rows == 0:
            workspace.remove(source.name, "collection", *month)
            return dg.MaterializeResult(
                metadata={"dagster/row_count": 0},
                check_results=_empty_checks(),
            )
        table = normalize_table(attach_band_metadata(recs, headers, source.band_codes))
        bands = source.band_codes
        results = [
            checks.contract_schema(table, bands),
            checks.unique_ids(table),
            checks.datetime_in_partition(table, window.start, window.end),
            checks.bbox_valid(table),
            checks.header_coverage(table, bands, source.min_header_coverage),
            checks.tile_table_consistency(table, bands),
        ]
        blocked = [
            r.check_name for r in results if not r.passed and r.check_name in checks.BLOCKING
        ]
        metadata = _table_metadata(table, None)
        if blocked:
            context.log.error("not publishing %s: blocking checks failed: %s", month, blocked)
            metadata["published"] = False
            return dg.MaterializeResult(metadata=metadata, check_results=results)
        build_collection_from_table(
            table,
            name=source.name,
            description=f"{source.name}: {source.kind} {source.location}",
            data_source=source.data_source or source.name,
            workspace_dir=workspace.uri(source.name, "collection"),
            storage_options=workspace.storage_options or None,
        )
        metadata["path"] = dg.MetadataValue.path(
            workspace.uri(source.name, "collection", *month, RECORDS_FILE)
        )
        metadata["published"] = True
        metadata["datetime_range"] = _date_span(table)
        return dg.MaterializeResult(metadata=metadata, check_results=results)

    return [records, cog_headers, collection]


def _date_span(table: pa.Table) -> str:
    span = pc.min_max(table.column(DATETIME))
    return f"{span['min'].as_py().isoformat()} .. {span['max'].as_py().isoformat()}"


def _empty_checks() -> list[dg.AssetCheckResult]:
    return [
        dg.AssetCheckResult(check_name=name, passed=True, metadata={"records": 0})
        for name in checks.CHECK_DESCRIPTIONS
    ]
