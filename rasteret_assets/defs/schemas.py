"""The column schemas the asset pages show, with a description per column.

Declared on the asset definitions, so the UI explains every column before any month has run;
a month's materialization carries the schema it actually wrote (same descriptions).
"""

import dagster as dg
import pyarrow as pa

from rasteret_assets.contract import (
    BBOX_TYPE,
    COG_HEADERS_SCHEMA,
    DATETIME_TYPE,
    METADATA_SUFFIX,
    SCENE_BBOX_TYPE,
)
from rasteret_assets.ingest.lineage import LINEAGE_DESCRIPTIONS, LINEAGE_TYPES

RECORD_COLUMNS = {
    "id": "Item id, unique within the month",
    "datetime": "Acquisition instant (UTC)",
    "geometry": "Footprint as WKB, EPSG:4326",
    "bbox": "Footprint bounds (xmin, ymin, xmax, ymax), EPSG:4326",
    "assets": "{band code: {href, band_index}}: where each band's COG is",
    "scene_bbox": "Footprint bounds as a list, as rasteret reads them",
    "proj:epsg": "EPSG code of the scene's native CRS",
    "crs": "The scene's native CRS as text",
    "year": "Hive partition: acquisition year",
    "month": "Hive partition: acquisition month",
}
#: Types of the declared schema (a month's own schema has the exact Arrow types).
RECORD_TYPES = {
    "id": "string",
    "datetime": str(DATETIME_TYPE),
    "geometry": "binary (WKB)",
    "bbox": str(BBOX_TYPE),
    "assets": "struct<{band}: struct<href: string, band_index: int64>>",
    "scene_bbox": str(SCENE_BBOX_TYPE),
    "proj:epsg": "int32",
    "crs": "string",
    "year": "int32",
    "month": "int32",
}

HEADER_COLUMNS = {
    "url": "The asset URL's identity (no userinfo, no signing parameters)",
    "status": "ok, or the error class of the failed read",
    "error": "The error message of a failed read (URL without query string)",
    "attempts": "Read attempts, retries included",
    "requests": "Range requests made",
    "bytes_read": "Bytes read to parse the header",
    "elapsed_s": "Seconds the URL took",
    "etag": "The object's ETag when read",
    "size": "The object's size in bytes when read",
    "ifds": "Every IFD level: full-resolution image, overviews, masks, with tile tables",
    "transform": "Affine geotransform",
    "pixel_scale": "GeoTIFF ModelPixelScale",
    "tiepoint": "GeoTIFF ModelTiepoint",
    "nodata": "GDAL nodata value",
    "epsg": "EPSG code from the GeoKeys",
    "crs": "The CRS as text",
}


def _table_schema(schema: pa.Schema, descriptions: dict[str, str]) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[
            dg.TableColumn(f.name, str(f.type), description=describe(f.name, descriptions))
            for f in schema
        ]
    )


def describe(column: str, descriptions: dict[str, str]) -> str:
    if column in descriptions:
        return descriptions[column]
    if column.endswith(METADATA_SUFFIX):
        band = column.removesuffix(METADATA_SUFFIX)
        return (
            f"Parsed COG header of band {band}: tile tables, geotransform, dtype, and the "
            "source object's ETag and size (source_etag, source_size)"
        )
    return "Source column, carried through unchanged"


def collection_descriptions() -> dict[str, str]:
    return RECORD_COLUMNS | LINEAGE_DESCRIPTIONS


def _declared(types: dict[str, str], descriptions: dict[str, str]) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[
            dg.TableColumn(name, kind, description=describe(name, descriptions))
            for name, kind in types.items()
        ]
    )


def records_schema(schema: pa.Schema | None = None) -> dg.TableSchema:
    """Declared (``None``): the contract columns; materialized: what the month wrote."""
    if schema is None:
        return _declared(RECORD_TYPES, RECORD_COLUMNS)
    return _table_schema(schema, RECORD_COLUMNS)


def headers_schema() -> dg.TableSchema:
    return _table_schema(COG_HEADERS_SCHEMA, HEADER_COLUMNS)


def collection_schema(bands: tuple[str, ...], schema: pa.Schema | None = None) -> dg.TableSchema:
    """Declared (``None``): contract, band and lineage columns; materialized: as written."""
    if schema is None:
        bands_types = {f"{b}{METADATA_SUFFIX}": "struct (rasteret band metadata)" for b in bands}
        types = RECORD_TYPES | bands_types
        types |= {name: str(kind) for name, kind in LINEAGE_TYPES.items()}
        return _declared(types, collection_descriptions())
    return _table_schema(schema, collection_descriptions())
