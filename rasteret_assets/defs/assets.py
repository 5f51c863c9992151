"""One asset group per source: ``records`` → ``cog_headers`` → ``collection``, monthly.

Asset functions are wiring only: they read the partition window, call the per-month steps of
:mod:`rasteret_assets.ingest.steps` (driving the async engine with ``asyncio.run``) on the
workspace resource's store, and return ``MaterializeResult`` metadata that explains the run
in the UI.
"""

import asyncio

import dagster as dg
import pyarrow as pa

from rasteret_assets.collection.partition_file import DATA_FILE
from rasteret_assets.collection.staged import StagedParquet
from rasteret_assets.contract import COG_HEADERS_SCHEMA
from rasteret_assets.defs import checks
from rasteret_assets.defs.resources import (
    ConcurrencyResource,
    StorageResource,
    WorkspaceResource,
)
from rasteret_assets.ingest.month_checks import CHECK_DESCRIPTIONS
from rasteret_assets.ingest.steps import (
    HEADERS_FILE,
    month_dir,
    month_urls,
    publish_month,
    write_header_rows,
    write_records,
)
from rasteret_assets.sources import ResolvedSource
from rasteret_assets.storage import StorageRouter

HEADER_POOL = "rasteret_headers"


def monthly_partitions(source: ResolvedSource) -> dg.MonthlyPartitionsDefinition:
    """Months from the source's start through the current (still open) month."""
    return dg.MonthlyPartitionsDefinition(start_date=f"{source.start_month}-01", end_offset=1)


def _schema_metadata(schema: pa.Schema | None, rows: int, uri: str | None) -> dict[str, object]:
    metadata: dict[str, object] = {"dagster/row_count": rows}
    if schema is not None:
        metadata["dagster/column_schema"] = dg.TableSchema(
            columns=[dg.TableColumn(f.name, str(f.type)) for f in schema]
        )
    if uri:
        metadata["path"] = dg.MetadataValue.path(uri)
    return metadata


def build_source_assets(source: ResolvedSource) -> list[dg.AssetsDefinition]:
    """The three monthly assets of ``source``."""
    partitions = monthly_partitions(source)
    common = {
        "group_name": source.name,
        "partitions_def": partitions,
        "owners": source.owners,
        "tags": {"source_kind": source.kind},
        # One month per run: runs spread over executors/machines, and a failed month
        # retries alone.
        "backfill_policy": dg.BackfillPolicy.multi_run(max_partitions_per_run=1),
    }
    keys = [dg.AssetKey([source.name, step]) for step in ("records", "cog_headers", "collection")]
    return [
        _records_asset(source, keys[0], common),
        _headers_asset(source, keys[1], keys[0], common),
        _collection_asset(source, keys[2], keys[1], partitions, common),
    ]


def _records_asset(source: ResolvedSource, key: dg.AssetKey, common: dict) -> dg.AssetsDefinition:
    @dg.asset(
        key=key,
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
        store = workspace.store(source.name, "records")
        result = asyncio.run(write_records(source, window.start, window.end, store))
        if not result.rows:
            removed = workspace.remove(source.name, "records", month_dir(window.start))
            context.log.info(
                "no records in %s (stale partition removed: %s)", month_dir(window.start), removed
            )
            return dg.MaterializeResult(metadata={"dagster/row_count": 0, **result.counts})
        if result.hrefs_credentials_removed:
            context.log.warning(
                "%d href(s) carried credentials (userinfo or signing parameters); stored "
                "without them, reads use the storage resource's credentials",
                result.hrefs_credentials_removed,
            )
        metadata = _schema_metadata(result.schema, result.rows, result.uri) | result.counts
        metadata["hrefs_credentials_removed"] = result.hrefs_credentials_removed
        return dg.MaterializeResult(metadata=metadata)

    return records


def _headers_asset(
    source: ResolvedSource, key: dg.AssetKey, upstream: dg.AssetKey, common: dict
) -> dg.AssetsDefinition:
    @dg.asset(
        key=key,
        deps=[upstream],
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
        month = month_dir(context.partition_time_window.start)
        records = workspace.open_parquet(source.name, "records", month, DATA_FILE)
        if records is None or records.metadata.num_rows == 0:
            workspace.remove(source.name, "cog_headers", month)
            return dg.MaterializeResult(metadata={"dagster/row_count": 0, "fetched": 0})
        urls = month_urls(records, source.band_codes)
        previous = workspace.open_parquet(source.name, "cog_headers", month, HEADERS_FILE)
        options = storage.options(
            concurrency.max_concurrent, concurrency.connections_per_host(), source.storage_options
        )
        store = workspace.store(source.name, "cog_headers", month)

        async def run() -> tuple[str, object]:
            backend = StorageRouter(options)
            try:
                with StagedParquet(store, HEADERS_FILE, schema=COG_HEADERS_SCHEMA) as sink:
                    stats = await write_header_rows(
                        urls,
                        previous,
                        backend,
                        sink,
                        max_concurrent=concurrency.max_concurrent,
                        retry=concurrency.retry(),
                        workers=concurrency.workers,
                    )
                    return sink.commit(), stats
            finally:
                await backend.close()

        uri, stats = asyncio.run(run())
        metadata = _schema_metadata(COG_HEADERS_SCHEMA, stats.urls, uri)
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

    return cog_headers


def _collection_asset(
    source: ResolvedSource,
    key: dg.AssetKey,
    upstream: dg.AssetKey,
    partitions: dg.PartitionsDefinition,
    common: dict,
) -> dg.AssetsDefinition:
    @dg.asset(
        key=key,
        deps=[upstream],
        description=(
            f"The **{source.name}** Collection's month partition (`year=YYYY/month=M`): records "
            "joined with their parsed headers as `{band}_metadata` columns, GeoParquet 1.1, "
            "replaced atomically. Blocking checks keep a broken month from being published."
        ),
        kinds={"geoparquet", "parquet"},
        check_specs=checks.check_specs(key, partitions),
        **common,
    )
    def collection(
        context: dg.AssetExecutionContext, workspace: WorkspaceResource
    ) -> dg.MaterializeResult:
        window = context.partition_time_window
        month = month_dir(window.start)
        records = workspace.open_parquet(source.name, "records", month, DATA_FILE)
        headers = workspace.open_parquet(source.name, "cog_headers", month, HEADERS_FILE)
        if records is None or headers is None or records.metadata.num_rows == 0:
            workspace.remove(source.name, "collection", month)
            return dg.MaterializeResult(
                metadata={"dagster/row_count": 0}, check_results=_empty_checks()
            )
        result = publish_month(
            source,
            window.start,
            window.end,
            records,
            headers,
            workspace.uri(source.name, "collection"),
            storage_options=workspace.storage_options or None,
        )
        assert result.checks is not None
        results = [checks.check_result(o) for o in result.checks.outcomes]
        metadata = _schema_metadata(result.schema, result.rows, result.uri)
        metadata["published"] = result.published
        metadata["crs_conflicts_left_out"] = result.join.crs_conflicts
        metadata["footprints_from_headers"] = result.footprints.from_headers
        metadata["footprints_missing"] = result.footprints.missing
        if not result.published:
            why = (
                f"blocking checks failed: {result.checks.blocked}"
                if result.checks.blocked
                else "every record was left out (bands in different CRSs)"
            )
            context.log.error("not publishing %s: %s", month, why)
            return dg.MaterializeResult(metadata=metadata, check_results=results)
        metadata["datetime_range"] = result.datetime_range
        return dg.MaterializeResult(metadata=metadata, check_results=results)

    return collection


def _empty_checks() -> list[dg.AssetCheckResult]:
    return [
        dg.AssetCheckResult(check_name=name, passed=True, metadata={"records": 0})
        for name in CHECK_DESCRIPTIONS
    ]
