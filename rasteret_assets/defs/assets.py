"""One asset group per source: ``source`` → ``records`` → ``cog_headers`` → ``collection``.

Asset functions are wiring only: they read the partition window, call the per-month steps of
:mod:`rasteret_assets.ingest.steps` (driving the async engine with ``asyncio.run``) on the
workspace resource's store, and report metadata that explains the run in the UI. Every month
reports the same metadata keys, empty or not, so months compare side by side.

A month whose blocking checks fail is not materialized: its check results are reported, then
the step fails, so the partition shows as failed and "materialize failed partitions" retries
it. A month without records skips its checks (Dagster shows them as skipped).
"""

import asyncio
from collections.abc import Iterator

import dagster as dg

from rasteret_assets.collection.partition_file import DATA_FILE
from rasteret_assets.collection.staged import StagedParquet
from rasteret_assets.contract import COG_HEADERS_SCHEMA
from rasteret_assets.defs import checks, schemas
from rasteret_assets.defs.metadata import location_uri, readable_size
from rasteret_assets.defs.partitions import monthly_partitions
from rasteret_assets.defs.resources import (
    ConcurrencyResource,
    StorageResource,
    WorkspaceResource,
)
from rasteret_assets.ingest.lineage import Lineage
from rasteret_assets.ingest.steps import (
    HEADERS_FILE,
    HeaderStats,
    month_dir,
    month_urls,
    publish_month,
    write_header_rows,
    write_records,
)
from rasteret_assets.sources import ResolvedSource
from rasteret_assets.storage import StorageRouter

HEADER_POOL = "rasteret_headers"
STEPS = ("records", "cog_headers", "collection")
_KINDS = {"stac_api": "stac", "static_catalog": "stac", "record_table": "parquet"}


def source_key(source: ResolvedSource) -> dg.AssetKey:
    return dg.AssetKey([source.name, "source"])


def source_spec(source: ResolvedSource) -> dg.AssetSpec:
    """The catalog or table itself, outside Dagster: where the group's lineage starts."""
    what = {
        "stac_api": f"STAC API (collection `{source.collection}`)",
        "static_catalog": "static STAC catalog",
        "record_table": "Parquet record table",
    }[source.kind]
    return dg.AssetSpec(
        key=source_key(source),
        description=f"The {what} that **{source.name}** reads; its location is `dagster/uri`.",
        group_name=source.name,
        kinds={_KINDS[source.kind]},
        owners=source.owners,
        metadata={"dagster/uri": location_uri(source.location)},
    )


def build_source_assets(source: ResolvedSource) -> list[dg.AssetsDefinition]:
    """The three monthly assets of ``source`` (``source_spec`` is their upstream)."""
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
    keys = [dg.AssetKey([source.name, step]) for step in STEPS]
    return [
        _records_asset(source, keys[0], source_key(source), common),
        _headers_asset(source, keys[1], keys[0], partitions, common),
        _collection_asset(source, keys[2], keys[1], partitions, common),
    ]


def _checked_asset(
    key: dg.AssetKey,
    upstream: dg.AssetKey,
    common: dict,
    *,
    description: str,
    kinds: set[str],
    schema: dg.TableSchema,
    check_specs: list[dg.AssetCheckSpec],
    pool: str | None = None,
):
    """A one-asset ``multi_asset`` whose checks may be left out (``can_subset``): a month
    without records reports no check results, so Dagster shows them as skipped, where a plain
    ``@asset`` would require a result for every check. No return annotation: dagster exports
    no public type for the decorator.
    """
    spec = dg.AssetSpec(
        key,
        deps=[upstream],
        description=description,
        kinds=kinds,
        metadata={"dagster/column_schema": schema},
        group_name=common["group_name"],
        owners=common["owners"],
        tags=common["tags"],
    )
    return dg.multi_asset(
        name="__".join(key.path),
        specs=[spec],
        check_specs=check_specs,
        can_subset=True,
        pool=pool,
        partitions_def=common["partitions_def"],
        backfill_policy=common["backfill_policy"],
    )


def _records_asset(
    source: ResolvedSource, key: dg.AssetKey, upstream: dg.AssetKey, common: dict
) -> dg.AssetsDefinition:
    @dg.asset(
        key=key,
        deps=[upstream],
        description=(
            f"Raw records of **{source.name}** for one month: the "
            f"{source.kind.replace('_', ' ')} scanned for items acquired in the partition's "
            "month, normalised to the Collection contract (id, datetime, geometry, assets, "
            "bbox) and written as GeoParquet."
        ),
        kinds={_KINDS[source.kind], "parquet"},
        metadata={"dagster/column_schema": schemas.records_schema()},
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
        if result.hrefs_credentials_removed:
            context.log.warning(
                "%d href(s) carried credentials (userinfo or signing parameters); stored "
                "without them, reads use the storage resource's credentials",
                result.hrefs_credentials_removed,
            )
        metadata: dict[str, object] = {
            "dagster/row_count": result.rows,
            "dagster/uri": location_uri(result.uri),
            "dagster/column_schema": schemas.records_schema(result.schema),
            "hrefs_credentials_removed": result.hrefs_credentials_removed,
            **result.counts,
        }
        return dg.MaterializeResult(metadata=metadata)

    return records


def _headers_asset(
    source: ResolvedSource,
    key: dg.AssetKey,
    upstream: dg.AssetKey,
    partitions: dg.PartitionsDefinition,
    common: dict,
) -> dg.AssetsDefinition:
    @_checked_asset(
        key,
        upstream,
        common,
        description=(
            f"One row per unique asset URL of **{source.name}**'s month: every IFD level of the "
            "parsed COG header (tile offsets/byte counts, overviews, masks), ETag/size, status "
            "and error class. Incremental: URLs whose header is already known are reused."
        ),
        kinds={"cog", "parquet"},
        schema=schemas.headers_schema(),
        check_specs=[checks.failed_urls_spec(key, partitions)],
        pool=HEADER_POOL,
    )
    def cog_headers(
        context: dg.AssetExecutionContext,
        workspace: WorkspaceResource,
        storage: StorageResource,
        concurrency: ConcurrencyResource,
    ) -> Iterator[dg.MaterializeResult]:
        month = month_dir(context.partition_time_window.start)
        records = workspace.open_parquet(source.name, "records", month, DATA_FILE)
        if records is None or records.metadata.num_rows == 0:
            workspace.remove(source.name, "cog_headers", month)
            yield dg.MaterializeResult(metadata=_header_metadata(None, None))
            return
        urls = month_urls(records, source.band_codes)
        previous = workspace.open_parquet(source.name, "cog_headers", month, HEADERS_FILE)
        options = storage.options(
            concurrency.max_concurrent, concurrency.connections_per_host(), source.storage_options
        )
        store = workspace.store(source.name, "cog_headers", month)

        async def run() -> tuple[str, HeaderStats]:
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
        yield dg.MaterializeResult(
            metadata=_header_metadata(uri, stats), check_results=[checks.failed_urls(stats)]
        )

    return cog_headers


def _header_metadata(uri: str | None, stats: HeaderStats | None) -> dict[str, object]:
    """The same keys for every month; ``stats`` is ``None`` for a month without records."""
    stats = stats or HeaderStats()
    return {
        "dagster/row_count": stats.urls,
        "dagster/uri": location_uri(uri),
        "fetched": stats.fetched,
        "reused": stats.reused,
        "failed": stats.failed,
        "errors_by_class": dict(stats.errors),
        "requests": stats.requests,
        "bytes_read": stats.bytes_read,
        "read": readable_size(stats.bytes_read),
        "elapsed_s": round(stats.elapsed, 3),
        "headers_per_s": round(stats.headers_per_second, 1),
    }


def _collection_asset(
    source: ResolvedSource,
    key: dg.AssetKey,
    upstream: dg.AssetKey,
    partitions: dg.PartitionsDefinition,
    common: dict,
) -> dg.AssetsDefinition:
    @_checked_asset(
        key,
        upstream,
        common,
        description=(
            f"The **{source.name}** Collection's month partition (`year=YYYY/month=M`): records "
            "joined with their parsed headers as `{band}_metadata` columns, plus each row's "
            "lineage (run id, ingestion time, parser version), GeoParquet 1.1, replaced "
            "atomically. A month whose blocking checks fail is not published and its run fails."
        ),
        kinds={"geoparquet", "parquet"},
        schema=schemas.collection_schema(source.band_codes),
        check_specs=checks.check_specs(key, partitions),
    )
    def collection(
        context: dg.AssetExecutionContext, workspace: WorkspaceResource
    ) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        window = context.partition_time_window
        month = month_dir(window.start)
        records = workspace.open_parquet(source.name, "records", month, DATA_FILE)
        headers = workspace.open_parquet(source.name, "cog_headers", month, HEADERS_FILE)
        metadata: dict[str, object] = {
            "dagster/row_count": 0,
            "dagster/uri": location_uri(None),
            "dagster/column_schema": schemas.collection_schema(source.band_codes),
            "dagster_run": dg.MetadataValue.dagster_run(context.run.run_id),
            "published": False,
            "datetime_range": None,
            "crs_conflicts_left_out": 0,
            "footprints_from_headers": 0,
            "footprints_missing": 0,
        }
        if records is None or headers is None or records.metadata.num_rows == 0:
            workspace.remove(source.name, "collection", month)
            context.log.info("no records in %s: nothing to publish, checks skipped", month)
            yield dg.MaterializeResult(metadata=metadata)
            return
        result = publish_month(
            source,
            window.start,
            window.end,
            records,
            headers,
            workspace.uri(source.name, "collection"),
            storage_options=workspace.storage_options or None,
            lineage=Lineage.now(context.run.run_id),
        )
        assert result.checks is not None
        results = [checks.check_result(o) for o in result.checks.outcomes]
        if result.checks.blocked:
            yield from results
            raise dg.Failure(
                description=(
                    f"{month} not published: blocking checks failed: "
                    f"{', '.join(result.checks.blocked)}; the previous version stays"
                ),
                metadata={"blocked_by": result.checks.blocked, "records": result.rows},
            )
        metadata |= {
            "crs_conflicts_left_out": result.join.crs_conflicts,
            "footprints_from_headers": result.footprints.from_headers,
            "footprints_missing": result.footprints.missing,
        }
        if not result.published:
            context.log.error(
                "not publishing %s: every record was left out (bands in different CRSs)", month
            )
            yield dg.MaterializeResult(metadata=metadata, check_results=results)
            return
        metadata |= {
            "dagster/row_count": result.rows,
            "dagster/uri": location_uri(result.uri),
            "dagster/column_schema": schemas.collection_schema(source.band_codes, result.schema),
            "published": True,
            "datetime_range": result.datetime_range,
        }
        yield dg.MaterializeResult(metadata=metadata, check_results=results)

    return collection
