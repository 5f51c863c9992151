"""The code location: one asset group, job and schedule per configured source."""

from __future__ import annotations

import os

import dagster as dg

from rasteret_assets.defs.assets import build_source_assets
from rasteret_assets.defs.automation import (
    new_items_sensor,
    refresh_schedule,
    source_job,
    table_changes_sensor,
)
from rasteret_assets.defs.resources import (
    ConcurrencyResource,
    StorageResource,
    WorkspaceResource,
)
from rasteret_assets.sources import load_sources

LOCAL_ROOTS_ENV = "RASTERET_ASSETS_LOCAL_ROOTS"


def _local_roots() -> list[str]:
    """Directories local asset files may be read from (``os.pathsep``-separated env var)."""
    return [p for p in os.environ.get(LOCAL_ROOTS_ENV, "").split(os.pathsep) if p]


def build_definitions() -> dg.Definitions:
    sources = load_sources()
    assets, jobs, schedules, sensors = [], [], [], []
    for source in sources:
        assets += build_source_assets(source)
        jobs.append(source_job(source))
        schedules.append(refresh_schedule(source))
        if source.kind == "stac_api":
            sensors.append(new_items_sensor(source))
        elif source.kind == "record_table":
            sensors.append(table_changes_sensor(source))
    return dg.Definitions(
        # Each asset's page links to the function that defines it.
        assets=dg.with_source_code_references(assets),
        jobs=jobs,
        schedules=schedules,
        sensors=sensors,
        resources={
            "workspace": WorkspaceResource(
                root=dg.EnvVar("RASTERET_ASSETS_WORKSPACE").get_value("rasteret_workspace")
            ),
            "storage": StorageResource(allowed_local_roots=_local_roots()),
            "concurrency": ConcurrencyResource(),
        },
    )


defs = build_definitions()
