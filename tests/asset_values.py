"""Assets as tests compare them: where each band lives, without the STAC fields kept beside."""

from __future__ import annotations

from typing import Any


def core(assets: dict[str, Any] | None) -> dict[str, Any] | None:
    """``{band: {href, band_index} | None}`` of one record's normalised ``assets``."""
    if assets is None:
        return None
    return {
        band: None if a is None else {"href": a["href"], "band_index": a["band_index"]}
        for band, a in assets.items()
    }
