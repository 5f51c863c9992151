"""Typed parser errors, each carrying one of DESIGN.md's error classes.

The enrichment engine records ``error_class`` per URL, so every failure the parser can raise
must map onto that vocabulary instead of leaking ``struct.error`` or ``IndexError``.
"""

from __future__ import annotations


class TiffError(Exception):
    """Base class: a header that cannot be turned into band metadata."""

    error_class: str = "corrupt"


class NotTiffError(TiffError):
    """The bytes do not start with a TIFF or BigTIFF signature."""

    error_class = "not_tiff"


class NotTiledError(TiffError):
    """A striped TIFF: no tile tables to record, so it cannot be read tile by tile."""

    error_class = "not_tiled"


class UnsupportedTiffError(TiffError):
    """Valid TIFF, but a layout this project does not handle (rotation, odd sample formats)."""

    error_class = "unsupported"


class CorruptTiffError(TiffError):
    """Structurally inconsistent: IFD loops, bad counts, absurd sizes, broken tag types."""

    error_class = "corrupt"


class TruncatedTiffError(TiffError):
    """The header points at bytes past the end of the file."""

    error_class = "truncated"
