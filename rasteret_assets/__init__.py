"""rasteret-assets: raster imagery catalogs turned into query-ready GeoParquet collections.

``rasteret_assets.RasterSource`` is the Dagster component type (``dg list components``); it
is imported on first use, so the library itself can be used without importing Dagster.
"""

from typing import Any

__all__ = ["RasterSource"]


def __getattr__(name: str) -> Any:
    if name == "RasterSource":
        from rasteret_assets.component import RasterSource

        return RasterSource
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
