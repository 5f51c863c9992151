"""Dagster entry point: the code location is built inside the package; this file only exposes it."""

from rasteret_assets.definitions import defs

__all__ = ["defs"]
