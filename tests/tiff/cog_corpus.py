"""A corpus of real GeoTIFFs written by GDAL (through rasterio) for header-parser tests.

Every variant is written by GDAL itself, so the files carry exactly the tag layouts that real
COGs in the wild have. Most go through the COG driver (``driver="COG"``, a CreateCopy of an
in-memory GTiff); the GTiff driver is used where the COG driver cannot express the layout:
band interleaving (GDAL 3.10's COG driver ignores ``INTERLEAVE=BAND``), sparse giant rasters,
NBITS, big-endian files, strips and rotation.

Naming: ``cog-...`` files come from the COG driver, ``gtiff-...`` from the GTiff driver. Tests
rely on that prefix (only ``cog-`` files are promised a single 64 KiB header read). Two
``tifffile-...`` files carry georeferencing GDAL never writes for a north-up image: a
ModelTransformationTag without rotation, and a tiepoint anchored away from pixel (0, 0).

Run ``python tests/tiff/cog_corpus.py OUTDIR`` to write the corpus and print a summary.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import tifffile
from rasterio import shutil as rio_shutil
from rasterio.enums import ColorInterp, Resampling
from rasterio.transform import Affine
from rasterio.windows import Window

COG_PREFIX = "cog-"
GTIFF_PREFIX = "gtiff-"

# A Lambert azimuthal equal-area projection centred on a point no EPSG code uses, so the file
# must carry user-defined (32767) projection keys and rasterio's to_epsg() finds nothing.
CUSTOM_LAEA = (
    "+proj=laea +lat_0=47.3 +lon_0=8.55 +x_0=600000 +y_0=200000 +ellps=GRS80 +units=m +no_defs"
)
# A geographic CRS on a sphere: user-defined GeographicTypeGeoKey.
CUSTOM_SPHERE_LONLAT = "+proj=longlat +R=6371000 +no_defs"

UTM33_ORIGIN = (500000.0, 6000000.0)


def from_origin(west: float, north: float, xsize: float, ysize: float) -> Affine:
    """North-up transform (rasterio's helper, without its Affine ``*`` deprecation warning)."""
    return Affine(xsize, 0.0, west, 0.0, -ysize, north)


@dataclass(frozen=True)
class Variant:
    name: str
    description: str
    build: Callable[[Path], None]
    # What the header parser must do with the file: "parse", "not_tiled" or "unsupported".
    expect: str = "parse"


# --------------------------------------------------------------------------------------------
# Pixel data: deterministic, mostly smooth (compresses well, keeps the corpus small).


def _smooth(bands: int, height: int, width: int, dtype: str, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y = np.linspace(0.0, 6.0 * np.pi, height, dtype=np.float64)[:, None]
    x = np.linspace(0.0, 4.0 * np.pi, width, dtype=np.float64)[None, :]
    out = np.empty((bands, height, width), dtype=dtype)
    for b in range(bands):
        field_ = 0.5 + 0.25 * np.sin(x + b) + 0.25 * np.cos(y * (1 + 0.3 * b))  # in [0, 1]
        field_ += rng.normal(0.0, 0.01, size=(1, width))  # a little texture, cheap to compress
        field_ = np.clip(field_, 0.0, 1.0)
        kind = np.dtype(dtype).kind
        if kind == "f":
            out[b] = (field_ * 1000.0 - 200.0).astype(dtype)
        else:
            info = np.iinfo(dtype)
            lo, hi = max(info.min, -30000), min(info.max, 60000)
            out[b] = (lo + field_ * (hi - lo)).astype(dtype)
    return out


def _random(bands: int, height: int, width: int, dtype: str, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "f":
        return rng.normal(100.0, 30.0, size=(bands, height, width)).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=(bands, height, width), endpoint=True).astype(
        dtype
    )


def _disc_mask(height: int, width: int) -> np.ndarray:
    """255 inside an off-centre disc, 0 outside: a per-dataset validity mask."""
    yy, xx = np.mgrid[0:height, 0:width]
    inside = (yy - 0.45 * height) ** 2 + (xx - 0.55 * width) ** 2 < (0.4 * min(height, width)) ** 2
    return np.where(inside, 255, 0).astype("uint8")


# --------------------------------------------------------------------------------------------
# Writers.


def _write_source(
    dst: Any,
    data: np.ndarray,
    *,
    nodata: float | None,
    mask: np.ndarray | None,
    tags: dict[str, str] | None,
    colorinterp: tuple[ColorInterp, ...] | None,
) -> None:
    dst.write(data)
    if mask is not None:
        dst.write_mask(mask)
    if tags:
        dst.update_tags(**tags)
    if colorinterp is not None:
        dst.colorinterp = colorinterp
    if nodata is not None:
        dst.nodata = nodata


def write_cog(
    path: Path,
    data: np.ndarray,
    *,
    crs: str | None = "EPSG:32633",
    transform: Affine | None = None,
    nodata: float | None = None,
    mask: np.ndarray | None = None,
    tags: dict[str, str] | None = None,
    colorinterp: tuple[ColorInterp, ...] | None = None,
    **creation: Any,
) -> None:
    """Write ``data`` with GDAL's COG driver (CreateCopy from an in-memory GTiff)."""
    count, height, width = data.shape
    if transform is None:
        transform = from_origin(*UTM33_ORIGIN, 10.0, 10.0)
    with rasterio.MemoryFile() as memfile:
        with memfile.open(
            driver="GTiff",
            width=width,
            height=height,
            count=count,
            dtype=data.dtype,
            crs=crs,
            transform=transform,
        ) as src:
            _write_source(src, data, nodata=nodata, mask=mask, tags=tags, colorinterp=colorinterp)
        with memfile.open() as src:
            rio_shutil.copy(src, str(path), driver="COG", **creation)


def write_gtiff(
    path: Path,
    data: np.ndarray,
    *,
    crs: str | None = "EPSG:32633",
    transform: Affine | None = None,
    nodata: float | None = None,
    mask: np.ndarray | None = None,
    tags: dict[str, str] | None = None,
    colorinterp: tuple[ColorInterp, ...] | None = None,
    overviews: list[int] | None = None,
    gdal_env: dict[str, Any] | None = None,
    **creation: Any,
) -> None:
    """Write ``data`` with GDAL's GTiff driver (Create), optionally adding internal overviews."""
    count, height, width = data.shape
    if transform is None:
        transform = from_origin(*UTM33_ORIGIN, 10.0, 10.0)
    with (
        rasterio.Env(**(gdal_env or {})),
        rasterio.open(
            path,
            "w",
            driver="GTiff",
            width=width,
            height=height,
            count=count,
            dtype=data.dtype,
            crs=crs,
            transform=transform,
            **creation,
        ) as dst,
    ):
        _write_source(dst, data, nodata=nodata, mask=mask, tags=tags, colorinterp=colorinterp)
        if overviews:
            dst.build_overviews(overviews, Resampling.average)


def write_gtiff_cog_layout(
    path: Path,
    data: np.ndarray,
    *,
    overviews: list[int],
    crs: str | None = "EPSG:32633",
    **creation: Any,
) -> None:
    """GTiff CreateCopy with COPY_SRC_OVERVIEWS: COG-like layout the COG driver cannot write."""
    count, height, width = data.shape
    with rasterio.MemoryFile() as memfile:
        with memfile.open(
            driver="GTiff",
            width=width,
            height=height,
            count=count,
            dtype=data.dtype,
            crs=crs,
            transform=from_origin(*UTM33_ORIGIN, 10.0, 10.0),
        ) as src:
            src.write(data)
            src.build_overviews(overviews, Resampling.nearest)
        with memfile.open() as src:
            rio_shutil.copy(
                src, str(path), driver="GTiff", copy_src_overviews=True, tiled=True, **creation
            )


def write_sparse(path: Path, *, bigtiff: bool) -> None:
    """A 20000 x 20000 raster in 256 tiles (6241 of them) with only two tiles written.

    The tile tables alone (50 KB classic, 100 KB BigTIFF) overflow a 16 KiB first read, while
    the file stays ~100 KB because unwritten tiles keep offset 0 / byte count 0.
    """
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=20000,
        height=20000,
        count=1,
        dtype="uint8",
        crs="EPSG:32633",
        transform=from_origin(300000.0, 6000000.0, 10.0, 10.0),
        tiled=True,
        blockxsize=256,
        blockysize=256,
        compress="DEFLATE",
        sparse_ok=True,
        bigtiff="YES" if bigtiff else "NO",
        nodata=0,
    ) as dst:
        dst.write(np.full((1, 256, 256), 7, "uint8"), window=Window(0, 0, 256, 256))
        dst.write(_smooth(1, 256, 256, "uint8"), window=Window(256 * 40, 256 * 30, 256, 256))


# GeoKeyDirectory for WGS 84 / UTM 33N: header (1, 1, 0, n) then (key, location, count, value).
UTM33_GEOKEYS = (1, 1, 0, 3, 1024, 0, 1, 1, 1025, 0, 1, 1, 3072, 0, 1, 32633)


def write_tifffile_geotiff(path: Path, data: np.ndarray, geotags: list[tuple]) -> None:
    """A tiled GeoTIFF written by tifffile (not GDAL), with hand-made GeoTIFF tags."""
    tifffile.imwrite(
        path,
        data,
        tile=(256, 256),
        compression="zlib",
        photometric="minisblack",
        extratags=[(34735, "H", len(UTM33_GEOKEYS), UTM33_GEOKEYS, True), *geotags],
    )


# --------------------------------------------------------------------------------------------
# The variants.


def _v(
    name: str,
    description: str,
    fn: Callable[..., None],
    *,
    expect: str = "parse",
    **kwargs: Any,
) -> Variant:
    def build(path: Path) -> None:
        fn(path, **kwargs)

    return Variant(name=name, description=description, build=build, expect=expect)


RGB = (ColorInterp.red, ColorInterp.green, ColorInterp.blue)
RGBA = (*RGB, ColorInterp.alpha)


def _variants() -> list[Variant]:
    v: list[Variant] = []
    # --- compression x dtype x predictor, single band, COG driver -----------------------------
    v.append(
        _v(
            "cog-none-u8-1b-b256-epsg4326",
            "uncompressed uint8, EPSG:4326, 1 overview",
            write_cog,
            data=_random(1, 512, 512, "uint8"),
            crs="EPSG:4326",
            transform=from_origin(5.0, 47.0, 0.001, 0.001),
            blocksize=256,
            compress="NONE",
        )
    )
    v.append(
        _v(
            "cog-deflate-u8-1b-b256-utm-ovr3-nodata0",
            "DEFLATE uint8 2048x2048 with 3 overview levels, UTM 33N, nodata 0",
            write_cog,
            data=_smooth(1, 2048, 2048, "uint8"),
            blocksize=256,
            compress="DEFLATE",
            nodata=0,
        )
    )
    v.append(
        _v(
            "cog-lzw-pred2-u16-1b-b512-utm",
            "LZW + horizontal predictor, uint16, 512 blocks, odd size 1500x1300",
            write_cog,
            data=_smooth(1, 1300, 1500, "uint16"),
            blocksize=512,
            compress="LZW",
            predictor=2,
        )
    )
    v.append(
        _v(
            "cog-deflate-pred2-i16-1b-b256-nodata-neg9999",
            "DEFLATE + predictor 2, int16, negative nodata -9999",
            write_cog,
            data=_smooth(1, 600, 700, "int16"),
            blocksize=256,
            compress="DEFLATE",
            predictor=2,
            nodata=-9999,
        )
    )
    v.append(
        _v(
            "cog-zstd-pred3-f32-1b-b256-nodata-nan",
            "ZSTD + floating-point predictor, float32, nodata NaN",
            write_cog,
            data=_smooth(1, 600, 520, "float32"),
            blocksize=256,
            compress="ZSTD",
            predictor=3,
            nodata=float("nan"),
        )
    )
    v.append(
        _v(
            "cog-deflate-pred3-f64-1b-b256-nodata-neg1e30",
            "DEFLATE + predictor 3, float64, nodata -1e30",
            write_cog,
            data=_smooth(1, 400, 300, "float64"),
            blocksize=256,
            compress="DEFLATE",
            predictor=3,
            nodata=-1e30,
        )
    )
    v.append(
        _v(
            "cog-zstd-pred2-f32-1b-b256",
            "ZSTD + predictor 2 on float32 (GDAL allows it)",
            write_cog,
            data=_smooth(1, 300, 300, "float32"),
            blocksize=256,
            compress="ZSTD",
            predictor=2,
        )
    )
    v.append(
        _v(
            "cog-lerc-f32-1b-b256",
            "LERC (max z error 0.01) float32",
            write_cog,
            data=_smooth(1, 512, 512, "float32"),
            blocksize=256,
            compress="LERC",
            max_z_error=0.01,
        )
    )
    v.append(
        _v(
            "cog-lerc_zstd-u16-1b-b256",
            "LERC_ZSTD uint16 (compression 34887 + LercParameters)",
            write_cog,
            data=_smooth(1, 512, 512, "uint16"),
            blocksize=256,
            compress="LERC_ZSTD",
        )
    )
    v.append(
        _v(
            "cog-lerc_deflate-f64-1b-b256",
            "LERC_DEFLATE float64",
            write_cog,
            data=_smooth(1, 300, 300, "float64"),
            blocksize=256,
            compress="LERC_DEFLATE",
            max_z_error=0.001,
        )
    )
    v.append(
        _v(
            "cog-jpeg-u8-1b-b256-gray",
            "JPEG greyscale (JPEGTables, photometric min-is-black)",
            write_cog,
            data=_smooth(1, 512, 512, "uint8"),
            blocksize=256,
            compress="JPEG",
            quality=80,
        )
    )
    # --- multi-band, pixel interleaved --------------------------------------------------------
    v.append(
        _v(
            "cog-jpeg-u8-3b-b256-ycbcr-mask-ovr",
            "JPEG RGB (YCbCr) 1024x1024 with internal mask and overviews (image/mask IFD pairs)",
            write_cog,
            data=_smooth(3, 1024, 1024, "uint8"),
            mask=_disc_mask(1024, 1024),
            colorinterp=RGB,
            blocksize=256,
            compress="JPEG",
            quality=75,
        )
    )
    v.append(
        _v(
            "cog-webp-u8-3b-b512",
            "WEBP RGB 512 blocks",
            write_cog,
            data=_smooth(3, 900, 1100, "uint8"),
            colorinterp=RGB,
            blocksize=512,
            compress="WEBP",
            quality=70,
        )
    )
    v.append(
        _v(
            "cog-webp-u8-4b-b256-rgba",
            "WEBP RGBA (alpha as unassociated extra sample)",
            write_cog,
            data=np.concatenate(
                [_smooth(3, 400, 400, "uint8"), _disc_mask(400, 400)[None]], axis=0
            ),
            colorinterp=RGBA,
            blocksize=256,
            compress="WEBP",
            quality=70,
        )
    )
    v.append(
        _v(
            "cog-deflate-u8-4b-b256-rgba-alpha",
            "DEFLATE RGBA with alpha band (ExtraSamples=2)",
            write_cog,
            data=np.concatenate(
                [_smooth(3, 300, 500, "uint8"), _disc_mask(300, 500)[None]], axis=0
            ),
            colorinterp=RGBA,
            blocksize=256,
            compress="DEFLATE",
        )
    )
    v.append(
        _v(
            "cog-zstd-pred2-u16-5b-b256-pixel",
            "5-band uint16 pixel-interleaved ZSTD + predictor 2 (ExtraSamples for bands 4-5)",
            write_cog,
            data=_smooth(5, 500, 600, "uint16"),
            blocksize=256,
            compress="ZSTD",
            predictor=2,
            interleave="PIXEL",
        )
    )
    v.append(
        _v(
            "cog-deflate-u8-1b-b256-mask-ovr",
            "single band with internal mask, overviews of image and mask",
            write_cog,
            data=_smooth(1, 1000, 1000, "uint8"),
            mask=_disc_mask(1000, 1000),
            blocksize=256,
            compress="DEFLATE",
        )
    )
    # --- block sizes, CRSs, BigTIFF, PixelIsPoint ---------------------------------------------
    v.append(
        _v(
            "cog-deflate-u8-1b-b1024-laea-custom",
            "1024 blocks, user-defined LAEA projection (ProjectedCSTypeGeoKey 32767)",
            write_cog,
            data=_smooth(1, 2100, 2200, "uint8"),
            crs=CUSTOM_LAEA,
            transform=from_origin(550000.0, 250000.0, 25.0, 25.0),
            blocksize=1024,
            compress="DEFLATE",
        )
    )
    v.append(
        _v(
            "cog-deflate-i16-1b-b512-sphere-lonlat",
            "user-defined geographic CRS on a sphere (GeographicTypeGeoKey 32767)",
            write_cog,
            data=_smooth(1, 600, 1200, "int16"),
            crs=CUSTOM_SPHERE_LONLAT,
            transform=from_origin(-180.0, 90.0, 0.3, 0.3),
            blocksize=512,
            compress="DEFLATE",
        )
    )
    v.append(
        _v(
            "cog-deflate-u8-1b-b256-epsg3857",
            "Web Mercator EPSG:3857",
            write_cog,
            data=_smooth(1, 512, 512, "uint8"),
            crs="EPSG:3857",
            transform=from_origin(-20037508.342789244, 20037508.342789244, 78271.517, 78271.517),
            blocksize=256,
            compress="DEFLATE",
        )
    )
    v.append(
        _v(
            "cog-bigtiff-zstd-f32-1b-b256-epsg4326-nodata-nan",
            "BIGTIFF=YES float32 ZSTD with overviews, EPSG:4326, nodata NaN",
            write_cog,
            data=_smooth(1, 700, 900, "float32"),
            crs="EPSG:4326",
            transform=from_origin(-10.0, 60.0, 0.01, 0.01),
            blocksize=256,
            compress="ZSTD",
            bigtiff="YES",
            nodata=float("nan"),
        )
    )
    v.append(
        _v(
            "cog-bigtiff-jpeg-u8-3b-b256-mask",
            "BigTIFF JPEG RGB with internal mask",
            write_cog,
            data=_smooth(3, 600, 600, "uint8"),
            mask=_disc_mask(600, 600),
            colorinterp=RGB,
            blocksize=256,
            compress="JPEG",
            bigtiff="YES",
        )
    )
    v.append(
        _v(
            "cog-deflate-u16-1b-b256-pixelispoint",
            "AREA_OR_POINT=Point: RasterPixelIsPoint, tiepoint shifted by half a pixel",
            write_cog,
            data=_smooth(1, 400, 400, "uint16"),
            tags={"AREA_OR_POINT": "Point"},
            transform=from_origin(600000.0, 5100000.0, 30.0, 30.0),
            blocksize=256,
            compress="DEFLATE",
        )
    )
    v.append(
        _v(
            "cog-deflate-u8-1b-b32-many-tiles",
            "2048x2048 in 32x32 blocks: 4096 tiles, tile tables > 16 KiB but header < 64 KiB",
            write_cog,
            data=_smooth(1, 2048, 2048, "uint8"),
            blocksize=32,
            compress="DEFLATE",
            overview_count=2,
        )
    )
    v.append(
        _v(
            "cog-none-u8-1b-b256-no-crs",
            "geotransform but no CRS at all (no GeoKeyDirectory CRS keys)",
            write_cog,
            data=_smooth(1, 300, 300, "uint8"),
            crs=None,
            blocksize=256,
            compress="NONE",
        )
    )
    # --- GTiff driver: layouts the COG driver of GDAL 3.10 cannot write -----------------------
    v.append(
        _v(
            "gtiff-band-interleave-deflate-pred2-u16-3b-b256-ovr",
            "PlanarConfiguration=2 tiled, overviews appended by build_overviews",
            write_gtiff,
            data=_smooth(3, 700, 800, "uint16"),
            tiled=True,
            blockxsize=256,
            blockysize=256,
            compress="DEFLATE",
            predictor=2,
            interleave="band",
            overviews=[2, 4],
        )
    )
    v.append(
        _v(
            "gtiff-band-interleave-cog-layout-lzw-u8-4b-b256",
            "PlanarConfiguration=2 with COPY_SRC_OVERVIEWS (headers first, like a COG)",
            write_gtiff_cog_layout,
            data=_smooth(4, 600, 600, "uint8"),
            overviews=[2, 4],
            blockxsize=256,
            blockysize=256,
            compress="LZW",
            interleave="band",
        )
    )
    v.append(
        _v(
            "gtiff-band-interleave-zstd-pred3-f32-2b-b512-nodata-nan",
            "PlanarConfiguration=2 float32 ZSTD + predictor 3, nodata NaN",
            write_gtiff,
            data=_smooth(2, 600, 700, "float32"),
            tiled=True,
            blockxsize=512,
            blockysize=512,
            compress="ZSTD",
            predictor=3,
            interleave="band",
            nodata=float("nan"),
        )
    )
    v.append(
        _v(
            "gtiff-pixelispoint-f32-b256",
            "GTiff with AREA_OR_POINT=Point tag, float32 DEFLATE",
            write_gtiff,
            data=_smooth(1, 300, 300, "float32"),
            tags={"AREA_OR_POINT": "Point"},
            transform=from_origin(12.5, 48.25, 0.0025, 0.0025),
            crs="EPSG:4326",
            tiled=True,
            blockxsize=256,
            blockysize=256,
            compress="DEFLATE",
        )
    )
    v.append(
        _v(
            "gtiff-internal-mask-deflate-u8-3b-b256-ovr",
            "GDAL_TIFF_INTERNAL_MASK=YES, tiled, mask + overviews built afterwards",
            write_gtiff,
            data=_smooth(3, 500, 500, "uint8"),
            mask=_disc_mask(500, 500),
            tiled=True,
            blockxsize=256,
            blockysize=256,
            compress="DEFLATE",
            overviews=[2, 4],
            gdal_env={"GDAL_TIFF_INTERNAL_MASK": True},
        )
    )
    v.append(
        _v(
            "gtiff-nbits12-u16-b256",
            "NBITS=12: BitsPerSample 12, dtype uint16",
            write_gtiff,
            data=(_smooth(1, 300, 300, "uint16") >> 4).astype("uint16"),
            tiled=True,
            blockxsize=256,
            blockysize=256,
            compress="DEFLATE",
            nbits=12,
        )
    )
    v.append(
        _v(
            "gtiff-nbits4-u8-b256",
            "NBITS=4: BitsPerSample 4, dtype uint8",
            write_gtiff,
            data=(_smooth(1, 300, 300, "uint8") >> 4).astype("uint8"),
            tiled=True,
            blockxsize=256,
            blockysize=256,
            compress="NONE",
            nbits=4,
        )
    )
    v.append(
        _v(
            "gtiff-big-endian-deflate-i16-b256-ovr",
            "ENDIANNESS=BIG ('MM') tiled int16 with overviews and nodata",
            write_gtiff,
            data=_smooth(1, 600, 600, "int16"),
            nodata=-32768,
            tiled=True,
            blockxsize=256,
            blockysize=256,
            compress="DEFLATE",
            endianness="BIG",
            overviews=[2, 4],
        )
    )
    v.append(
        _v(
            "gtiff-big-endian-bigtiff-f64-b256",
            "big-endian BigTIFF float64",
            write_gtiff,
            data=_smooth(1, 300, 300, "float64"),
            tiled=True,
            blockxsize=256,
            blockysize=256,
            compress="LZW",
            endianness="BIG",
            bigtiff="YES",
        )
    )
    v.append(
        _v(
            "gtiff-sparse-20000-u8-b256",
            "20000x20000 sparse (SPARSE_OK): 6241 tiles, 2 written; tables > 16 KiB",
            write_sparse,
            bigtiff=False,
        )
    )
    v.append(
        _v(
            "gtiff-sparse-bigtiff-20000-u8-b256",
            "BigTIFF sparse 20000x20000: tile tables (100 KB) > 64 KiB",
            write_sparse,
            bigtiff=True,
        )
    )
    # --- georeferencing GDAL does not write for north-up images (tifffile) --------------------
    v.append(
        _v(
            "tifffile-modeltransformation-north-up-u16-b256",
            "ModelTransformationTag without rotation or shear, no pixel scale/tiepoint",
            write_tifffile_geotiff,
            data=_smooth(1, 600, 520, "uint16")[0],
            geotags=[
                (
                    34264,
                    "d",
                    16,
                    (20.0, 0, 0, 400000.0, 0, -20.0, 0, 5200000.0, 0, 0, 0, 0, 0, 0, 0, 1),
                    True,
                )
            ],
        )
    )
    v.append(
        _v(
            "tifffile-tiepoint-off-origin-u8-b256",
            "tiepoint anchored at raster (100.5, 50) instead of (0, 0)",
            write_tifffile_geotiff,
            data=_smooth(1, 300, 400, "uint8")[0],
            geotags=[
                (33550, "d", 3, (2.0, 3.0, 0.0), True),
                (33922, "d", 6, (100.5, 50.0, 0.0, 401000.0, 5300000.0, 0.0), True),
            ],
        )
    )
    # --- negative cases -----------------------------------------------------------------------
    v.append(
        _v(
            "gtiff-striped-deflate-u8",
            "striped (not tiled): the parser must raise NotTiledError",
            write_gtiff,
            expect="not_tiled",
            data=_smooth(1, 200, 300, "uint8"),
            tiled=False,
            compress="DEFLATE",
        )
    )
    v.append(
        _v(
            "gtiff-rotated-tiled-u8-b256",
            "tiled but rotated (ModelTransformationTag): UnsupportedTiffError",
            write_gtiff,
            expect="unsupported",
            data=_smooth(1, 300, 300, "uint8"),
            transform=Affine.translation(500000.0, 6000000.0)
            @ Affine.rotation(20.0)
            @ Affine.scale(10.0, -10.0),
            tiled=True,
            blockxsize=256,
            blockysize=256,
            compress="DEFLATE",
        )
    )
    return v


VARIANTS: tuple[Variant, ...] = tuple(_variants())
VARIANT_NAMES: tuple[str, ...] = tuple(variant.name for variant in VARIANTS)
assert len(set(VARIANT_NAMES)) == len(VARIANT_NAMES), "variant names must be unique"


def generate_corpus(directory: Path) -> list[tuple[str, Path]]:
    """Write every variant as ``<name>.tif`` into ``directory``; return ``(name, path)`` pairs."""
    directory.mkdir(parents=True, exist_ok=True)
    written: list[tuple[str, Path]] = []
    # GDAL warns (through rasterio's logger) about e.g. NaN nodata on integer overviews; the
    # files are what matters, not the chatter.
    with rasterio.Env(CPL_LOG="/dev/null", GDAL_NUM_THREADS=1):
        for variant in VARIANTS:
            path = directory / f"{variant.name}.tif"
            variant.build(path)
            written.append((variant.name, path))
    return written


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(f"usage: {argv[0]} OUTDIR", file=sys.stderr)
        return 2
    start = time.perf_counter()
    written = generate_corpus(Path(argv[1]))
    elapsed = time.perf_counter() - start
    total = 0
    for name, path in written:
        size = path.stat().st_size
        total += size
        print(f"{size:>10,d}  {name}")
    print(f"{len(written)} files, {total / 1e6:.2f} MB, {elapsed:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
