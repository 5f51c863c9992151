"""The code location: every ``RasterSource`` component under ``rasteret_assets/defs/``.

``RASTERET_ASSETS_SOURCES`` (a YAML file of many sources) is the bridge for deployments
configured before sources were components: when it is set, its sources are the location's
sources instead of the component folders (the built-in demo among them).
"""

import os
from pathlib import Path

import dagster as dg

from rasteret_assets.defs.graph import source_definitions
from rasteret_assets.sources import SOURCES_ENV, load_sources


def build_definitions() -> dg.Definitions:
    if os.environ.get(SOURCES_ENV):
        return dg.Definitions.merge(*(source_definitions(s) for s in load_sources()))
    return dg.load_from_defs_folder(path_within_project=Path(__file__).parent)


defs = build_definitions()
