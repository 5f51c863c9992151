"""Sans-I/O TIFF/BigTIFF header parser: bytes in, :class:`TiffHeader` (or missing ranges) out.

Each call to :func:`parse_header` walks the IFD chain as far as the buffer allows and either
returns the full header or every range it is missing at once, so a driver needs one round trip
per "layer" of unknowns — one read in total for a cloud-optimized file whose headers sit at the
front. Bounds on entry counts, IFD counts and array sizes keep hostile files from causing hangs
or huge allocations.
"""

from __future__ import annotations

import functools
import struct
from dataclasses import dataclass

import numpy as np

from rasteret_assets.tiff.buffer import ByteBuffer, NeedBytes, merge_ranges
from rasteret_assets.tiff.errors import (
    CorruptTiffError,
    NotTiffError,
    NotTiledError,
    UnsupportedTiffError,
)
from rasteret_assets.tiff.geo import build_geo_info
from rasteret_assets.tiff.model import (
    NEW_SUBFILE_MASK,
    NEW_SUBFILE_REDUCED,
    GeoInfo,
    Ifd,
    TiffHeader,
)
from rasteret_assets.tiff.tags import (
    FIELD_TYPES,
    UNSIGNED_SCALAR_CODES,
    Describe,
    Tag,
    decode_integers,
    decode_numbers,
    decode_text,
    tag_name,
)

MAX_IFDS = 1024
MAX_ENTRIES = 4096
MAX_TILES = 1 << 24
#: SamplesPerPixel is a SHORT in TIFF 6.0; a larger value (read through a mistyped entry) would
#: make every per-sample tuple a huge allocation.
MAX_SAMPLES = 0xFFFF
#: Only headers with few samples are worth caching, and a bound keeps the cache small.
MAX_CACHED_SAMPLES = 16
MAX_VALUE_BYTES = 256 << 20
COMPRESSION_JPEG = 7

LAYOUT_TAGS = frozenset(
    {
        Tag.NEW_SUBFILE_TYPE,
        Tag.IMAGE_WIDTH,
        Tag.IMAGE_LENGTH,
        Tag.BITS_PER_SAMPLE,
        Tag.COMPRESSION,
        Tag.PHOTOMETRIC,
        Tag.STRIP_OFFSETS,
        Tag.SAMPLES_PER_PIXEL,
        Tag.PLANAR_CONFIGURATION,
        Tag.PREDICTOR,
        Tag.TILE_WIDTH,
        Tag.TILE_LENGTH,
        Tag.TILE_OFFSETS,
        Tag.TILE_BYTE_COUNTS,
        Tag.EXTRA_SAMPLES,
        Tag.SAMPLE_FORMAT,
        Tag.JPEG_TABLES,
    }
)
GEO_TAGS = frozenset(
    {
        Tag.MODEL_PIXEL_SCALE,
        Tag.MODEL_TIEPOINT,
        Tag.MODEL_TRANSFORMATION,
        Tag.GEO_KEY_DIRECTORY,
        Tag.GEO_DOUBLE_PARAMS,
        Tag.GEO_ASCII_PARAMS,
        Tag.GDAL_METADATA,
        Tag.GDAL_NODATA,
    }
)
USED_TAGS = LAYOUT_TAGS | GEO_TAGS
GHOST_PREFIX = b"GDAL_STRUCTURAL_METADATA_SIZE="
MAX_GHOST_GAP = 4096
BIGTIFF_ONLY_TYPES = frozenset({16, 17, 18})


@dataclass(frozen=True, slots=True)
class _Format:
    """Byte order and the sizes that differ between classic TIFF and BigTIFF."""

    order: str
    bigtiff: bool

    @property
    def header_size(self) -> int:
        return 16 if self.bigtiff else 8

    @property
    def count_format(self) -> str:
        return self.order + ("Q" if self.bigtiff else "H")

    @property
    def offset_format(self) -> str:
        return self.order + ("Q" if self.bigtiff else "I")

    @property
    def entry_format(self) -> struct.Struct:
        return struct.Struct(self.order + ("HHQ8s" if self.bigtiff else "HHI4s"))


_SCALAR_STRUCTS = {
    order: {t: struct.Struct(order + code) for t, code in UNSIGNED_SCALAR_CODES.items()}
    for order in "<>"
}


#: Entry tables up to this size get a cached struct; one for thousands of entries takes ~0.5 MiB,
#: so caching the counts of hostile files could pin over 100 MiB.
MAX_CACHED_ENTRIES = 256


@functools.lru_cache(maxsize=256)
def _cached_table_struct(order: str, bigtiff: bool, n_entries: int) -> struct.Struct:
    return struct.Struct(order + ("HHQ8s" if bigtiff else "HHI4s") * n_entries)


def _table_struct(order: str, bigtiff: bool, n_entries: int) -> struct.Struct:
    """Struct for a whole IFD entry table: (tag, type, count, value) per entry."""
    if n_entries <= MAX_CACHED_ENTRIES:
        return _cached_table_struct(order, bigtiff, n_entries)
    return struct.Struct(order + ("HHQ8s" if bigtiff else "HHI4s") * n_entries)


#: One IFD entry as (field type, count, inline value bytes): a plain tuple, built in C.
_Entry = tuple[int, int, bytes]


@dataclass(frozen=True, slots=True)
class _RawIfd:
    """An IFD's entries by tag, values still undecoded."""

    index: int
    offset: int
    entries: dict[int, _Entry]


class _Pass:
    """One parse attempt over the buffer, collecting every range it finds missing."""

    def __init__(self, buffer: ByteBuffer, fmt: _Format) -> None:
        self.buffer = buffer
        self.fmt = fmt
        self.missing: list[tuple[int, int]] = []

    def view(self, offset: int, length: int, what: str) -> memoryview | None:
        data = self.buffer.view(offset, length, what)
        if data is None:
            self.missing.append((offset, length))
        return data

    def walk_ifds(self, first_offset: int) -> list[_RawIfd]:
        """Follow the IFD chain until its end or the first IFD not yet in the buffer."""
        fmt = self.fmt
        count_size = struct.calcsize(fmt.count_format)
        offset_size = struct.calcsize(fmt.offset_format)
        entry_struct = fmt.entry_format
        seen: set[int] = set()
        ifds: list[_RawIfd] = []
        offset = first_offset
        while offset:
            index = len(ifds)
            if offset in seen:
                raise CorruptTiffError(f"IFD loop: IFD {index} points back to offset {offset}")
            if index >= MAX_IFDS:
                raise CorruptTiffError(f"more than {MAX_IFDS} IFDs in the chain")
            if offset < fmt.header_size:
                raise CorruptTiffError(f"IFD {index} offset {offset} overlaps the file header")
            seen.add(offset)
            raw_count = self.view(offset, count_size, f"IFD {index} entry count")
            if raw_count is None:
                break
            (n_entries,) = struct.unpack(fmt.count_format, raw_count)
            if not 0 < n_entries <= MAX_ENTRIES:
                raise CorruptTiffError(
                    f"IFD {index} at offset {offset} declares {n_entries} entries "
                    f"(expected 1..{MAX_ENTRIES})"
                )
            block_size = n_entries * entry_struct.size
            block = self.view(offset + count_size, block_size + offset_size, f"IFD {index} entries")
            if block is None:
                break
            # One C-level unpack of the whole table; later duplicates of a tag win, as in
            # libtiff. Values are decoded only when a used tag is asked for.
            flat = _table_struct(fmt.order, fmt.bigtiff, n_entries).unpack_from(block)
            values = zip(flat[1::4], flat[2::4], flat[3::4], strict=True)
            entries = dict(zip(flat[0::4], values, strict=True))
            ifds.append(_RawIfd(index, offset, entries))
            (offset,) = struct.unpack(fmt.offset_format, block[block_size:])
        return ifds

    def value(self, entry: _Entry, describe: Describe) -> memoryview | None:
        """The raw bytes of an entry's value: inline, or looked up at its offset."""
        field = FIELD_TYPES.get(entry[0])
        if field is None:
            raise CorruptTiffError(f"{describe()} has unknown field type {entry[0]}")
        if entry[0] in BIGTIFF_ONLY_TYPES and not self.fmt.bigtiff:
            raise CorruptTiffError(
                f"{describe()} has BigTIFF-only field type {field[2]} in a classic TIFF"
            )
        size = field[0] * entry[1]
        if size > MAX_VALUE_BYTES:
            raise CorruptTiffError(f"{describe()} claims {size} bytes of values")
        if size <= len(entry[2]):
            return memoryview(entry[2])[:size]
        (offset,) = struct.unpack(self.fmt.offset_format, entry[2])
        data = self.buffer.view(offset, size, describe)
        if data is None:
            self.missing.append((offset, size))
        return data


class _IfdReader:
    """Typed access to the used tags of one IFD within a pass."""

    def __init__(self, parse: _Pass, raw: _RawIfd) -> None:
        self.parse = parse
        self.raw = raw
        self.incomplete = False

    def name(self, tag: int) -> str:
        return f"IFD {self.raw.index} {tag_name(tag)}"

    def has(self, tag: int) -> bool:
        return tag in self.raw.entries

    def count(self, tag: int) -> int:
        return self.raw.entries[tag][1]

    def _raw(self, tag: int) -> tuple[_Entry, memoryview, Describe] | None:
        entry = self.raw.entries.get(tag)
        if entry is None:
            return None

        def describe() -> str:
            return self.name(tag)

        data = self.parse.value(entry, describe)
        if data is None:
            self.incomplete = True
            return None
        return entry, data, describe

    def integers(self, tag: int) -> np.ndarray | None:
        found = self._raw(tag)
        if found is None:
            return None
        entry, data, describe = found
        return decode_integers(entry[0], entry[1], data, self.parse.fmt.order, describe)

    def numbers(self, tag: int) -> np.ndarray | None:
        found = self._raw(tag)
        if found is None:
            return None
        entry, data, describe = found
        return decode_numbers(entry[0], entry[1], data, self.parse.fmt.order, describe)

    def text(self, tag: int) -> str | None:
        found = self._raw(tag)
        return None if found is None else decode_text(found[1])

    def blob(self, tag: int) -> bytes | None:
        found = self._raw(tag)
        return None if found is None else bytes(found[1])

    def scalar(self, tag: int, default: int) -> int:
        """First value of an integer tag (always inline in practice, so read it directly)."""
        entry = self.raw.entries.get(tag)
        if entry is None:
            return default
        code = _SCALAR_STRUCTS[self.parse.fmt.order].get(entry[0])
        if code is not None and entry[1] >= 1 and code.size * entry[1] <= len(entry[2]):
            return code.unpack_from(entry[2])[0]
        values = self.integers(tag)
        if values is None:
            return default
        if len(values) == 0:
            raise CorruptTiffError(f"{self.name(tag)} has no value")
        return int(values[0])

    def per_sample(self, tag: int, samples: int, default: int) -> tuple[int, ...]:
        """A per-sample tag, given once for all samples or once per sample."""
        entry = self.raw.entries.get(tag)
        if entry is None:
            return (default,) * samples
        if entry[1] == 1:
            return (self.scalar(tag, default),) * samples
        values = self.integers(tag)
        if values is None:
            return (default,) * samples
        if len(values) < samples:
            raise CorruptTiffError(
                f"{self.name(tag)} has {len(values)} values for {samples} samples"
            )
        return tuple(int(v) for v in values[:samples])


def _dtype_name(bits: tuple[int, ...], formats: tuple[int, ...], where: str) -> str:
    """numpy dtype name; integer depths round up to the next byte size (12 bits -> uint16)."""
    name = _DTYPES.get((bits, formats))
    if name is None:
        name = _dtype_name_uncached(bits, formats, where)
        if len(_DTYPES) < 1024 and len(bits) <= MAX_CACHED_SAMPLES:
            _DTYPES[(bits, formats)] = name
    return name


_DTYPES: dict[tuple[tuple[int, ...], tuple[int, ...]], str] = {}


def _dtype_name_uncached(bits: tuple[int, ...], formats: tuple[int, ...], where: str) -> str:
    if len(set(bits)) != 1 or len(set(formats)) != 1:
        raise UnsupportedTiffError(f"{where} mixes sample depths/formats {bits}/{formats}")
    depth, sample_format = bits[0], formats[0]
    if depth <= 0:
        raise CorruptTiffError(f"{where} has BitsPerSample {depth}")
    if sample_format in (1, 2, 4):
        rounded = next((size for size in (8, 16, 32, 64) if depth <= size), None)
        if rounded is None:
            raise UnsupportedTiffError(f"{where} has {depth}-bit integer samples")
        return f"{'int' if sample_format == 2 else 'uint'}{rounded}"
    if sample_format == 3 and depth in (16, 32, 64):
        return f"float{depth}"
    if sample_format == 6 and depth in (64, 128):
        return f"complex{depth}"
    raise UnsupportedTiffError(f"{where} has SampleFormat {sample_format} with {depth} bits")


def _build_ifd(reader: _IfdReader) -> Ifd | None:
    """Turn one raw IFD into an :class:`Ifd`, or ``None`` if some of its values are missing."""
    raw = reader.raw
    where = f"IFD {raw.index}"
    if not (reader.has(Tag.TILE_WIDTH) and reader.has(Tag.TILE_OFFSETS)):
        layout = "striped (StripOffsets)" if reader.has(Tag.STRIP_OFFSETS) else "untiled"
        raise NotTiledError(f"{where} is {layout}: no TileWidth/TileOffsets tags")
    for required in (Tag.IMAGE_WIDTH, Tag.IMAGE_LENGTH, Tag.TILE_LENGTH, Tag.TILE_BYTE_COUNTS):
        if not reader.has(required):
            raise CorruptTiffError(f"{where} lacks required tag {tag_name(required)}")

    width = reader.scalar(Tag.IMAGE_WIDTH, 0)
    height = reader.scalar(Tag.IMAGE_LENGTH, 0)
    tile_width = reader.scalar(Tag.TILE_WIDTH, 0)
    tile_height = reader.scalar(Tag.TILE_LENGTH, 0)
    samples = reader.scalar(Tag.SAMPLES_PER_PIXEL, 1)
    planar = reader.scalar(Tag.PLANAR_CONFIGURATION, 1)
    if reader.incomplete:  # an out-of-line value is still missing: judge nothing yet
        return None
    if min(width, height, tile_width, tile_height) <= 0:
        raise CorruptTiffError(
            f"{where} has size {width}x{height} with tiles {tile_width}x{tile_height}"
        )
    if not 0 < samples <= MAX_SAMPLES:
        raise CorruptTiffError(f"{where} has SamplesPerPixel {samples} (expected 1..{MAX_SAMPLES})")
    if planar not in (1, 2):
        raise CorruptTiffError(f"{where} has PlanarConfiguration {planar}")
    bits = reader.per_sample(Tag.BITS_PER_SAMPLE, samples, 1)
    formats = reader.per_sample(Tag.SAMPLE_FORMAT, samples, 1)
    compression = reader.scalar(Tag.COMPRESSION, 1)
    if reader.incomplete:
        return None

    tiles_per_band = -(-width // tile_width) * -(-height // tile_height)
    expected_tiles = tiles_per_band * (samples if planar == 2 else 1)
    if expected_tiles > MAX_TILES:
        raise CorruptTiffError(f"{where} would need {expected_tiles} tiles (limit {MAX_TILES})")
    for table in (Tag.TILE_OFFSETS, Tag.TILE_BYTE_COUNTS):
        if reader.count(table) != expected_tiles:
            raise CorruptTiffError(
                f"{reader.name(table)} has {reader.count(table)} entries, "
                f"expected {expected_tiles} for {width}x{height} in {tile_width}x{tile_height} "
                f"tiles"
            )

    offsets = reader.integers(Tag.TILE_OFFSETS)
    byte_counts = reader.integers(Tag.TILE_BYTE_COUNTS)
    extra = reader.integers(Tag.EXTRA_SAMPLES) if reader.has(Tag.EXTRA_SAMPLES) else None
    jpeg_tables = (
        reader.blob(Tag.JPEG_TABLES)
        if compression == COMPRESSION_JPEG and reader.has(Tag.JPEG_TABLES)
        else None
    )
    subfile_type = reader.scalar(Tag.NEW_SUBFILE_TYPE, 0)
    predictor = reader.scalar(Tag.PREDICTOR, 1)
    photometric = reader.scalar(Tag.PHOTOMETRIC, -1) if reader.has(Tag.PHOTOMETRIC) else None
    if reader.incomplete or offsets is None or byte_counts is None:
        return None
    return Ifd(
        index=raw.index,
        offset=raw.offset,
        new_subfile_type=subfile_type,
        image_width=width,
        image_height=height,
        tile_width=tile_width,
        tile_height=tile_height,
        samples_per_pixel=samples,
        bits_per_sample=bits,
        sample_format=formats,
        dtype=_dtype_name(bits, formats, where),
        compression=compression,
        predictor=predictor,
        photometric=photometric,
        planar_configuration=planar,
        extra_samples=None if extra is None else tuple(int(v) for v in extra),
        tile_offsets=offsets.astype(np.uint64),
        tile_byte_counts=byte_counts.astype(np.uint64),
        jpeg_tables=jpeg_tables,
    )


def _build_geo(reader: _IfdReader) -> GeoInfo | None:
    """Georeferencing from the primary IFD, or ``None`` if some of its values are missing."""
    tags = {
        "geo_key_directory": reader.integers(Tag.GEO_KEY_DIRECTORY),
        "geo_doubles": reader.numbers(Tag.GEO_DOUBLE_PARAMS),
        "geo_ascii": reader.text(Tag.GEO_ASCII_PARAMS),
        "pixel_scale": reader.numbers(Tag.MODEL_PIXEL_SCALE),
        "tiepoint": reader.numbers(Tag.MODEL_TIEPOINT),
        "model_transformation": reader.numbers(Tag.MODEL_TRANSFORMATION),
        "gdal_nodata": reader.text(Tag.GDAL_NODATA),
        "gdal_metadata": reader.text(Tag.GDAL_METADATA),
    }
    if reader.incomplete:
        return None
    return build_geo_info(**tags)


def _read_format(buffer: ByteBuffer) -> tuple[_Format, int] | NeedBytes:
    """Byte order, classic/BigTIFF and the first IFD offset from the file header."""
    if buffer.file_size is not None and buffer.file_size < 8:
        raise NotTiffError(f"{buffer.file_size} bytes is too short to be a TIFF file")
    head = buffer.view(0, 8, "the TIFF header")
    if head is None:
        return NeedBytes(((0, 16),))
    order = {b"II": "<", b"MM": ">"}.get(bytes(head[:2]))
    if order is None:
        raise NotTiffError(f"file starts with {bytes(head[:4])!r}, not a TIFF byte-order mark")
    (version,) = struct.unpack_from(order + "H", head, 2)
    if version == 42:
        return _Format(order, bigtiff=False), struct.unpack_from(order + "I", head, 4)[0]
    if version != 43:
        raise NotTiffError(f"TIFF version {version}, expected 42 (TIFF) or 43 (BigTIFF)")
    big_head = buffer.view(0, 16, "the BigTIFF header")
    if big_head is None:
        return NeedBytes(((0, 16),))
    offset_size, reserved, first = struct.unpack_from(order + "HHQ", big_head, 4)
    if offset_size != 8 or reserved != 0:
        raise UnsupportedTiffError(f"BigTIFF with offset size {offset_size}, expected 8")
    return _Format(order, bigtiff=True), first


def _ghost_header(parse: _Pass, first_offset: int) -> dict[str, str]:
    """GDAL's structural metadata, which sits between the file header and IFD0.

    When IFD0 follows closely (the COG layout), the gap is part of the header and is asked
    for like any other range; a far-away IFD0 (a file written IFD-last) is only checked when
    its leading bytes happen to be in the buffer already.
    """
    start = parse.fmt.header_size
    gap = first_offset - start
    if gap < len(GHOST_PREFIX) + 6:
        return {}
    what = "GDAL structural metadata"
    size_line = len(GHOST_PREFIX) + len("000000 bytes\n")
    view = parse.view if gap <= MAX_GHOST_GAP else parse.buffer.view
    head = view(start, min(size_line, gap), what)
    if head is None or bytes(head[: len(GHOST_PREFIX)]) != GHOST_PREFIX:
        return {}
    digits = bytes(head[len(GHOST_PREFIX) : len(GHOST_PREFIX) + 6]).decode("ascii", "replace")
    if not digits.isdigit():
        return {}
    body = view(start + len(head), min(int(digits), gap - len(head)), what)
    if body is None:
        return {}
    lines = bytes(body).decode("ascii", errors="replace").splitlines()
    pairs = (line.split("=", 1) for line in lines if "=" in line)
    return {key.strip(): value.strip() for key, value in pairs}


def parse_header(buffer: ByteBuffer) -> TiffHeader | NeedBytes:
    """Parse all IFDs the buffer holds; return the header or the ranges still missing."""
    found = _read_format(buffer)
    if isinstance(found, NeedBytes):
        return found
    fmt, first_offset = found
    if first_offset == 0:
        raise CorruptTiffError("the file header points at no IFD (offset 0)")
    parse = _Pass(buffer, fmt)
    raws = parse.walk_ifds(first_offset)
    ifds = [_build_ifd(_IfdReader(parse, raw)) for raw in raws]
    primary = next(
        (
            raw
            for raw in raws
            if not _IfdReader(parse, raw).scalar(Tag.NEW_SUBFILE_TYPE, 0)
            & (NEW_SUBFILE_REDUCED | NEW_SUBFILE_MASK)
        ),
        raws[0] if raws else None,
    )
    geo = _build_geo(_IfdReader(parse, primary)) if primary is not None else None
    ghost = _ghost_header(parse, first_offset)
    if parse.missing:
        return NeedBytes(merge_ranges(parse.missing))
    if not raws:
        raise CorruptTiffError("no IFD could be read")
    return TiffHeader(
        byte_order=fmt.order,
        bigtiff=fmt.bigtiff,
        ifds=tuple(ifd for ifd in ifds if ifd is not None),
        geo=geo if geo is not None else GeoInfo(),
        gdal_structural_metadata=ghost,
    )


def parse_tiff_bytes(data: bytes) -> TiffHeader:
    """Parse a header from the complete bytes of a file."""
    result = parse_header(ByteBuffer.from_bytes(data, complete=True))
    if isinstance(result, NeedBytes):
        raise CorruptTiffError(f"header incomplete although the whole file was given: {result}")
    return result
