"""Footprints from parsed headers, for records that came without one.

A record table may hold records with no ``geometry`` (the reference accepts them, leaving
their bbox null). Where such a record's headers were parsed, its footprint is known: the
image's pixel rectangle through the band's geotransform, in the header's CRS, reprojected
to lon/lat with pyproj. Edges are densified first, so a footprint in a projected CRS keeps
its curved outline in lon/lat instead of a chord between corners. Records with neither a
footprint nor a usable header keep a null geometry and bbox, and are counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import shapely
from pyproj import CRS
from pyproj.exceptions import CRSError

from rasteret_assets.contract import BBOX, GEOMETRY, SCENE_BBOX, metadata_column
from rasteret_assets.ingest.normalize.columns import with_column
from rasteret_assets.ingest.normalize.geometry import (
    bbox_array,
    footprint_bounds,
    scene_bbox_array,
    to_wkb,
)
from rasteret_assets.ingest.normalize.reproject import to_lon_lat

#: Points per edge of the pixel rectangle before reprojection.
EDGE_POINTS = 16


@dataclass
class FootprintCounts:
    """Records given a footprint from their headers, and records left without one."""

    from_headers: int = 0
    missing: int = 0

    def add(self, other: FootprintCounts) -> None:
        self.from_headers += other.from_headers
        self.missing += other.missing


def fill_footprints(table: pa.Table, bands: Sequence[str]) -> tuple[pa.Table, FootprintCounts]:
    """``table`` (contract columns normalised) with null footprints filled from the first band
    whose metadata has a geotransform and a CRS; ``bbox``/``scene_bbox`` follow."""
    counts = FootprintCounts()
    missing = table.column(GEOMETRY).is_null().to_numpy(zero_copy_only=False)
    if not missing.any():
        return table, counts
    rows = np.flatnonzero(missing)
    derived = np.full(len(rows), None, dtype=object)
    for band in bands:
        name = metadata_column(band)
        if name not in table.column_names:
            continue
        todo = np.flatnonzero(shapely.is_missing(derived))
        if not len(todo):
            break
        metadata = table.column(name).take(pa.array(rows[todo])).combine_chunks()
        derived[todo] = _from_metadata(metadata)
    found = ~shapely.is_missing(derived)
    counts.from_headers = int(found.sum())
    counts.missing = len(rows) - counts.from_headers
    if not counts.from_headers:
        return table, counts
    geoms = shapely.from_wkb(table.column(GEOMETRY).combine_chunks().to_numpy(zero_copy_only=False))
    geoms[rows[found]] = derived[found]
    bounds = footprint_bounds(geoms)
    table = with_column(table, GEOMETRY, to_wkb(geoms))
    table = with_column(table, BBOX, bbox_array(bounds))
    return with_column(table, SCENE_BBOX, scene_bbox_array(bounds)), counts


def _from_metadata(metadata: pa.StructArray) -> np.ndarray:
    """Lon/lat footprints of the metadata rows (``None`` where one cannot be made)."""
    out = np.full(len(metadata), None, dtype=object)
    crs_values = pc.struct_field(metadata, "crs").to_pylist()
    transforms = pc.struct_field(metadata, "transform").to_pylist()
    widths = pc.struct_field(metadata, "image_width").to_pylist()
    heights = pc.struct_field(metadata, "image_height").to_pylist()
    by_crs: dict[str, list[int]] = {}
    for i, (crs, transform, width, height) in enumerate(
        zip(crs_values, transforms, widths, heights, strict=True)
    ):
        if crs and transform and len(transform) == 4 and width and height:
            by_crs.setdefault(crs, []).append(i)
    for crs_text, positions in by_crs.items():
        try:
            crs = CRS.from_user_input(crs_text)
        except CRSError:
            continue
        rectangles = np.array(
            [_pixel_rectangle(transforms[i], widths[i], heights[i]) for i in positions],
            dtype=object,
        )
        moved = to_lon_lat(rectangles, crs)
        usable = shapely.is_valid(moved) & np.isfinite(shapely.bounds(moved)).all(axis=1)
        out[np.array(positions)[usable]] = moved[usable]
    return out


def _pixel_rectangle(transform: list[float], width: int, height: int) -> shapely.Polygon:
    """The image's outline in its own CRS; ``transform`` is rasteret's
    ``[scale_x, translate_x, scale_y, translate_y]``."""
    scale_x, x0, scale_y, y0 = transform
    steps = np.linspace(0.0, 1.0, EDGE_POINTS, endpoint=False)
    cols = np.concatenate(
        [steps * width, np.full(EDGE_POINTS, width), (1 - steps) * width, np.zeros(EDGE_POINTS)]
    )
    rows = np.concatenate(
        [np.zeros(EDGE_POINTS), steps * height, np.full(EDGE_POINTS, height), (1 - steps) * height]
    )
    ring = np.column_stack([x0 + cols * scale_x, y0 + rows * scale_y])
    return shapely.Polygon(ring)
