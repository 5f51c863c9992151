"""Jobs and schedules: each source's graph as one partitioned job, refreshed daily.

Downstream assets follow their upstream through the job itself (one run materialises
records → cog_headers → collection for a month), which keeps a month's three steps in one
run and one place to look.
"""

import hashlib
import json
from datetime import UTC, datetime

import dagster as dg

from rasteret_assets.defs.assets import STEPS
from rasteret_assets.defs.partitions import monthly_partitions
from rasteret_assets.ingest.base import run_sync
from rasteret_assets.ingest.stac.changes import changed_months
from rasteret_assets.ingest.tables.changes import FileState, table_changes
from rasteret_assets.sources import ResolvedSource as SourceConfig


def job_name(source: SourceConfig) -> str:
    return f"{source.name}_monthly"


def source_job(source: SourceConfig):
    """The partitioned job over the source's asset group; schedules and sensors name it.

    No return annotation: dagster exports no public type for an unresolved asset job.
    """
    return dg.define_asset_job(
        name=job_name(source),
        selection=dg.AssetSelection.assets(*(dg.AssetKey([source.name, s]) for s in STEPS)),
        description=f"Refresh one month of {source.name}: records, COG headers, collection.",
        # Three steps in a line: one process runs them, instead of a process start per step.
        executor_def=dg.in_process_executor,
    )


def refresh_schedule(source: SourceConfig) -> dg.ScheduleDefinition:
    """Daily at 03:00 UTC: the current month and the previous one (late-arriving items)."""

    @dg.schedule(
        name=f"{source.name}_daily_refresh",
        job_name=job_name(source),
        cron_schedule="0 3 * * *",
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description=(
            f"Daily at 03:00 UTC: refresh {source.name}'s current and previous month (items "
            "arrive late). Stopped until you start it."
        ),
    )
    def daily(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest]:
        partitions = monthly_partitions(source)
        keys = partitions.get_partition_keys(current_time=context.scheduled_execution_time)
        return [
            dg.RunRequest(
                run_key=f"{key}@{context.scheduled_execution_time:%Y-%m-%d}", partition_key=key
            )
            for key in keys[-2:]
        ]

    return daily


def new_items_sensor(source: SourceConfig) -> dg.SensorDefinition:
    """Ask the STAC API for items changed since the cursor; run exactly their months.

    The first tick only sets the cursor (history is a backfill's job, not a sensor's). Run
    keys carry the newest change stamp, so a month re-runs when it changes again but a
    repeated tick never launches a duplicate.
    """

    @dg.sensor(
        name=f"{source.name}_new_items",
        job_name=job_name(source),
        minimum_interval_seconds=300,
        default_status=dg.DefaultSensorStatus.STOPPED,
        description=(
            f"Every 5 minutes: ask the STAC API for {source.name}'s new or updated items and "
            "run exactly their months. Stopped until you start it."
        ),
    )
    def new_items(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        now = datetime.now(UTC)
        if not context.cursor:
            return dg.SensorResult(
                cursor=json.dumps({"since": now.isoformat()}),
                skip_reason="cursor initialised; later ticks report changes after it",
            )
        since = datetime.fromisoformat(json.loads(context.cursor)["since"])
        changes = run_sync(
            changed_months(
                source.location,
                since,
                collections=[source.collection] if source.collection else None,
                bbox=source.bbox,
                query=source.query,
                filter=source.filter if isinstance(source.filter, dict) else None,
            )
        )
        partitions = monthly_partitions(source)
        valid = set(partitions.get_partition_keys(current_time=now))
        keys = sorted(k for k in (m.strftime("%Y-%m-%d") for m in changes.months) if k in valid)
        if not changes.exact:
            context.log.warning("API lacks CQL2 filter: only newly acquired items are seen")
        if changes.truncated:
            context.log.warning("more changes than one tick reads; the next tick continues")
        stamp = (changes.newest or since).isoformat()
        return dg.SensorResult(
            run_requests=[dg.RunRequest(partition_key=k, run_key=f"{k}@{stamp}") for k in keys],
            cursor=json.dumps({"since": stamp}),
        )

    return new_items


def table_changes_sensor(source: SourceConfig) -> dg.SensorDefinition:
    """Notice a rewritten record table (ETag, else size + mtime per file); run its months.

    The cursor keeps each file's fingerprint and months, so only changed files are read and
    a file's old months re-run too (rows may have moved out of them). The first tick only
    records the table. Run keys carry a digest of the new fingerprints: a month re-runs when
    the table changes again, never twice for one change.
    """

    @dg.sensor(
        name=f"{source.name}_table_changes",
        job_name=job_name(source),
        minimum_interval_seconds=300,
        default_status=dg.DefaultSensorStatus.STOPPED,
        description=(
            f"Every 5 minutes: when {source.name}'s record table changes, run the months its "
            "changed files touch. Stopped until you start it."
        ),
    )
    def table_changed(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        previous = json.loads(context.cursor)["files"] if context.cursor else {}
        changes = table_changes(
            source.location,
            {name: FileState.from_json(state) for name, state in previous.items()},
            filesystem=source.location_filesystem(),
            column_map=source.column_map,
        )
        state = {name: changes.files[name].to_json() for name in sorted(changes.files)}
        cursor = json.dumps({"files": state}, sort_keys=True)
        if not context.cursor:
            return dg.SensorResult(
                cursor=cursor, skip_reason="cursor initialised; later ticks report changes"
            )
        valid = set(monthly_partitions(source).get_partition_keys(current_time=datetime.now(UTC)))
        keys = sorted(changes.months & valid)
        if changes.changed_files:
            context.log.info("changed files: %s", changes.changed_files)
        digest = hashlib.sha256(cursor.encode()).hexdigest()[:16]
        return dg.SensorResult(
            run_requests=[dg.RunRequest(partition_key=k, run_key=f"{k}@{digest}") for k in keys],
            cursor=cursor,
        )

    return table_changed
