"""GeoParquet 1.1 ``geo`` metadata: written per file, merged per dataset.

The geometry column is WKB in lon/lat; ``crs`` is omitted, which GeoParquet defines as
OGC:CRS84. ``bbox`` is a root-level struct of doubles named ``xmin, ymin, xmax, ymax`` and is
declared as the bbox covering, so readers that know GeoParquet 1.1 (GeoPandas' ``bbox=``,
DuckDB, GDAL) can skip row groups by its statistics.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import shapely

from rasteret_assets.contract import BBOX, GEOMETRY

GEOPARQUET_VERSION = "1.1.0"
GEO_KEY = b"geo"
BBOX_FIELDS = ("xmin", "ymin", "xmax", "ymax")

#: shapely type ids → GeoParquet ``geometry_types`` names (a LinearRing never comes from WKB).
_TYPE_NAMES = {
    0: "Point",
    1: "LineString",
    3: "Polygon",
    4: "MultiPoint",
    5: "MultiLineString",
    6: "MultiPolygon",
    7: "GeometryCollection",
}


def geoparquet_metadata(table: pa.Table) -> dict[str, Any]:
    """``geo`` metadata for ``table``: encoding, geometry types, bbox and bbox covering."""
    stats = GeoStats()
    stats.update(table)
    return stats.metadata()


class GeoStats:
    """``geo`` metadata accumulated over the tables written to one file.

    A file written in several pieces (a streamed partition) only knows its geometry types
    and bbox once the last piece is in, so they are gathered piece by piece and turned into
    metadata at the end; :func:`geoparquet_metadata` is the one-piece case.
    """

    def __init__(self) -> None:
        self.types: set[str] = set()
        self.bbox: list[float] | None = None

    def update(self, table: pa.Table) -> None:
        self.types.update(geometry_types(table))
        if not table.num_rows:
            return
        box = table.column(BBOX)
        lows = [pc.min(pc.struct_field(box, f)).as_py() for f in BBOX_FIELDS[:2]]
        highs = [pc.max(pc.struct_field(box, f)).as_py() for f in BBOX_FIELDS[2:]]
        if None in lows or None in highs:  # no record of this piece has a footprint
            return
        if self.bbox is None:
            self.bbox = lows + highs
        else:
            self.bbox = [
                min(self.bbox[0], lows[0]),
                min(self.bbox[1], lows[1]),
                max(self.bbox[2], highs[0]),
                max(self.bbox[3], highs[1]),
            ]

    def metadata(self) -> dict[str, Any]:
        column: dict[str, Any] = {"encoding": "WKB", "geometry_types": sorted(self.types)}
        if self.bbox is not None:
            column["bbox"] = list(self.bbox)
        column["covering"] = {"bbox": {f: [BBOX, f] for f in BBOX_FIELDS}}
        return {
            "version": GEOPARQUET_VERSION,
            "primary_column": GEOMETRY,
            "columns": {GEOMETRY: column},
        }


def geometry_types(table: pa.Table) -> list[str]:
    """Sorted unique GeoParquet type names (``" Z"`` suffix for 3D) of the WKB column."""
    geoms = shapely.from_wkb(table.column(GEOMETRY).to_numpy())
    pairs = set(
        zip(shapely.get_type_id(geoms).tolist(), shapely.has_z(geoms).tolist(), strict=True)
    )
    return sorted(_TYPE_NAMES[t] + (" Z" if z else "") for t, z in pairs if t in _TYPE_NAMES)


def encode(geo: dict[str, Any]) -> bytes:
    return json.dumps(geo).encode()


def merge_geo(geos: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """Dataset-level ``geo`` from the files': union of bboxes and of geometry types."""
    if not geos:
        return None
    merged: dict[str, Any] = json.loads(json.dumps(geos[0]))
    columns = [g["columns"][GEOMETRY] for g in geos]
    column = merged["columns"][GEOMETRY]
    column["geometry_types"] = sorted({t for c in columns for t in c.get("geometry_types", [])})
    boxes = [c["bbox"] for c in columns if c.get("bbox")]
    if boxes:
        column["bbox"] = [
            min(b[0] for b in boxes),
            min(b[1] for b in boxes),
            max(b[2] for b in boxes),
            max(b[3] for b in boxes),
        ]
    return merged
