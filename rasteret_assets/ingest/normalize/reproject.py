"""Footprints declared in another CRS, brought to lon/lat (OGC:CRS84) as the contract stores.

Two places say a geometry column's CRS: GeoArrow's field-level extension metadata (what
GeoPandas' ``to_arrow`` writes) and GeoParquet's ``geo`` schema metadata (what a GeoParquet
file read with pyarrow carries). Neither present means lon/lat, as both specs define.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pyarrow as pa
import shapely
from pyproj import CRS, Transformer
from pyproj.exceptions import CRSError

from rasteret_assets.contract import ContractError

_EXTENSION_NAME = b"ARROW:extension:name"
_EXTENSION_METADATA = b"ARROW:extension:metadata"
_LON_LAT = CRS.from_user_input("OGC:CRS84")


def declared_crs(schema: pa.Schema, column: str) -> CRS | None:
    """The CRS ``column``'s metadata declares, or ``None`` when it is lon/lat (or unsaid)."""
    field = schema.field(column)
    value = _geoarrow_crs(field)
    if value is None:
        value = _geoparquet_crs(schema, column)
    if value is None:
        return None
    try:
        crs = CRS.from_user_input(value)
    except CRSError as exc:
        raise ContractError(
            f"column {column!r}: cannot read its declared CRS {str(value)[:80]!r}: {exc}",
            column=column,
        ) from exc
    return None if crs.equals(_LON_LAT, ignore_axis_order=True) else crs


def to_lon_lat(geoms: np.ndarray, crs: CRS) -> np.ndarray:
    """``geoms`` (nulls allowed) transformed from ``crs`` to lon/lat, coordinates x-first."""
    transformer = Transformer.from_crs(crs, _LON_LAT, always_xy=True)

    def move(coords: np.ndarray) -> np.ndarray:
        x, y = transformer.transform(coords[:, 0], coords[:, 1])
        return np.column_stack([x, y])

    return shapely.transform(geoms, move)


def _geoarrow_crs(field: pa.Field) -> Any:
    kind = field.type
    if isinstance(kind, pa.ExtensionType) and kind.extension_name.startswith("geoarrow."):
        return _crs_of(kind.__arrow_ext_serialize__(), field.name, "GeoArrow extension metadata")
    metadata = field.metadata or {}
    if metadata.get(_EXTENSION_NAME, b"").startswith(b"geoarrow."):
        serialized = metadata.get(_EXTENSION_METADATA, b"")
        return _crs_of(serialized, field.name, "GeoArrow extension metadata")
    return None


def _geoparquet_crs(schema: pa.Schema, column: str) -> Any:
    raw = (schema.metadata or {}).get(b"geo")
    if not raw:
        return None
    geo = _json_object(raw, column, "GeoParquet 'geo' metadata")
    columns = geo.get("columns", {})
    if not isinstance(columns, dict):
        raise _unreadable(column, "GeoParquet 'geo' metadata", "'columns' is not an object")
    entry = columns.get(column, {})
    if not isinstance(entry, dict):
        raise _unreadable(column, "GeoParquet 'geo' metadata", f"columns.{column} is not an object")
    return entry.get("crs")


def _crs_of(serialized: bytes, column: str, where: str) -> Any:
    """The ``crs`` of GeoArrow extension metadata (empty metadata says nothing)."""
    if not serialized:
        return None
    return _json_object(serialized, column, where).get("crs")


def _json_object(raw: bytes, column: str, where: str) -> dict[str, Any]:
    """Metadata that must be a JSON object: unreadable metadata leaves the CRS unknown, and
    guessing lon/lat would put every footprint in the wrong place."""
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise _unreadable(column, where, f"not JSON ({exc})") from exc
    if not isinstance(value, dict):
        raise _unreadable(column, where, f"a JSON {type(value).__name__}, not an object")
    return value


def _unreadable(column: str, where: str, why: str) -> ContractError:
    return ContractError(
        f"column {column!r}: cannot tell its CRS, its {where} is {why}", column=column
    )
