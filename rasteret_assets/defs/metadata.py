"""Metadata values people read: locations as URIs, sizes in units."""

from pathlib import Path

import dagster as dg


def location_uri(location: str | None) -> dg.MetadataValue:
    """An absolute URI (``file:///...`` for a local path); null when nothing was written."""
    if not location:
        return dg.MetadataValue.null()
    if "://" in location:
        return dg.MetadataValue.text(location)
    return dg.MetadataValue.text(Path(location).absolute().as_uri())


def readable_size(size: int) -> str:
    """``1536`` → ``1.5 KiB``."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")
