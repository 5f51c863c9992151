"""Jobs and schedules: each source's graph as one partitioned job, refreshed daily.

Downstream assets follow their upstream through the job itself (one run materialises
records → cog_headers → collection for a month), which keeps a month's three steps in one
run and one place to look.
"""

import dagster as dg
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from rasteret_assets.defs.assets import monthly_partitions
from rasteret_assets.defs.config import SourceConfig


def source_job(source: SourceConfig) -> UnresolvedAssetJobDefinition:
    return dg.define_asset_job(
        name=f"{source.name}_monthly",
        selection=dg.AssetSelection.groups(source.name),
        description=f"Refresh one month of {source.name}: records, COG headers, collection.",
    )


def refresh_schedule(
    source: SourceConfig, job: UnresolvedAssetJobDefinition
) -> dg.ScheduleDefinition:
    """Daily at 03:00 UTC: the current month and the previous one (late-arriving items)."""

    @dg.schedule(
        name=f"{source.name}_daily_refresh",
        job=job,
        cron_schedule="0 3 * * *",
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.STOPPED,
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
