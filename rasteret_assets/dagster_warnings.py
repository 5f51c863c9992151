"""Known Beta/Preview warnings of Dagster features this project chose, silenced once at load.

Each is a feature the project uses on purpose (components and their ``defs.yaml`` loading,
asset pools, partitioned asset checks, backfill policies); Dagster warns about it on every
definition, which buried real warnings under ~200 lines per load of ``dagster dev``. Only
these categories are filtered, and only Dagster's own messages: anything else still shows.
"""

import warnings

import dagster as dg


def filter_known_warnings() -> None:
    for category in (dg.BetaWarning, dg.PreviewWarning):
        warnings.filterwarnings("ignore", category=category, module=r"dagster(\.|$)")
        warnings.filterwarnings("ignore", category=category, module=r"rasteret_assets(\.|$)")
