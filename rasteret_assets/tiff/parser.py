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
import threading
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
    PAIRED_TYPES,
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
    def offset_format(self) -> str:
        return self.order + ("Q" if self.bigtiff else "I")


#: (entry count, next-IFD offset, size of one entry) per (byte order, BigTIFF).
_WALK_STRUCTS = {
    (order, bigtiff): (
        struct.Struct(order + ("Q" if bigtiff else "H")),
        struct.Struct(order + ("Q" if bigtiff else "I")),
        20 if bigtiff else 12,
    )
    for order in "<>"
    for bigtiff in (False, True)
}
_INLINE_SCALARS = {
    (order, bigtiff): {
        field_type: ((8 if bigtiff else 4) // unpack.size, unpack.unpack_from)
        for field_type, code in UNSIGNED_SCALAR_CODES.items()
        if (unpack := struct.Struct(order + code)).size <= (8 if bigtiff else 4)
    }
    for order in "<>"
    for bigtiff in (False, True)
}

#: field type -> numpy dtype per byte order, for the types that decode as one number per value
#: (every numeric type but the rationals and COMPLEX): these need no checks beyond the value's.
_PLAIN_DTYPES = {
    order: {
        field_type: np.dtype(order + code)
        for field_type, (_, code, _) in FIELD_TYPES.items()
        if code is not None and field_type not in PAIRED_TYPES
    }
    for order in "<>"
}
_UNSIGNED_DTYPES = {
    order: {field_type: dtypes[field_type] for field_type in UNSIGNED_SCALAR_CODES}
    for order, dtypes in _PLAIN_DTYPES.items()
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


class _RawIfd:
    """One IFD of the chain: its entry table, decoded unless a plan already says it all.

    ``key`` identifies the entry table (byte order, BigTIFF, the table's bytes): an IFD whose
    table was planned before (:class:`_Plan`) needs its entries only for georeferencing
    (:meth:`with_entries`).
    """

    __slots__ = ("block", "entries", "fmt", "index", "key", "n_entries", "offset", "plan")

    def __init__(
        self, index: int, offset: int, block: memoryview, n_entries: int, fmt: _Format
    ) -> None:
        self.index = index
        self.offset = offset
        self.block = block
        self.n_entries = n_entries
        self.fmt = fmt
        planned = n_entries <= MAX_PLANNED_ENTRIES
        self.key = (fmt.order, fmt.bigtiff, bytes(block)) if planned else None
        self.plan = None if self.key is None else _PLANS.get(self.key)
        self.entries: dict[int, _Entry] = {} if self.plan is not None else self._decode()

    def with_entries(self) -> _RawIfd:
        """This IFD with its entries decoded (a planned one skipped them)."""
        if self.plan is not None and not self.entries:
            self.entries = self._decode()
        return self

    def _decode(self) -> dict[int, _Entry]:
        """Entries by tag, from one C-level unpack of the table; later duplicates of a tag
        win, as in libtiff."""
        flat = _table_struct(self.fmt.order, self.fmt.bigtiff, self.n_entries).unpack_from(
            self.block
        )
        values = zip(flat[1::4], flat[2::4], flat[3::4], strict=False)
        return dict(zip(flat[0::4], values, strict=False))


class _Plan:
    """What an entry table says about its IFD, less the tile tables: judged once per table.

    A collection's files of one band and size are written alike, so their IFDs have
    byte-identical entry tables except where a value lies in the table itself (a one-tile
    level's offset). Only tables whose every used value but the tile tables is inline get a
    plan, so a plan depends on the table's bytes alone and the tile tables are read per file.
    """

    __slots__ = ("byte_counts", "fields", "offsets")

    def __init__(self, fields: tuple, offsets: _Entry, byte_counts: _Entry) -> None:
        self.fields = fields
        self.offsets = offsets
        self.byte_counts = byte_counts


#: Entry tables planned at most (FIFO): a few per band and overview level of a collection.
MAX_PLANS = 512
#: Tables longer than this are not planned (their keys would pin memory; none are common).
MAX_PLANNED_ENTRIES = 64
_PLANS: dict[tuple[str, bool, bytes], _Plan] = {}
_TILE_TABLES = frozenset({Tag.TILE_OFFSETS, Tag.TILE_BYTE_COUNTS})


_plans_lock = threading.Lock()


def _remember(key: tuple[str, bool, bytes], plan: _Plan) -> None:
    """Keep ``plan``, dropping the oldest beyond :data:`MAX_PLANS` (parsers in several
    threads may add at once; looking plans up needs no lock)."""
    with _plans_lock:
        if len(_PLANS) >= MAX_PLANS:
            del _PLANS[next(iter(_PLANS))]
        _PLANS[key] = plan


class _Pass:
    """One parse attempt over the buffer, collecting every range it finds missing.

    A value that is not in the buffer yet adds to :attr:`missing` and reads as ``None`` (or as
    its default); callers compare ``len(missing)`` to tell whether what they read is complete.
    """

    def __init__(self, buffer: ByteBuffer, fmt: _Format) -> None:
        self.buffer = buffer
        self.fmt = fmt
        self.order = fmt.order
        self.missing: list[tuple[int, int]] = []
        #: Tags whose values were looked up outside their entry, in order (plans need none).
        self.outside: list[int] = []
        #: field type -> (most values held inline, unpack of the first) for integer types.
        self.inline = _INLINE_SCALARS[fmt.order, fmt.bigtiff]
        self.offset = _WALK_STRUCTS[fmt.order, fmt.bigtiff][1]
        self.plain = _PLAIN_DTYPES[fmt.order]
        self.unsigned = _UNSIGNED_DTYPES[fmt.order]

    def view(self, offset: int, length: int, what: str | Describe) -> memoryview | None:
        data = self.buffer.view(offset, length, what)
        if data is None:
            self.missing.append((offset, length))
        return data

    def walk_ifds(self, first_offset: int) -> list[_RawIfd]:
        """Follow the IFD chain until its end or the first IFD not yet in the buffer."""
        fmt = self.fmt
        count_struct, offset_struct, entry_size = _WALK_STRUCTS[fmt.order, fmt.bigtiff]
        count_size, offset_size = count_struct.size, offset_struct.size
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
            raw_count = self.view(offset, count_size, lambda i=index: f"IFD {i} entry count")
            if raw_count is None:
                break
            (n_entries,) = count_struct.unpack(raw_count)
            if not 0 < n_entries <= MAX_ENTRIES:
                raise CorruptTiffError(
                    f"IFD {index} at offset {offset} declares {n_entries} entries "
                    f"(expected 1..{MAX_ENTRIES})"
                )
            block_size = n_entries * entry_size
            block = self.view(
                offset + count_size, block_size + offset_size, lambda i=index: f"IFD {i} entries"
            )
            if block is None:
                break
            ifds.append(_RawIfd(index, offset, block[:block_size], n_entries, fmt))
            (offset,) = offset_struct.unpack_from(block, block_size)
        return ifds

    def value(self, raw: _RawIfd, tag: int, entry: _Entry) -> memoryview | None:
        """The raw bytes of an entry's value: inline, or looked up at its offset."""
        field_type, count, inline = entry
        field = FIELD_TYPES.get(field_type)
        if field is None:
            raise CorruptTiffError(f"{_name(raw, tag)} has unknown field type {field_type}")
        if field_type in BIGTIFF_ONLY_TYPES and not self.fmt.bigtiff:
            raise CorruptTiffError(
                f"{_name(raw, tag)} has BigTIFF-only field type {field[2]} in a classic TIFF"
            )
        size = field[0] * count
        if size > MAX_VALUE_BYTES:
            raise CorruptTiffError(f"{_name(raw, tag)} claims {size} bytes of values")
        if size <= len(inline):
            return memoryview(inline)[:size]
        self.outside.append(tag)
        (offset,) = self.offset.unpack(inline)
        data = self.buffer.view(offset, size, lambda: _name(raw, tag))
        if data is None:
            self.missing.append((offset, size))
        return data

    def integers(self, raw: _RawIfd, tag: int) -> np.ndarray | None:
        """An integer tag's values; ``None`` when absent or not in the buffer yet."""
        entry = raw.entries.get(tag)
        return None if entry is None else self.entry_integers(raw, tag, entry)

    def entry_integers(self, raw: _RawIfd, tag: int, entry: _Entry) -> np.ndarray | None:
        """:meth:`integers` of an entry at hand; ``None`` when not in the buffer yet."""
        data = self.value(raw, tag, entry)
        if data is None:
            return None
        # Unsigned types cannot fail decoding: skip tags.py's checks for the common case.
        dtype = self.unsigned.get(entry[0])
        if dtype is not None:
            return np.frombuffer(data, dtype)
        return decode_integers(entry[0], entry[1], data, self.order, lambda: _name(raw, tag))

    def numbers(self, raw: _RawIfd, tag: int) -> np.ndarray | None:
        """A numeric tag's values (rationals as quotients); ``None`` when absent or missing."""
        entry = raw.entries.get(tag)
        if entry is None:
            return None
        data = self.value(raw, tag, entry)
        if data is None:
            return None
        dtype = self.plain.get(entry[0])
        if dtype is not None:
            return np.frombuffer(data, dtype)
        return decode_numbers(entry[0], entry[1], data, self.order, lambda: _name(raw, tag))

    def text(self, raw: _RawIfd, tag: int) -> str | None:
        entry = raw.entries.get(tag)
        if entry is None:
            return None
        data = self.value(raw, tag, entry)
        return None if data is None else decode_text(data)

    def blob(self, raw: _RawIfd, tag: int) -> bytes | None:
        entry = raw.entries.get(tag)
        if entry is None:
            return None
        data = self.value(raw, tag, entry)
        return None if data is None else bytes(data)

    def scalar(self, raw: _RawIfd, tag: int, default: int) -> int:
        """First value of an integer tag (always inline in practice, so read it directly)."""
        entry = raw.entries.get(tag)
        if entry is None:
            return default
        inline = self.inline.get(entry[0])
        if inline is not None and 1 <= entry[1] <= inline[0]:
            return inline[1](entry[2])[0]
        values = self.integers(raw, tag)
        if values is None:
            return default
        if len(values) == 0:
            raise CorruptTiffError(f"{_name(raw, tag)} has no value")
        return int(values[0])

    def scalars(self, raw: _RawIfd, wanted: tuple[tuple[int, int], ...]) -> list[int]:
        """:meth:`scalar` of each ``(tag, default)``, in one loop (this runs per IFD)."""
        entries, inline = raw.entries, self.inline
        found = []
        for tag, default in wanted:
            entry = entries.get(tag)
            if entry is None:
                found.append(default)
                continue
            fast = inline.get(entry[0])
            if fast is not None and 1 <= entry[1] <= fast[0]:
                found.append(fast[1](entry[2])[0])
            else:
                found.append(self.scalar(raw, tag, default))
        return found

    def per_sample(self, raw: _RawIfd, tag: int, samples: int, default: int) -> tuple[int, ...]:
        """A per-sample tag, given once for all samples or once per sample."""
        entry = raw.entries.get(tag)
        if entry is None:
            return (default,) * samples
        if entry[1] == 1:
            return (self.scalar(raw, tag, default),) * samples
        values = self.integers(raw, tag)
        if values is None:
            return (default,) * samples
        if len(values) < samples:
            raise CorruptTiffError(
                f"{_name(raw, tag)} has {len(values)} values for {samples} samples"
            )
        return tuple(values[:samples].tolist())


def _name(raw: _RawIfd, tag: int) -> str:
    """``IFD n NAME (tag N)``: built only for an error message."""
    return f"IFD {raw.index} {tag_name(tag)}"


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


#: The scalar tags of an IFD with their defaults, read in one :meth:`_Pass.scalars` call.
_IFD_SCALARS = (
    (Tag.IMAGE_WIDTH, 0),
    (Tag.IMAGE_LENGTH, 0),
    (Tag.TILE_WIDTH, 0),
    (Tag.TILE_LENGTH, 0),
    (Tag.SAMPLES_PER_PIXEL, 1),
    (Tag.PLANAR_CONFIGURATION, 1),
    (Tag.COMPRESSION, 1),
    (Tag.NEW_SUBFILE_TYPE, 0),
    (Tag.PREDICTOR, 1),
)


_REQUIRED_TAGS = frozenset(
    {
        Tag.TILE_WIDTH,
        Tag.TILE_OFFSETS,
        Tag.IMAGE_WIDTH,
        Tag.IMAGE_LENGTH,
        Tag.TILE_LENGTH,
        Tag.TILE_BYTE_COUNTS,
    }
)


def _build_ifd(parse: _Pass, raw: _RawIfd) -> Ifd | None:
    """Turn one raw IFD into an :class:`Ifd`, or ``None`` if some of its values are missing."""
    if raw.plan is not None:
        return _planned_ifd(parse, raw, raw.plan)
    outside = len(parse.outside)
    entries = raw.entries
    if not _REQUIRED_TAGS.issubset(entries):
        where = f"IFD {raw.index}"
        if Tag.TILE_WIDTH not in entries or Tag.TILE_OFFSETS not in entries:
            layout = "striped (StripOffsets)" if Tag.STRIP_OFFSETS in entries else "untiled"
            raise NotTiledError(f"{where} is {layout}: no TileWidth/TileOffsets tags")
        missing = min(_REQUIRED_TAGS.difference(entries))
        raise CorruptTiffError(f"{where} lacks required tag {tag_name(missing)}")

    complete = len(parse.missing)  # more missing ranges later: a value of this IFD is absent
    (
        width,
        height,
        tile_width,
        tile_height,
        samples,
        planar,
        compression,
        subfile_type,
        predictor,
    ) = parse.scalars(raw, _IFD_SCALARS)
    if len(parse.missing) > complete:  # an out-of-line value is still missing: judge nothing yet
        return None
    _check_layout(raw, width, height, tile_width, tile_height, samples, planar)
    bits = parse.per_sample(raw, Tag.BITS_PER_SAMPLE, samples, 1)
    formats = parse.per_sample(raw, Tag.SAMPLE_FORMAT, samples, 1)
    if len(parse.missing) > complete:
        return None

    tiles_per_band = -(-width // tile_width) * -(-height // tile_height)
    expected_tiles = tiles_per_band * (samples if planar == 2 else 1)
    if expected_tiles > MAX_TILES:
        raise CorruptTiffError(
            f"IFD {raw.index} would need {expected_tiles} tiles (limit {MAX_TILES})"
        )
    for table in (Tag.TILE_OFFSETS, Tag.TILE_BYTE_COUNTS):
        if entries[table][1] != expected_tiles:
            raise CorruptTiffError(
                f"{_name(raw, table)} has {entries[table][1]} entries, "
                f"expected {expected_tiles} for {width}x{height} in {tile_width}x{tile_height} "
                f"tiles"
            )

    offsets = parse.integers(raw, Tag.TILE_OFFSETS)
    byte_counts = parse.integers(raw, Tag.TILE_BYTE_COUNTS)
    extra = parse.integers(raw, Tag.EXTRA_SAMPLES) if Tag.EXTRA_SAMPLES in entries else None
    jpeg_tables = (
        parse.blob(raw, Tag.JPEG_TABLES)
        if compression == COMPRESSION_JPEG and Tag.JPEG_TABLES in entries
        else None
    )
    photometric = parse.scalar(raw, Tag.PHOTOMETRIC, -1) if Tag.PHOTOMETRIC in entries else None
    if len(parse.missing) > complete or offsets is None or byte_counts is None:
        return None
    fields = (
        subfile_type,
        width,
        height,
        tile_width,
        tile_height,
        samples,
        bits,
        formats,
        _dtype_name(bits, formats, f"IFD {raw.index}"),
        compression,
        predictor,
        photometric,
        planar,
        None if extra is None else tuple(extra.tolist()),
    )
    if (
        raw.key is not None
        and jpeg_tables is None
        and _TILE_TABLES.issuperset(parse.outside[outside:])
    ):
        plan = _Plan(fields, entries[Tag.TILE_OFFSETS], entries[Tag.TILE_BYTE_COUNTS])
        _remember(raw.key, plan)
    return Ifd(
        raw.index,
        raw.offset,
        *fields,
        offsets.astype(np.uint64),
        byte_counts.astype(np.uint64),
        jpeg_tables,
    )


def _planned_ifd(parse: _Pass, raw: _RawIfd, plan: _Plan) -> Ifd | None:
    """An IFD whose entry table was judged before: only its tile tables are read."""
    complete = len(parse.missing)
    offsets = parse.entry_integers(raw, Tag.TILE_OFFSETS, plan.offsets)
    byte_counts = parse.entry_integers(raw, Tag.TILE_BYTE_COUNTS, plan.byte_counts)
    if len(parse.missing) > complete or offsets is None or byte_counts is None:
        return None
    return Ifd(
        raw.index,
        raw.offset,
        *plan.fields,
        offsets.astype(np.uint64),
        byte_counts.astype(np.uint64),
        None,
    )


def _check_layout(
    raw: _RawIfd,
    width: int,
    height: int,
    tile_width: int,
    tile_height: int,
    samples: int,
    planar: int,
) -> None:
    """Refuse image and tile sizes, sample counts and planar layouts that make no sense."""
    where = f"IFD {raw.index}"
    if min(width, height, tile_width, tile_height) <= 0:
        raise CorruptTiffError(
            f"{where} has size {width}x{height} with tiles {tile_width}x{tile_height}"
        )
    if not 0 < samples <= MAX_SAMPLES:
        raise CorruptTiffError(f"{where} has SamplesPerPixel {samples} (expected 1..{MAX_SAMPLES})")
    if planar not in (1, 2):
        raise CorruptTiffError(f"{where} has PlanarConfiguration {planar}")


def _build_geo(parse: _Pass, raw: _RawIfd) -> GeoInfo | None:
    """Georeferencing from the primary IFD, or ``None`` if some of its values are missing."""
    complete = len(parse.missing)
    tags = {
        "geo_key_directory": parse.integers(raw, Tag.GEO_KEY_DIRECTORY),
        "geo_doubles": parse.numbers(raw, Tag.GEO_DOUBLE_PARAMS),
        "geo_ascii": parse.text(raw, Tag.GEO_ASCII_PARAMS),
        "pixel_scale": parse.numbers(raw, Tag.MODEL_PIXEL_SCALE),
        "tiepoint": parse.numbers(raw, Tag.MODEL_TIEPOINT),
        "model_transformation": parse.numbers(raw, Tag.MODEL_TRANSFORMATION),
        "gdal_nodata": parse.text(raw, Tag.GDAL_NODATA),
        "gdal_metadata": parse.text(raw, Tag.GDAL_METADATA),
    }
    if len(parse.missing) > complete:
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
    body = bytes(body)
    # One GDAL version writes the same few bodies: split them once, not per file (only small
    # ones are cached, so a hostile file cannot pin much memory).
    pairs = _cached_ghost_pairs(body) if len(body) <= MAX_GHOST_GAP else _ghost_pairs(body)
    return dict(pairs)


def _ghost_pairs(body: bytes) -> tuple[tuple[str, str], ...]:
    """The ``KEY=VALUE`` lines of a ghost header."""
    lines = body.decode("ascii", errors="replace").splitlines()
    pairs = (line.split("=", 1) for line in lines if "=" in line)
    return tuple((key.strip(), value.strip()) for key, value in pairs)


_cached_ghost_pairs = functools.lru_cache(maxsize=64)(_ghost_pairs)


def _subfile_type(parse: _Pass, raw: _RawIfd) -> int:
    return (
        raw.plan.fields[0] if raw.plan is not None else parse.scalar(raw, Tag.NEW_SUBFILE_TYPE, 0)
    )


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
    ifds = [_build_ifd(parse, raw) for raw in raws]
    primary = next(
        (
            raw
            for raw in raws
            if not _subfile_type(parse, raw) & (NEW_SUBFILE_REDUCED | NEW_SUBFILE_MASK)
        ),
        raws[0] if raws else None,
    )
    geo = _build_geo(parse, primary.with_entries()) if primary is not None else None
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
