"""Everything Dagster shows for one source: its assets, job, schedule and sensor.

The one place a resolved source becomes definitions, whether it came from a component's
``defs.yaml`` or from the ``RASTERET_ASSETS_SOURCES`` file.
"""

import dagster as dg

from rasteret_assets.defs.assets import build_source_assets, source_spec
from rasteret_assets.defs.automation import (
    new_items_sensor,
    refresh_schedule,
    source_job,
    table_changes_sensor,
)
from rasteret_assets.defs.resources import default_resources
from rasteret_assets.sources import ResolvedSource


def source_definitions(source: ResolvedSource) -> dg.Definitions:
    """The source's graph, bound to the environment's shared resources."""
    sensors = []
    if source.kind == "stac_api":
        sensors.append(new_items_sensor(source))
    elif source.kind == "record_table":
        sensors.append(table_changes_sensor(source))
    return dg.Definitions(
        # Each asset's page links to the function that defines it.
        assets=[source_spec(source), *dg.with_source_code_references(build_source_assets(source))],
        jobs=[source_job(source)],
        schedules=[refresh_schedule(source)],
        sensors=sensors,
        resources=default_resources(),
    )
