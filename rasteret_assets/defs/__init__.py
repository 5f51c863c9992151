"""The Dagster wiring. Importing it filters the known Beta/Preview warnings of the Dagster
features it uses, once, for every process that loads a source (code server, run worker, a
project using the component): see :mod:`rasteret_assets.dagster_warnings`."""

from rasteret_assets.dagster_warnings import filter_known_warnings

filter_known_warnings()
