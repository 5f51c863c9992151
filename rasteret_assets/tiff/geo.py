"""GeoTIFF georeferencing: GeoKeys to CRS, model tags to rasteret's 4-value transform, nodata.

The rules follow the GeoTIFF 1.1 spec and GDAL's reading of it (RFC 33 for PixelIsPoint), so
that results agree with what rasterio reports for the same file.
"""

from __future__ import annotations

import functools
import math
import re

import numpy as np

from rasteret_assets.tiff.errors import CorruptTiffError, UnsupportedTiffError
from rasteret_assets.tiff.model import GeoInfo
from rasteret_assets.tiff.tags import Tag

GT_MODEL_TYPE = 1024
GT_RASTER_TYPE = 1025
GT_CITATION = 1026
GEOGRAPHIC_TYPE = 2048
GEOG_CITATION = 2049
PROJECTED_CS_TYPE = 3072
PCS_CITATION = 3073

MODEL_TYPE_PROJECTED = 1
RASTER_PIXEL_IS_POINT = 2
USER_DEFINED = 32767
CITATION_KEYS = (PCS_CITATION, GT_CITATION, GEOG_CITATION)

GeoKeyValue = int | float | str | tuple[float, ...]


def parse_geo_keys(
    directory: np.ndarray, doubles: np.ndarray | None, ascii_params: str | None
) -> dict[int, GeoKeyValue]:
    """Resolve the GeoKeyDirectory into ``{key id: value}`` with values looked up in place."""
    if len(directory) < 4:
        raise CorruptTiffError("GeoKeyDirectory is shorter than its 4-value header")
    declared = int(directory[3])
    if len(directory) < 4 + 4 * declared:
        raise CorruptTiffError(
            f"GeoKeyDirectory declares {declared} keys but holds {(len(directory) - 4) // 4}"
        )
    shorts = directory.tolist()
    double_list = None if doubles is None else doubles.tolist()
    keys: dict[int, GeoKeyValue] = {}
    for entry in range(declared):
        key_id, location, count, value = shorts[4 + 4 * entry : 8 + 4 * entry]
        if location == 0:
            keys[key_id] = value
        elif location == Tag.GEO_DOUBLE_PARAMS:
            if double_list is None or value + count > len(double_list):
                raise CorruptTiffError(f"GeoKey {key_id} points past GeoDoubleParams")
            numbers = tuple(double_list[value : value + count])
            keys[key_id] = numbers[0] if count == 1 else numbers
        elif location == Tag.GEO_ASCII_PARAMS:
            if ascii_params is None or value + count > len(ascii_params) + 1:
                raise CorruptTiffError(f"GeoKey {key_id} points past GeoAsciiParams")
            keys[key_id] = ascii_params[value : value + count].rstrip("|\x00").strip()
        elif location == Tag.GEO_KEY_DIRECTORY:
            if value + count > len(directory):
                raise CorruptTiffError(f"GeoKey {key_id} points past the GeoKeyDirectory")
            keys[key_id] = tuple(float(v) for v in shorts[value : value + count])
    return keys


def _epsg_code(value: GeoKeyValue | None) -> int | None:
    if isinstance(value, int) and 0 < value < USER_DEFINED:
        return value
    return None


def crs_from_keys(keys: dict[int, GeoKeyValue]) -> tuple[int | None, str | None]:
    """(EPSG code, description). A projected code wins over a geographic one; a user-defined
    projected CRS (32767) never falls back to its geographic base, which would be wrong."""
    projected = keys.get(PROJECTED_CS_TYPE)
    epsg = _epsg_code(projected)
    is_projected = projected is not None or keys.get(GT_MODEL_TYPE) == MODEL_TYPE_PROJECTED
    if epsg is None and not is_projected:
        epsg = _epsg_code(keys.get(GEOGRAPHIC_TYPE))
    if epsg is not None or not keys:
        return epsg, None
    citations = [keys[k] for k in CITATION_KEYS if isinstance(keys.get(k), str) and keys[k]]
    if citations:
        return None, " | ".join(dict.fromkeys(citations))
    rendered = ";".join(f"{k}={v}" for k, v in sorted(keys.items()))
    return None, f"user-defined GeoKeys: {rendered}"


def transform_from_tags(
    pixel_scale: tuple[float, ...] | None,
    tiepoint: tuple[float, ...] | None,
    model_transformation: tuple[float, ...] | None,
    raster_type: int,
) -> tuple[float, float, float, float] | None:
    """rasteret's ``[scale_x, translate_x, scale_y, translate_y]`` in the area convention.

    Several tiepoints without a pixel scale are ground control points: no affine transform.
    """
    if model_transformation is not None:
        if len(model_transformation) < 16:
            raise CorruptTiffError(
                f"ModelTransformation holds {len(model_transformation)} values, expected 16"
            )
        m = model_transformation
        if m[1] != 0.0 or m[4] != 0.0:
            raise UnsupportedTiffError(
                "ModelTransformation is rotated or sheared "
                f"(row/column terms {m[1]!r}, {m[4]!r}); only axis-aligned rasters are supported"
            )
        transform = (m[0], m[3], m[5], m[7])
    elif pixel_scale is not None and tiepoint is not None and len(tiepoint) == 6:
        if len(pixel_scale) < 2:
            raise CorruptTiffError(f"ModelPixelScale holds {len(pixel_scale)} values, expected 3")
        scale_x, scale_y = pixel_scale[0], -pixel_scale[1]
        i, j, _, x, y, _ = tiepoint
        transform = (scale_x, x - i * scale_x, scale_y, y - j * scale_y)
    else:
        return None
    if raster_type == RASTER_PIXEL_IS_POINT:
        scale_x, translate_x, scale_y, translate_y = transform
        transform = (scale_x, translate_x - scale_x / 2, scale_y, translate_y - scale_y / 2)
    if not all(math.isfinite(v) for v in transform):
        raise CorruptTiffError(f"georeferencing gives a non-finite transform {transform}")
    return tuple(float(v) for v in transform)  # type: ignore[return-value]


_NODATA_ITEM = re.compile(
    r"<Item\b[^>]*\bname=\"NODATA(?:_VALUES?)?\"[^>]*>\s*([^<\s]+)", re.IGNORECASE
)


def parse_nodata(gdal_nodata: str | None, gdal_metadata: str | None) -> float | None:
    """GDAL_NODATA wins; otherwise a NODATA item of GDAL_METADATA's XML (first value)."""
    text = gdal_nodata.strip() if gdal_nodata is not None else ""
    if not text and gdal_metadata:
        match = _NODATA_ITEM.search(gdal_metadata)
        text = match.group(1) if match else ""
    if not text:
        return None
    try:
        return float(text)
    except ValueError as error:
        raise CorruptTiffError(f"nodata value {text[:40]!r} is not a number") from error


def build_geo_info(
    *,
    geo_key_directory: np.ndarray | None,
    geo_doubles: np.ndarray | None,
    geo_ascii: str | None,
    pixel_scale: np.ndarray | None,
    tiepoint: np.ndarray | None,
    model_transformation: np.ndarray | None,
    gdal_nodata: str | None,
    gdal_metadata: str | None,
) -> GeoInfo:
    if geo_key_directory is None:
        keys: dict[int, GeoKeyValue] = {}
        epsg, description = crs_from_keys(keys)
    else:
        pairs, epsg, description = _keys_and_crs(
            geo_key_directory.dtype.str,
            geo_key_directory.tobytes(),
            None if geo_doubles is None else (geo_doubles.dtype.str, geo_doubles.tobytes()),
            geo_ascii,
        )
        keys = dict(pairs)
    raster_type = keys.get(GT_RASTER_TYPE, 1)
    scale = _as_tuple(pixel_scale)
    ties = _as_tuple(tiepoint)
    matrix = _as_tuple(model_transformation)
    return GeoInfo(
        transform=transform_from_tags(scale, ties, matrix, raster_type),
        pixel_scale=scale,
        tiepoint=ties,
        model_transformation=matrix,
        epsg=epsg,
        crs_description=description,
        raster_type=raster_type if isinstance(raster_type, int) else 1,
        nodata=parse_nodata(gdal_nodata, gdal_metadata),
        geo_keys=keys,
    )


@functools.lru_cache(maxsize=256)
def _keys_and_crs(
    directory_dtype: str,
    directory: bytes,
    doubles: tuple[str, bytes] | None,
    ascii_params: str | None,
) -> tuple[tuple[tuple[int, GeoKeyValue], ...], int | None, str | None]:
    """GeoKeys and CRS of one GeoKey directory: the files of a collection share a handful of
    CRSs, so they are resolved once each. Keyed by bytes, and only up to 256 of them, so a
    hostile stream of directories cannot pin much memory; each caller gets its own dict."""
    keys = parse_geo_keys(
        np.frombuffer(directory, directory_dtype),
        None if doubles is None else np.frombuffer(doubles[1], doubles[0]),
        ascii_params,
    )
    return tuple(keys.items()), *crs_from_keys(keys)


def _as_tuple(values: np.ndarray | None) -> tuple[float, ...] | None:
    if values is None:
        return None
    # tolist() widens in C without numpy's cast warning for a signalling NaN in FLOAT values;
    # it gives Python floats for float arrays, ints (converted here) for integer ones.
    if values.dtype.kind == "f":
        return tuple(values.tolist())
    return tuple(float(v) for v in values.tolist())
