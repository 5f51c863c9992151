"""Turn stored ``cog_headers`` rows back into parsed headers.

The Dagster graph keeps headers as a table of their own (one row per URL, every IFD level),
so a month's collection can be rebuilt — or a URL's header reused by the next run — without
touching the asset again. This module is the inverse of :func:`outcomes.outcomes_table`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rasteret_assets.contract import BandHeader
from rasteret_assets.tiff.model import GeoInfo, Ifd, TiffHeader


def _ifd(level: dict[str, Any]) -> Ifd:
    samples = level["samples_per_pixel"]
    return Ifd(
        index=level["index"],
        offset=0,
        new_subfile_type=level["new_subfile_type"],
        image_width=level["image_width"],
        image_height=level["image_height"],
        tile_width=level["tile_width"],
        tile_height=level["tile_height"],
        samples_per_pixel=samples,
        bits_per_sample=(level["bits_per_sample"],) * samples,
        sample_format=(level["sample_format"],) * samples,
        dtype=level["dtype"],
        compression=level["compression"],
        predictor=level["predictor"],
        photometric=level["photometric"],
        planar_configuration=level["planar_configuration"],
        extra_samples=tuple(level["extra_samples"] or ()),
        tile_offsets=np.asarray(level["tile_offsets"], dtype=np.uint64),
        tile_byte_counts=np.asarray(level["tile_byte_counts"], dtype=np.uint64),
        jpeg_tables=level["jpeg_tables"],
    )


def _optional_tuple(values: list[float] | None) -> tuple[float, ...] | None:
    return None if values is None else tuple(values)


def header_from_row(row: dict[str, Any]) -> TiffHeader:
    """The :class:`TiffHeader` one successful ``cog_headers`` row describes."""
    epsg = row["epsg"]
    geo = GeoInfo(
        transform=_optional_tuple(row["transform"]),  # type: ignore[arg-type]
        pixel_scale=_optional_tuple(row["pixel_scale"]),
        tiepoint=_optional_tuple(row["tiepoint"]),
        epsg=epsg,
        crs_description=None if epsg is not None else row["crs"],
        nodata=row["nodata"],
    )
    return TiffHeader(
        byte_order="<",
        bigtiff=False,
        ifds=tuple(_ifd(level) for level in row["ifds"]),
        geo=geo,
    )


def headers_by_url(headers: pa.Table) -> dict[str, BandHeader]:
    """Successful rows keyed by URL, as band-0 :class:`BandHeader` templates with source info."""
    ok = headers.filter(pc.equal(headers.column("status"), "ok"))
    return {
        row["url"]: BandHeader(header_from_row(row), 0, row["etag"], row["size"])
        for row in ok.to_pylist()
    }
