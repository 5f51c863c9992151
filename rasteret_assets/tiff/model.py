"""Value objects produced by the header parser.

Tile tables stay numpy arrays (never lists of Python ints) so that millions of headers can be
turned into Arrow buffers without a Python object per tile.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

NEW_SUBFILE_REDUCED = 1
NEW_SUBFILE_MASK = 4


@dataclass(frozen=True, slots=True, eq=False)
class Ifd:
    """One image file directory: the full image, an overview or a mask."""

    index: int
    offset: int
    new_subfile_type: int
    image_width: int
    image_height: int
    tile_width: int
    tile_height: int
    samples_per_pixel: int
    bits_per_sample: tuple[int, ...]
    sample_format: tuple[int, ...]
    dtype: str
    compression: int
    predictor: int
    photometric: int | None
    planar_configuration: int
    #: ``None`` when the file has no ExtraSamples tag (as rasteret 0.4 reports it).
    extra_samples: tuple[int, ...] | None
    tile_offsets: np.ndarray
    tile_byte_counts: np.ndarray
    jpeg_tables: bytes | None = None

    @property
    def is_mask(self) -> bool:
        return bool(self.new_subfile_type & NEW_SUBFILE_MASK)

    @property
    def is_overview(self) -> bool:
        return bool(self.new_subfile_type & NEW_SUBFILE_REDUCED)

    @property
    def tiles_across(self) -> int:
        return -(-self.image_width // self.tile_width)

    @property
    def tiles_down(self) -> int:
        return -(-self.image_height // self.tile_height)

    @property
    def tiles_per_band(self) -> int:
        return self.tiles_across * self.tiles_down

    def band_tiles(self, band_index: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Tile offsets and byte counts that hold ``band_index`` (0-based).

        With PlanarConfiguration=2 each band owns a contiguous block of the tile tables; with
        pixel interleaving (1) every band lives in the same tiles.
        """
        if not 0 <= band_index < self.samples_per_pixel:
            raise IndexError(
                f"band index {band_index} out of range for {self.samples_per_pixel} samples"
            )
        if self.planar_configuration != 2:
            return self.tile_offsets, self.tile_byte_counts
        n = self.tiles_per_band
        window = slice(band_index * n, (band_index + 1) * n)
        return self.tile_offsets[window], self.tile_byte_counts[window]


@dataclass(frozen=True, slots=True)
class GeoInfo:
    """Georeferencing of the full-resolution image, in rasteret's conventions."""

    transform: tuple[float, float, float, float] | None = None
    pixel_scale: tuple[float, ...] | None = None
    tiepoint: tuple[float, ...] | None = None
    model_transformation: tuple[float, ...] | None = None
    epsg: int | None = None
    crs_description: str | None = None
    raster_type: int = 1
    nodata: float | None = None
    geo_keys: dict[int, int | float | str] = field(default_factory=dict)

    @property
    def crs(self) -> str | None:
        """``EPSG:n`` when the header names an EPSG code, else whatever describes the CRS."""
        if self.epsg is not None:
            return f"EPSG:{self.epsg}"
        return self.crs_description


@dataclass(frozen=True, slots=True, eq=False)
class TiffHeader:
    """Everything the header of one TIFF says that a tile reader needs."""

    byte_order: str
    bigtiff: bool
    ifds: tuple[Ifd, ...]
    geo: GeoInfo
    gdal_structural_metadata: dict[str, str] = field(default_factory=dict)

    @property
    def image(self) -> Ifd:
        """The full-resolution image: the first IFD that is neither overview nor mask."""
        for ifd in self.ifds:
            if not ifd.is_mask and not ifd.is_overview:
                return ifd
        return self.ifds[0]

    @property
    def overviews(self) -> tuple[Ifd, ...]:
        image = self.image
        return tuple(i for i in self.ifds if not i.is_mask and i is not image)

    @property
    def masks(self) -> tuple[Ifd, ...]:
        return tuple(i for i in self.ifds if i.is_mask)
