"""TIFF tag numbers and field types, and decoding of one entry's value.

Only the tags the parser uses are ever decoded; everything else (ICC profiles, XMP, SubIFDs,
private tags with exotic types) is skipped without being read.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from rasteret_assets.tiff.errors import CorruptTiffError


class Tag:
    """Tag numbers as plain ints: enum member lookups cost measurably on the hot path."""

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
    GDAL_METADATA = 42112
    GDAL_NODATA = 42113


TAG_NAMES: dict[int, str] = {value: name for name, value in vars(Tag).items() if name.isupper()}


def tag_name(tag: int) -> str:
    """``NAME (tag N)`` for error messages."""
    return f"{TAG_NAMES.get(tag, 'tag')} (tag {tag})"


# Field type -> (size in bytes, numpy dtype code or None for non-numeric, human name).
# 5/10 (rationals) and 15 (complex) hold two numbers per value; 13/18 are IFD offsets.
FIELD_TYPES: dict[int, tuple[int, str | None, str]] = {
    1: (1, "u1", "BYTE"),
    2: (1, None, "ASCII"),
    3: (2, "u2", "SHORT"),
    4: (4, "u4", "LONG"),
    5: (8, "u4", "RATIONAL"),
    6: (1, "i1", "SBYTE"),
    7: (1, None, "UNDEFINED"),
    8: (2, "i2", "SSHORT"),
    9: (4, "i4", "SLONG"),
    10: (8, "i4", "SRATIONAL"),
    11: (4, "f4", "FLOAT"),
    12: (8, "f8", "DOUBLE"),
    13: (4, "u4", "IFD"),
    14: (2, "u2", "UNICODE"),
    15: (8, "f4", "COMPLEX"),
    16: (8, "u8", "LONG8"),
    17: (8, "i8", "SLONG8"),
    18: (8, "u8", "IFD8"),
}
PAIRED_TYPES = frozenset({5, 10, 15})
INTEGER_TYPES = frozenset({1, 3, 4, 6, 8, 9, 13, 16, 17, 18})
# struct codes for reading a single unsigned inline integer without numpy's overhead.
UNSIGNED_SCALAR_CODES = {1: "B", 3: "H", 4: "I", 13: "I", 16: "Q", 18: "Q"}


Describe = Callable[[], str]


def decode_numbers(
    field_type: int, count: int, raw: memoryview, order: str, describe: Describe
) -> np.ndarray:
    """Decode a numeric field into a numpy array (rationals become float64 quotients).

    ``describe`` names the tag for error messages; it is only called on the error path.
    """
    _, code, name = FIELD_TYPES[field_type]
    if code is None:
        raise CorruptTiffError(f"{describe()} has field type {name}, expected a number")
    if field_type in PAIRED_TYPES:
        # Widening a signalling NaN warns; hostile bytes may hold one, and NaN is kept as NaN.
        with np.errstate(divide="ignore", invalid="ignore"):
            pairs = np.frombuffer(raw, dtype=order + code, count=2 * count).astype(np.float64)
            if field_type == 15:
                return pairs[0::2]
            return pairs[0::2] / pairs[1::2]
    return np.frombuffer(raw, dtype=order + code, count=count)


def decode_integers(
    field_type: int, count: int, raw: memoryview, order: str, describe: Describe
) -> np.ndarray:
    """Decode an integer-typed field; anything else is a corrupt header for this tag."""
    if field_type not in INTEGER_TYPES:
        name = FIELD_TYPES[field_type][2]
        raise CorruptTiffError(f"{describe()} has field type {name}, expected integer")
    values = decode_numbers(field_type, count, raw, order, describe)
    if values.dtype.kind == "i" and count and values.min() < 0:
        raise CorruptTiffError(f"{describe()} holds a negative value")
    return values


def decode_text(raw: memoryview) -> str:
    """ASCII fields end at the first NUL; stray non-ASCII bytes are kept, not fatal."""
    text = bytes(raw)
    end = text.find(b"\x00")
    if end >= 0:
        text = text[:end]
    return text.decode("utf-8", errors="replace")
