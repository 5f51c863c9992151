"""Pure, sans-I/O parsing of TIFF/BigTIFF/GeoTIFF headers into per-level tile metadata."""

from rasteret_assets.tiff.buffer import ByteBuffer, NeedBytes, plan_reads
from rasteret_assets.tiff.driver import HeaderReadDriver, ReadStats
from rasteret_assets.tiff.errors import (
    CorruptTiffError,
    NotTiffError,
    NotTiledError,
    TiffError,
    TruncatedTiffError,
    UnsupportedTiffError,
)
from rasteret_assets.tiff.model import GeoInfo, Ifd, TiffHeader
from rasteret_assets.tiff.parser import parse_header, parse_tiff_bytes
from rasteret_assets.tiff.reader import read_header, read_header_from_path

__all__ = [
    "ByteBuffer",
    "CorruptTiffError",
    "GeoInfo",
    "HeaderReadDriver",
    "Ifd",
    "NeedBytes",
    "NotTiffError",
    "NotTiledError",
    "ReadStats",
    "TiffError",
    "TiffHeader",
    "TruncatedTiffError",
    "UnsupportedTiffError",
    "parse_header",
    "parse_tiff_bytes",
    "plan_reads",
    "read_header",
    "read_header_from_path",
]
