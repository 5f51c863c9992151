"""Independent truth about a TIFF file, from tifffile (raw tags) and rasterio (GDAL's reading).

Nothing here imports ``rasteret_assets``: the point is to have a second opinion that shares no
code with the parser under test. tifffile gives the raw tag values of every IFD in file order;
rasterio gives what GDAL makes of the georeferencing (area-convention transform, CRS, nodata).
The GeoKey directory is decoded here by hand from tifffile's raw tag values, because the
EPSG rule the parser promises (ProjectedCSTypeGeoKey before GeographicTypeGeoKey, 32767 means
user-defined) is stricter than rasterio's ``to_epsg()``, which may *identify* an EPSG code for
a CRS the file itself only describes.
"""

from __future__ import annotations

import math
import struct
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
import tifffile
from rasterio.errors import NotGeoreferencedWarning

# TIFF tags read as truth (numbers, not names, so nothing depends on tifffile's name table).
NEW_SUBFILE_TYPE = 254
IMAGE_WIDTH = 256
IMAGE_LENGTH = 257
BITS_PER_SAMPLE = 258
COMPRESSION = 259
PHOTOMETRIC = 262
STRIP_OFFSETS = 273
SAMPLES_PER_PIXEL = 277
PLANAR_CONFIGURATION = 284
PREDICTOR = 317
TILE_WIDTH = 322
TILE_LENGTH = 323
TILE_OFFSETS = 324
TILE_BYTE_COUNTS = 325
EXTRA_SAMPLES = 338
SAMPLE_FORMAT = 339
JPEG_TABLES = 347
MODEL_PIXEL_SCALE = 33550
MODEL_TIEPOINT = 33922
MODEL_TRANSFORMATION = 34264
GEO_KEY_DIRECTORY = 34735
GEO_DOUBLE_PARAMS = 34736
GEO_ASCII_PARAMS = 34737
GDAL_NODATA = 42113

GT_MODEL_TYPE = 1024
GT_RASTER_TYPE = 1025
GEOGRAPHIC_TYPE = 2048
PROJECTED_CS_TYPE = 3072
USER_DEFINED = 32767

GHOST_PREFIX = b"GDAL_STRUCTURAL_METADATA_SIZE="


@dataclass(frozen=True)
class IfdTruth:
    """Raw tag values of one IFD as tifffile reads them (defaults applied as TIFF 6 says)."""

    index: int
    offset: int
    is_tiled: bool
    new_subfile_type: int
    image_width: int
    image_height: int
    tile_width: int | None
    tile_height: int | None
    samples_per_pixel: int
    bits_per_sample: tuple[int, ...]
    sample_format: tuple[int, ...]
    compression: int
    predictor: int
    photometric: int | None
    planar_configuration: int
    extra_samples: tuple[int, ...] | None
    tile_offsets: np.ndarray | None
    tile_byte_counts: np.ndarray | None
    jpeg_tables: bytes | None
    dtype: str | None  # the numpy name the parser should report, None when no rule applies


@dataclass(frozen=True)
class TiffTruth:
    """Everything tifffile says about the file's structure, plus the hand-decoded GeoKeys."""

    byte_order: str  # "<" or ">"
    bigtiff: bool
    file_size: int
    ifds: tuple[IfdTruth, ...]
    geo_keys: dict[int, int | float | str]
    has_geo_key_directory: bool
    pixel_scale: tuple[float, ...] | None
    tiepoint: tuple[float, ...] | None
    model_transformation: tuple[float, ...] | None
    gdal_nodata_text: str | None
    ghost: dict[str, str] | None
    # Byte intervals [start, end) holding the file header, every IFD and every out-of-line tag
    # value of every IFD: a header parser never needs a byte outside them (ghost aside).
    header_spans: tuple[tuple[int, int], ...] = field(default=())

    @property
    def header_end(self) -> int:
        """One past the highest byte any IFD or tag value occupies."""
        return max(end for _, end in self.header_spans)

    @property
    def header_bytes(self) -> int:
        return sum(end - start for start, end in self.header_spans)

    @property
    def is_tiled(self) -> bool:
        return all(ifd.is_tiled for ifd in self.ifds)

    @property
    def geokey_epsg(self) -> int | None:
        return epsg_from_geokeys(self.geo_keys)

    @property
    def raster_type(self) -> int:
        value = self.geo_keys.get(GT_RASTER_TYPE, 1)
        return value if isinstance(value, int) else 1

    @property
    def expected_nodata(self) -> float | None:
        """GDAL_NODATA as a float: the ASCII text parsed the way GDAL does (``nan`` included)."""
        if self.gdal_nodata_text is None:
            return None
        return float(self.gdal_nodata_text.strip())


@dataclass(frozen=True)
class RasterioTruth:
    """What GDAL makes of the file."""

    georeferenced: bool
    transform: tuple[float, float, float, float, float, float]  # a, b, c, d, e, f
    epsg: int | None
    crs_wkt: str | None
    nodata: float | None
    gcps: int
    gcps_epsg: int | None

    @property
    def rasteret_transform(self) -> tuple[float, float, float, float]:
        a, _, c, _, e, f = self.transform
        return (a, c, e, f)

    @property
    def rotated(self) -> bool:
        _, b, _, d, _, _ = self.transform
        return b != 0.0 or d != 0.0


# ------------------------------------------------------------------------------------------------


def _tag(page: tifffile.TiffPage, code: int) -> tifffile.TiffTag | None:
    return page.tags.get(code)


def _ints(value: object) -> tuple[int, ...]:
    if isinstance(value, (tuple, list, np.ndarray)):
        return tuple(int(v) for v in value)
    return (int(value),)  # type: ignore[call-overload]


def _floats(value: object) -> tuple[float, ...]:
    if isinstance(value, (tuple, list, np.ndarray)):
        return tuple(float(v) for v in value)
    return (float(value),)  # type: ignore[arg-type]


def _per_sample(tag: tifffile.TiffTag | None, samples: int, default: int) -> tuple[int, ...]:
    """BitsPerSample / SampleFormat: one value per sample; a lone value applies to all."""
    if tag is None:
        return (default,) * samples
    values = _ints(tag.value)
    if len(values) == 1 and samples > 1:
        return values * samples
    return values


def expected_dtype(bits: tuple[int, ...], formats: tuple[int, ...]) -> str | None:
    """numpy name for the sample layout: integer depths round up to 8/16/32/64 bits."""
    if len(set(bits)) != 1 or len(set(formats)) != 1:
        return None
    depth, fmt = bits[0], formats[0]
    if fmt in (1, 2) and 1 <= depth <= 64:
        rounded = next(size for size in (8, 16, 32, 64) if depth <= size)
        return f"{'uint' if fmt == 1 else 'int'}{rounded}"
    if fmt == 3 and depth in (16, 32, 64):
        return f"float{depth}"
    return None


def _scalar(page: tifffile.TiffPage, code: int, default: int | None) -> int | None:
    tag = _tag(page, code)
    return default if tag is None else int(_ints(tag.value)[0])


def _ifd_truth(index: int, page: tifffile.TiffPage) -> IfdTruth:
    samples = _scalar(page, SAMPLES_PER_PIXEL, 1)
    assert samples is not None
    bits = _per_sample(_tag(page, BITS_PER_SAMPLE), samples, 1)
    formats = _per_sample(_tag(page, SAMPLE_FORMAT), samples, 1)
    is_tiled = _tag(page, TILE_WIDTH) is not None and _tag(page, TILE_OFFSETS) is not None
    offsets = counts = None
    if is_tiled:
        offsets = np.asarray(_ints(page.tags[TILE_OFFSETS].value), dtype=np.uint64)
        counts = np.asarray(_ints(page.tags[TILE_BYTE_COUNTS].value), dtype=np.uint64)
    extra = _tag(page, EXTRA_SAMPLES)
    tables = _tag(page, JPEG_TABLES)
    return IfdTruth(
        index=index,
        offset=int(page.offset),
        is_tiled=is_tiled,
        new_subfile_type=_scalar(page, NEW_SUBFILE_TYPE, 0) or 0,
        image_width=int(_scalar(page, IMAGE_WIDTH, 0) or 0),
        image_height=int(_scalar(page, IMAGE_LENGTH, 0) or 0),
        tile_width=_scalar(page, TILE_WIDTH, None),
        tile_height=_scalar(page, TILE_LENGTH, None),
        samples_per_pixel=samples,
        bits_per_sample=bits,
        sample_format=formats,
        compression=_scalar(page, COMPRESSION, 1) or 1,
        predictor=_scalar(page, PREDICTOR, 1) or 1,
        photometric=_scalar(page, PHOTOMETRIC, None),
        planar_configuration=_scalar(page, PLANAR_CONFIGURATION, 1) or 1,
        extra_samples=None if extra is None else _ints(extra.value),
        tile_offsets=offsets,
        tile_byte_counts=counts,
        jpeg_tables=None if tables is None else bytes(tables.value),
        dtype=expected_dtype(bits, formats),
    )


def decode_geo_keys(
    directory: tuple[int, ...], doubles: tuple[float, ...], ascii_params: str
) -> dict[int, int | float | str]:
    """GeoKeyDirectory -> {key: value}; ASCII values lose GeoTIFF's '|' terminator."""
    keys: dict[int, int | float | str] = {}
    if len(directory) < 4:
        return keys
    count = directory[3]
    for i in range(count):
        entry = directory[4 + 4 * i : 8 + 4 * i]
        if len(entry) < 4:
            break
        key, location, n, value = entry
        if location == 0:
            keys[key] = value
        elif location == GEO_DOUBLE_PARAMS and n >= 1 and value < len(doubles):
            keys[key] = doubles[value]
        elif location == GEO_ASCII_PARAMS:
            keys[key] = normalize_geo_ascii(ascii_params[value : value + n])
    return keys


def normalize_geo_ascii(text: str) -> str:
    return text.rstrip("\x00").rstrip("|")


def epsg_from_geokeys(keys: dict[int, int | float | str]) -> int | None:
    """The EPSG code the GeoKeys *name* (no identification by lookup).

    A ProjectedCSTypeGeoKey decides on its own: a user-defined projected CRS is not its
    geographic base CRS, so GeographicTypeGeoKey is consulted only for non-projected files.
    """
    projected = keys.get(PROJECTED_CS_TYPE)
    if projected is not None:
        return projected if isinstance(projected, int) and 0 < projected < USER_DEFINED else None
    if keys.get(GT_MODEL_TYPE) == 1:
        return None
    geographic = keys.get(GEOGRAPHIC_TYPE)
    if isinstance(geographic, int) and 0 < geographic < USER_DEFINED:
        return geographic
    return None


def parse_ghost_header(data: bytes, bigtiff: bool) -> dict[str, str] | None:
    """GDAL's COG ghost header (``GDAL_STRUCTURAL_METADATA_SIZE=nnnnnn bytes``) as a dict."""
    start = 16 if bigtiff else 8
    if not data[start:].startswith(GHOST_PREFIX):
        return None
    head_end = data.index(b"\n", start) + 1
    size = int(data[start + len(GHOST_PREFIX) : head_end].split()[0])
    body = data[head_end : head_end + size].decode("ascii", errors="replace")
    out: dict[str, str] = {}
    for line in body.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip():
            out[key.strip()] = value.strip()
    return out


def _merge(spans: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    merged: list[list[int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return tuple((a, b) for a, b in merged)


def _header_spans(data: bytes, pages: list[tifffile.TiffPage], bigtiff: bool, order: str):
    spans: list[tuple[int, int]] = [(0, 16 if bigtiff else 8)]
    inline = 8 if bigtiff else 4
    for page in pages:
        if bigtiff:
            (n,) = struct.unpack_from(order + "Q", data, page.offset)
            spans.append((page.offset, page.offset + 8 + 20 * n + 8))
        else:
            (n,) = struct.unpack_from(order + "H", data, page.offset)
            spans.append((page.offset, page.offset + 2 + 12 * n + 4))
        for tag in page.tags.values():
            if tag.valuebytecount > inline:
                spans.append((tag.valueoffset, tag.valueoffset + tag.valuebytecount))
    return _merge(spans)


def read_tiff_truth(path: Path) -> TiffTruth:
    data = path.read_bytes()
    with warnings.catch_warnings(), tifffile.TiffFile(path) as tif:
        warnings.simplefilter("ignore")
        tif.pages.useframes = False
        pages = [tif.pages[i] for i in range(len(tif.pages))]
        assert all(isinstance(p, tifffile.TiffPage) for p in pages)
        order = tif.byteorder
        bigtiff = bool(tif.is_bigtiff)
        ifds = tuple(_ifd_truth(i, page) for i, page in enumerate(pages))
        first = pages[0]
        directory = _tag(first, GEO_KEY_DIRECTORY)
        doubles = _tag(first, GEO_DOUBLE_PARAMS)
        ascii_params = _tag(first, GEO_ASCII_PARAMS)
        geo_keys = (
            decode_geo_keys(
                _ints(directory.value),
                () if doubles is None else _floats(doubles.value),
                "" if ascii_params is None else _ascii_raw(data, ascii_params),
            )
            if directory is not None
            else {}
        )
        scale = _tag(first, MODEL_PIXEL_SCALE)
        tie = _tag(first, MODEL_TIEPOINT)
        matrix = _tag(first, MODEL_TRANSFORMATION)
        nodata = _tag(first, GDAL_NODATA)
        # Read every lazily loaded value while the file is still open.
        return TiffTruth(
            byte_order=order,
            bigtiff=bigtiff,
            file_size=len(data),
            ifds=ifds,
            geo_keys=geo_keys,
            has_geo_key_directory=directory is not None,
            pixel_scale=None if scale is None else _floats(scale.value),
            tiepoint=None if tie is None else _floats(tie.value),
            model_transformation=None if matrix is None else _floats(matrix.value),
            gdal_nodata_text=None if nodata is None else _ascii_at(data, nodata),
            ghost=parse_ghost_header(data, bigtiff),
            header_spans=_header_spans(data, pages, bigtiff, order),
        )


def _ascii_raw(data: bytes, tag: tifffile.TiffTag) -> str:
    return data[tag.valueoffset : tag.valueoffset + tag.count].decode("latin-1")


def _ascii_at(data: bytes, tag: tifffile.TiffTag) -> str:
    """An ASCII tag's text straight from the file bytes, up to the first NUL.

    Used for GDAL_NODATA, whose value tifffile post-processes (casting to the pixel type).
    """
    raw = data[tag.valueoffset : tag.valueoffset + tag.count]
    return raw.split(b"\x00", 1)[0].decode("ascii", errors="replace")


def read_rasterio_truth(path: Path) -> RasterioTruth:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.Env(GTIFF_POINT_GEO_IGNORE=False), rasterio.open(path) as ds:
            t = ds.transform
            gcps, gcps_crs = ds.gcps
            crs = ds.crs
            nodata = ds.nodata
    # rasterio reports the identity transform for files without a geotransform.
    georeferenced = not t.is_identity
    return RasterioTruth(
        georeferenced=georeferenced,
        transform=(t.a, t.b, t.c, t.d, t.e, t.f),
        epsg=None if crs is None else crs.to_epsg(),
        crs_wkt=None if crs is None else crs.to_wkt(),
        nodata=nodata,
        gcps=len(gcps),
        gcps_epsg=None if gcps_crs is None else gcps_crs.to_epsg(),
    )


def same_float(a: float | None, b: float | None) -> bool:
    """Equality that treats NaN as equal to NaN (nodata 'nan')."""
    if a is None or b is None:
        return a is b
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b
