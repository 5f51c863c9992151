"""The Collection contract: column names and Arrow types every collection must carry.

``{band}_metadata`` keeps rasteret's 17 fields with the same names, types and order, so
rasteret 0.4 readers can use a collection unchanged; this project's additions (overview and
mask levels, JPEG tables, CRS, source ETag/size) come strictly after them.

Tile tables are built straight from the parser's numpy arrays into Arrow buffers: millions of
headers never become Python lists of offsets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

if TYPE_CHECKING:
    from rasteret_assets.tiff.model import Ifd, TiffHeader

CONTRACT_VERSION = "1.0"

ID = "id"
DATETIME = "datetime"
GEOMETRY = "geometry"
ASSETS = "assets"
BBOX = "bbox"
SCENE_BBOX = "scene_bbox"
PROJ_EPSG = "proj:epsg"
CRS = "crs"
YEAR = "year"
MONTH = "month"
REQUIRED_COLUMNS = (ID, DATETIME, GEOMETRY, ASSETS)
PARTITION_COLUMNS = (YEAR, MONTH)
METADATA_SUFFIX = "_metadata"

#: ``eo:bands`` entries of a STAC asset (the Electro-Optical extension's band object).
EO_BAND_TYPE = pa.struct(
    [
        ("name", pa.string()),
        ("common_name", pa.string()),
        ("description", pa.string()),
        ("center_wavelength", pa.float64()),
        ("full_width_half_max", pa.float64()),
        ("solar_illumination", pa.float64()),
    ]
)
#: ``raster:bands`` entries of a STAC asset (the Raster extension's band object): where a
#: catalog says how to turn stored values into physical ones (``scale``/``offset``).
RASTER_BAND_TYPE = pa.struct(
    [
        ("nodata", pa.float64()),
        ("data_type", pa.string()),
        ("bits_per_sample", pa.int64()),
        ("spatial_resolution", pa.float64()),
        ("scale", pa.float64()),
        ("offset", pa.float64()),
        ("unit", pa.string()),
        ("sampling", pa.string()),
    ]
)
#: The STAC asset fields each band's asset keeps beside ``href``/``band_index``, typed so
#: every batch and every month of a collection has one schema. A field a catalog does not
#: give is null; fields outside this list are not kept.
STAC_ASSET_FIELDS: tuple[pa.Field, ...] = (
    pa.field("title", pa.string()),
    pa.field("description", pa.string()),
    pa.field("type", pa.string()),
    pa.field("roles", pa.list_(pa.string())),
    pa.field("gsd", pa.float64()),
    pa.field("nodata", pa.float64()),
    pa.field("data_type", pa.string()),
    pa.field("unit", pa.string()),
    pa.field("scale", pa.float64()),
    pa.field("offset", pa.float64()),
    pa.field("proj:epsg", pa.int64()),
    pa.field("proj:code", pa.string()),
    pa.field("proj:shape", pa.list_(pa.int64())),
    pa.field("proj:transform", pa.list_(pa.float64())),
    pa.field("proj:bbox", pa.list_(pa.float64())),
    pa.field("eo:bands", pa.list_(EO_BAND_TYPE)),
    pa.field("raster:bands", pa.list_(RASTER_BAND_TYPE)),
)
ASSET_TYPE = pa.struct(
    [pa.field("href", pa.string()), pa.field("band_index", pa.int64()), *STAC_ASSET_FIELDS]
)
BBOX_TYPE = pa.struct(
    [("xmin", pa.float64()), ("ymin", pa.float64()), ("xmax", pa.float64()), ("ymax", pa.float64())]
)
SCENE_BBOX_TYPE = pa.list_(pa.float64(), 4)
DATETIME_TYPE = pa.timestamp("us", tz="UTC")

RASTERET_METADATA_FIELDS: tuple[pa.Field, ...] = (
    pa.field("image_width", pa.int32()),
    pa.field("image_height", pa.int32()),
    pa.field("tile_width", pa.int32()),
    pa.field("tile_height", pa.int32()),
    pa.field("dtype", pa.string()),
    pa.field("transform", pa.list_(pa.float64())),
    pa.field("predictor", pa.int32()),
    pa.field("compression", pa.int32()),
    pa.field("tile_offsets", pa.list_(pa.int64())),
    pa.field("tile_byte_counts", pa.list_(pa.int64())),
    pa.field("pixel_scale", pa.list_(pa.float64())),
    pa.field("tiepoint", pa.list_(pa.float64())),
    pa.field("nodata", pa.float64()),
    pa.field("samples_per_pixel", pa.int32()),
    pa.field("planar_configuration", pa.int32()),
    pa.field("photometric", pa.int32()),
    pa.field("extra_samples", pa.list_(pa.int32())),
)

LEVEL_TYPE = pa.struct(
    [
        ("image_width", pa.int32()),
        ("image_height", pa.int32()),
        ("tile_width", pa.int32()),
        ("tile_height", pa.int32()),
        ("tile_offsets", pa.list_(pa.int64())),
        ("tile_byte_counts", pa.list_(pa.int64())),
    ]
)

EXTRA_METADATA_FIELDS: tuple[pa.Field, ...] = (
    pa.field("overviews", pa.list_(LEVEL_TYPE)),
    pa.field("masks", pa.list_(LEVEL_TYPE)),
    pa.field("jpeg_tables", pa.binary()),
    pa.field("crs", pa.string()),
    pa.field("source_etag", pa.string()),
    pa.field("source_size", pa.int64()),
)

BAND_METADATA_TYPE = pa.struct(RASTERET_METADATA_FIELDS + EXTRA_METADATA_FIELDS)

#: One IFD of a parsed file in the ``cog_headers`` table, band-agnostic (full tile tables).
IFD_TYPE = pa.struct(
    [
        ("index", pa.int32()),
        ("new_subfile_type", pa.int32()),
        ("image_width", pa.int32()),
        ("image_height", pa.int32()),
        ("tile_width", pa.int32()),
        ("tile_height", pa.int32()),
        ("samples_per_pixel", pa.int32()),
        ("planar_configuration", pa.int32()),
        ("bits_per_sample", pa.int32()),
        ("sample_format", pa.int32()),
        ("dtype", pa.string()),
        ("compression", pa.int32()),
        ("predictor", pa.int32()),
        ("photometric", pa.int32()),
        ("extra_samples", pa.list_(pa.int32())),
        ("tile_offsets", pa.list_(pa.int64())),
        ("tile_byte_counts", pa.list_(pa.int64())),
        ("jpeg_tables", pa.binary()),
    ]
)

#: ``cog_headers``: one row per asset URL, what happened to it and what its header says.
COG_HEADERS_SCHEMA = pa.schema(
    [
        ("url", pa.string()),
        ("status", pa.string()),
        ("error", pa.string()),
        ("attempts", pa.int32()),
        ("requests", pa.int32()),
        ("bytes_read", pa.int64()),
        ("elapsed_s", pa.float64()),
        ("etag", pa.string()),
        ("size", pa.int64()),
        ("ifds", pa.list_(IFD_TYPE)),
        ("transform", pa.list_(pa.float64())),
        ("pixel_scale", pa.list_(pa.float64())),
        ("tiepoint", pa.list_(pa.float64())),
        ("nodata", pa.float64()),
        ("epsg", pa.int32()),
        ("crs", pa.string()),
    ]
)


def metadata_column(band: str) -> str:
    """Column holding the parsed header of ``band``'s asset."""
    return f"{band}{METADATA_SUFFIX}"


def band_codes_of(schema: pa.Schema) -> list[str]:
    """Bands that have a metadata column, in schema order.

    A metadata column is a struct with at least rasteret's 17 fields: this project's
    columns, and those rasteret 0.4.1 writes (which lack the fields added after them).
    """
    return [
        name.removesuffix(METADATA_SUFFIX)
        for name in schema.names
        if name.endswith(METADATA_SUFFIX) and _is_band_metadata(schema.field(name).type)
    ]


def _is_band_metadata(kind: pa.DataType) -> bool:
    if not pa.types.is_struct(kind):
        return False
    names = {kind.field(i).name for i in range(kind.num_fields)}
    return all(field.name in names for field in RASTERET_METADATA_FIELDS)


def missing_columns(schema: pa.Schema) -> list[str]:
    """Required contract columns absent from ``schema``."""
    return [name for name in REQUIRED_COLUMNS if name not in schema.names]


@dataclass(frozen=True, slots=True)
class BandHeader:
    """One band of one parsed file, plus what the store said about the object."""

    header: TiffHeader
    band_index: int = 0
    etag: str | None = None
    size: int | None = None


def _list_of(
    arrays: Sequence[np.ndarray | None], value_type: pa.DataType, np_type: type
) -> pa.ListArray:
    """A list array from per-row numpy arrays (``None`` rows become nulls) in one copy."""
    lengths = np.fromiter((0 if a is None else len(a) for a in arrays), np.int64, len(arrays))
    offsets = np.zeros(len(arrays) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    if offsets[-1] > np.iinfo(np.int32).max:
        raise ValueError("tile tables exceed 2**31 values in one batch; use smaller batches")
    present = [a for a in arrays if a is not None]
    values = np.concatenate(present).astype(np_type) if present else np.empty(0, np_type)
    mask = np.fromiter((a is None for a in arrays), bool, len(arrays))
    return pa.ListArray.from_arrays(
        pa.array(offsets.astype(np.int32)),
        pa.array(values, type=value_type),
        type=pa.list_(value_type),
        mask=pa.array(mask) if mask.any() else None,
    )


def _optional_list(values: Sequence[int] | None) -> list[int] | None:
    return None if values is None else list(values)


def _float_list(values: Sequence[Sequence[float] | None]) -> pa.ListArray:
    return pa.array([None if v is None else list(v) for v in values], pa.list_(pa.float64()))


def ifd_struct_array(
    levels: Sequence[tuple[Ifd, int | None]], struct_type: pa.StructType
) -> pa.StructArray:
    """Struct array (``LEVEL_TYPE`` or ``IFD_TYPE``) of IFDs.

    Tile tables are sliced for the paired band, or kept whole when the band is ``None``.
    """
    tables = [
        (ifd.tile_offsets, ifd.tile_byte_counts) if band is None else ifd.band_tiles(band)
        for ifd, band in levels
    ]
    ifds = [ifd for ifd, _ in levels]
    columns = []
    for field in struct_type:
        if field.name == "tile_offsets":
            columns.append(_list_of([t[0] for t in tables], pa.int64(), np.int64))
        elif field.name == "tile_byte_counts":
            columns.append(_list_of([t[1] for t in tables], pa.int64(), np.int64))
        elif field.name == "extra_samples":
            columns.append(pa.array([_optional_list(i.extra_samples) for i in ifds], field.type))
        elif field.name in ("bits_per_sample", "sample_format"):
            columns.append(pa.array([getattr(i, field.name)[0] for i in ifds], field.type))
        else:
            columns.append(pa.array([getattr(i, field.name) for i in ifds], field.type))
    return pa.StructArray.from_arrays(columns, fields=list(struct_type))


def _nested_levels(
    rows: Sequence[BandHeader | None], pick: str, null_mask: pa.Array | None
) -> pa.ListArray:
    """Per row, a list of its overview (``pick="overviews"``) or mask levels.

    Overviews share the band layout of the image; masks are single-sample for every band.
    """
    flat: list[tuple[Ifd, int]] = []
    offsets = [0]
    for row in rows:
        if row is not None:
            band = row.band_index if pick == "overviews" else 0
            flat.extend((ifd, band) for ifd in getattr(row.header, pick))
        offsets.append(len(flat))
    return pa.ListArray.from_arrays(
        pa.array(offsets, pa.int32()),
        ifd_struct_array(flat, LEVEL_TYPE),
        type=pa.list_(LEVEL_TYPE),
        mask=null_mask,
    )


def band_metadata_array(rows: Sequence[BandHeader | None]) -> pa.StructArray:
    """``{band}_metadata`` values for many rows; ``None`` rows (failed assets) become nulls."""
    present = [r for r in rows if r is not None]
    for row in present:
        if not 0 <= row.band_index < row.header.image.samples_per_pixel:
            raise ValueError(
                f"band_index {row.band_index} out of range: the file has "
                f"{row.header.image.samples_per_pixel} samples per pixel"
            )
    images = [None if r is None else r.header.image for r in rows]
    geos = [None if r is None else r.header.geo for r in rows]
    tables = [None if r is None else r.header.image.band_tiles(r.band_index) for r in rows]
    null_mask = pa.array([r is None for r in rows]) if len(present) < len(rows) else None

    def image_field(name: str, arrow_type: pa.DataType) -> pa.Array:
        return pa.array([None if i is None else getattr(i, name) for i in images], arrow_type)

    def geo_field(name: str) -> pa.Array:
        return _float_list([None if g is None else getattr(g, name) for g in geos])

    columns = [
        image_field("image_width", pa.int32()),
        image_field("image_height", pa.int32()),
        image_field("tile_width", pa.int32()),
        image_field("tile_height", pa.int32()),
        image_field("dtype", pa.string()),
        geo_field("transform"),
        image_field("predictor", pa.int32()),
        image_field("compression", pa.int32()),
        _list_of([None if t is None else t[0] for t in tables], pa.int64(), np.int64),
        _list_of([None if t is None else t[1] for t in tables], pa.int64(), np.int64),
        geo_field("pixel_scale"),
        geo_field("tiepoint"),
        pa.array([None if g is None else g.nodata for g in geos], pa.float64()),
        image_field("samples_per_pixel", pa.int32()),
        image_field("planar_configuration", pa.int32()),
        image_field("photometric", pa.int32()),
        pa.array(
            [None if i is None else _optional_list(i.extra_samples) for i in images],
            pa.list_(pa.int32()),
        ),
        _nested_levels(rows, "overviews", null_mask),
        _nested_levels(rows, "masks", null_mask),
        image_field("jpeg_tables", pa.binary()),
        pa.array([None if g is None else g.crs for g in geos], pa.string()),
        pa.array([None if r is None else r.etag for r in rows], pa.string()),
        pa.array([None if r is None else r.size for r in rows], pa.int64()),
    ]
    return pa.StructArray.from_arrays(columns, fields=list(BAND_METADATA_TYPE), mask=null_mask)


def band_metadata_scalar(
    header: TiffHeader,
    band_index: int = 0,
    *,
    etag: str | None = None,
    size: int | None = None,
) -> pa.StructScalar:
    """The ``{band}_metadata`` value of one band of one parsed file."""
    return band_metadata_array([BandHeader(header, band_index, etag, size)])[0]


class ContractError(ValueError):
    """A table breaks the Collection contract.

    Carries the offending ``column`` and some of the record ``ids`` so a caller (or an asset
    check) can report exactly which records to fix instead of a bare Arrow error.
    """

    def __init__(self, message: str, *, column: str | None = None, ids: Sequence[str] = ()):
        super().__init__(message)
        self.column = column
        self.ids = tuple(ids)


class MissingColumnsError(ContractError):
    """Required contract columns are absent."""


class DuplicateIdsError(ContractError):
    """Record ids repeat; every later step keys on them, so they must be unique."""


def describe_ids(ids: Sequence[str], total: int | None = None, limit: int = 5) -> str:
    """``"record 'a'"`` or ``"7 records (e.g. 'a', 'b')"``: enough to find rows, no log flood."""
    count = len(ids) if total is None else total
    shown = ", ".join(repr(i) for i in ids[:limit])
    if count == 1 and shown:
        return f"record {shown}"
    example = "e.g. " if count > min(limit, len(ids)) else ""
    return f"{count} records ({example}{shown})" if shown else f"{count} records"


def require_columns(schema: pa.Schema) -> None:
    """Raise :class:`MissingColumnsError` listing what is missing and what is present."""
    missing = missing_columns(schema)
    if missing:
        raise MissingColumnsError(
            f"Table is missing required columns: {missing}; "
            f"required {list(REQUIRED_COLUMNS)}, present {schema.names}",
            column=missing[0],
        )


def require_unique_ids(ids: pa.Array | pa.ChunkedArray) -> None:
    """Raise :class:`DuplicateIdsError` naming some repeated ids and how many there are."""
    counts = pc.value_counts(ids)
    repeated = pc.filter(counts.field("values"), pc.greater(counts.field("counts"), 1))
    if len(repeated):
        names = [str(v) for v in repeated[:5].to_pylist()]
        raise DuplicateIdsError(
            f"column {ID!r}: ids must be unique, {len(repeated)} repeat "
            f"(e.g. {', '.join(repr(n) for n in names)})",
            column=ID,
            ids=names,
        )
