"""Footprints: any accepted encoding → ISO WKB, plus the bbox a range query can trust.

Antimeridian rule
-----------------
A footprint that crosses ±180° gets the bbox ``xmin = -180, xmax = 180`` (true latitudes).
GeoParquet 1.1 says its bbox covering "does not apply to geometries that cross the
antimeridian", and the RFC 7946 alternative (``xmin > xmax``) is missed by the plain
``xmin <= qxmax AND xmax >= qxmin`` predicate that DuckDB users, GeoPandas' ``bbox=`` reader
and Parquet row-group statistics all apply. The full longitude span is always found by that
predicate, keeps ``xmin <= xmax`` everywhere, and only over-selects a thin latitude band.

A footprint crosses when consecutive vertices of one ring or line jump by more than 180° of
longitude (the short way round is over the antimeridian), or when it uses longitudes
outside [-180, 180] (the "unwrapped" style, e.g. 179 → 181). A footprint already split
into a MultiPolygon at ±180 needs nothing special: its planar bounds span -180..180 anyway.
The geometry itself is stored as given; only the bbox follows this rule.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import shapely
from pyproj import CRS

from rasteret_assets.contract import BBOX_TYPE, SCENE_BBOX_TYPE, ContractError, describe_ids
from rasteret_assets.ingest.normalize.bad_values import example
from rasteret_assets.ingest.normalize.reproject import to_lon_lat

_LINEAR_TYPES = (1, 2)  # LineString, LinearRing
#: Text geometries are GeoJSON; WKT or hex WKB in a string column is a common mistake.
_STRING_HINT = "; text is read as GeoJSON, so store WKT or hex WKB as WKB (binary) instead"
_POLYGON_TYPE = 3


def geometries_from_column(
    values: pa.Array, ids: pa.Array, column: str, crs: CRS | None = None
) -> np.ndarray:
    """Shapely geometries from WKB, GeoJSON strings or GeoJSON-like structs (one per row).

    A null stays ``None``: a record without a footprint is valid (as in the reference), and
    its headers may supply one later (:mod:`.footprints`). Geometries in a declared ``crs``
    are transformed to lon/lat. Undecodable values, empty geometries and coordinates outside
    lon/lat ranges raise :class:`ContractError` naming the records: a wrong footprint would
    mislead every spatial query, so it must not pass silently.
    """
    kind = values.type
    if isinstance(kind, pa.ExtensionType):
        return geometries_from_column(values.storage, ids, column, crs)
    if pa.types.is_dictionary(kind):
        return geometries_from_column(values.dictionary_decode(), ids, column, crs)
    raw = _raw_values(values, ids, column)
    null = values.is_null().to_numpy(zero_copy_only=False)
    hint = ""
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind) or pa.types.is_binary_view(kind):
        geoms = shapely.from_wkb(raw, on_invalid="ignore")
        cause = "invalid WKB"
    else:
        geoms = shapely.from_geojson(raw, on_invalid="ignore")
        cause = "invalid GeoJSON"
        if not (pa.types.is_struct(kind) or pa.types.is_map(kind)):
            hint = _STRING_HINT
    _reject(ids, shapely.is_missing(geoms) & ~null, column, cause, hint)
    _reject(ids, shapely.is_empty(geoms), column, "empty geometry")
    if crs is not None:
        geoms = to_lon_lat(geoms, crs)
    bounds = shapely.bounds(geoms)
    with np.errstate(invalid="ignore"):
        outside = (
            (bounds[:, 1] < -90)
            | (bounds[:, 3] > 90)
            | (bounds[:, 0] < -360)
            | (bounds[:, 2] > 360)
        )
    _reject(ids, outside, column, "coordinates outside lon/lat ranges (projected geometry?)")
    return geoms


def _raw_values(values: pa.Array, ids: pa.Array, column: str) -> np.ndarray:
    """A numpy object array shapely can decode in one vectorised call."""
    kind = values.type
    if pa.types.is_binary_view(kind) or pa.types.is_large_binary(kind):
        values = values.cast(pa.binary())
    elif pa.types.is_string_view(kind) or pa.types.is_large_string(kind):
        values = values.cast(pa.string())
    kind = values.type
    if pa.types.is_binary(kind) or pa.types.is_string(kind):
        return values.to_numpy(zero_copy_only=False)
    if pa.types.is_struct(kind) or pa.types.is_map(kind):
        # GeoJSON objects arrive as structs when a table is built from Python dicts. Arrow has
        # no struct → JSON kernel, so serialise row by row; shapely then decodes in one call.
        return np.array(
            [None if v is None else json.dumps(v) for v in values.to_pylist()], dtype=object
        )
    raise ContractError(
        f"column {column!r}: cannot read {kind} as a geometry{example(values, ids)}; expected "
        "WKB (binary), GeoJSON strings or GeoJSON objects",
        column=column,
    )


def _reject(ids: pa.Array, bad: np.ndarray, column: str, cause: str, hint: str = "") -> None:
    if bad.any():
        names = [str(i) for i in np.asarray(ids.to_pylist(), dtype=object)[bad][:5]]
        raise ContractError(
            f"column {column!r}: {cause} in {describe_ids(names, int(bad.sum()))}{hint}",
            column=column,
            ids=names,
        )


def to_wkb(geoms: np.ndarray) -> pa.Array:
    """ISO WKB (little-endian, no SRID) as GeoParquet requires, whatever the input flavour."""
    return pa.array(shapely.to_wkb(geoms, flavor="iso", byte_order=1), type=pa.binary())


def crosses_antimeridian(geoms: np.ndarray) -> np.ndarray:
    """Per geometry: does a ring or line jump more than 180° of longitude between vertices?"""
    parts, part_owner = shapely.get_parts(geoms, return_index=True)
    part_types = shapely.get_type_id(parts)
    polygons = part_types == _POLYGON_TYPE
    rings, ring_part = shapely.get_rings(parts[polygons], return_index=True)
    lines = np.isin(part_types, _LINEAR_TYPES)
    paths = np.concatenate([rings, parts[lines]])
    path_owner = np.concatenate([part_owner[polygons][ring_part], part_owner[lines]])
    coords, coord_path = shapely.get_coordinates(paths, return_index=True)
    same_path = coord_path[1:] == coord_path[:-1]
    jumps = same_path & (np.abs(np.diff(coords[:, 0])) > 180)
    crossing = np.zeros(len(geoms), dtype=bool)
    crossing[path_owner[coord_path[1:][jumps]]] = True
    return crossing


def footprint_bounds(geoms: np.ndarray) -> np.ndarray:
    """``(n, 4)`` ``[xmin, ymin, xmax, ymax]`` with the antimeridian rule of this module."""
    bounds = shapely.bounds(geoms)
    wraps = crosses_antimeridian(geoms) | (bounds[:, 0] < -180) | (bounds[:, 2] > 180)
    bounds[wraps, 0] = -180.0
    bounds[wraps, 2] = 180.0
    return bounds


def bbox_array(bounds: np.ndarray) -> pa.StructArray:
    """The ``bbox`` covering column (GeoParquet 1.1 struct of xmin, ymin, xmax, ymax); null
    where a record has no footprint (its bounds are NaN)."""
    missing = pa.array(np.isnan(bounds).any(axis=1))
    return pa.StructArray.from_arrays(
        [pa.array(bounds[:, i], pa.float64()) for i in range(4)],
        fields=list(BBOX_TYPE),
        mask=missing,
    )


def scene_bbox_array(bounds: np.ndarray) -> pa.FixedSizeListArray:
    """``scene_bbox``: the same box as a 4-element list, the layout rasteret readers expect."""
    flat = pa.array(np.ascontiguousarray(bounds, dtype=np.float64).ravel(), pa.float64())
    missing = pa.array(np.isnan(bounds).any(axis=1))
    return pa.FixedSizeListArray.from_arrays(flat, type=SCENE_BBOX_TYPE, mask=missing)
