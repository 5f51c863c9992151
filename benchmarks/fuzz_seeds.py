"""Seeds for the header fuzzer: real TIFF headers plus a map of where their structures sit.

The map (IFD tables, entries, out-of-line values, next-IFD pointers) is found by a small walker
of its own, independent of the parser under test, so that mutations can aim at the fields a
parser trusts. Every seed is also re-laid out in the other byte order and the other TIFF flavour
(classic/BigTIFF), which turns each real header into four structurally different ones.
"""

from __future__ import annotations

import bisect
import random
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: TIFF field type -> (bytes per value, bytes per byte-swapped component).
FIELD_SIZES: dict[int, tuple[int, int]] = {
    1: (1, 1),
    2: (1, 1),
    3: (2, 2),
    4: (4, 4),
    5: (8, 4),
    6: (1, 1),
    7: (1, 1),
    8: (2, 2),
    9: (4, 4),
    10: (8, 4),
    11: (4, 4),
    12: (8, 8),
    13: (4, 4),
    14: (2, 2),
    15: (8, 4),
    16: (8, 8),
    17: (8, 8),
    18: (8, 8),
}
#: BigTIFF-only 64-bit types and the classic type that holds the same values when they fit.
NARROWER_TYPE = {16: 4, 17: 9, 18: 13}
MAX_WALK_IFDS = 1024
MAX_VALUE_BYTES = 4 << 20
GHOST_PREFIX = b"GDAL_STRUCTURAL_METADATA_SIZE="


@dataclass(frozen=True, slots=True)
class Entry:
    """One IFD entry: where it sits and where its value bytes are."""

    pos: int
    tag: int
    field_type: int
    count: int
    value_pos: int  # first byte of the value bytes (inline or out of line)
    value_size: int
    inline: bool


@dataclass(frozen=True, slots=True)
class IfdMap:
    offset: int
    entries: tuple[Entry, ...]
    next_pos: int  # position of the next-IFD pointer


@dataclass(frozen=True, slots=True)
class TiffMap:
    """Where a TIFF's header structures are, as found by :func:`map_tiff`."""

    order: str
    bigtiff: bool
    ifds: tuple[IfdMap, ...]

    @property
    def header_size(self) -> int:
        return 16 if self.bigtiff else 8

    @property
    def entry_size(self) -> int:
        return 20 if self.bigtiff else 12

    @property
    def offset_format(self) -> str:
        return self.order + ("Q" if self.bigtiff else "I")

    @property
    def count_format(self) -> str:
        """Format of an entry's value count (not of an IFD's entry count)."""
        return self.order + ("Q" if self.bigtiff else "I")

    @property
    def ifd_count_format(self) -> str:
        return self.order + ("Q" if self.bigtiff else "H")

    def regions(self) -> list[tuple[int, int]]:
        """(start, end) of every byte a header parse may look at: header, tables, values."""
        spans = [(0, self.header_size)]
        for ifd in self.ifds:
            spans.append((ifd.offset, ifd.next_pos + (8 if self.bigtiff else 4)))
            spans.extend(
                (e.value_pos, e.value_pos + e.value_size) for e in ifd.entries if not e.inline
            )
        return spans


class Seed:
    """One header to mutate: its bytes, its structure map and the bytes a parse touches."""

    def __init__(self, name: str, data: bytes, layout: TiffMap) -> None:
        self.name = name
        self.data = data
        self.layout = layout
        self.entries = tuple(entry for ifd in layout.ifds for entry in ifd.entries)
        self.ifd_offsets = tuple(ifd.offset for ifd in layout.ifds)
        hot = [(start, min(end, len(data))) for start, end in layout.regions() if start < len(data)]
        self._hot_starts = [start for start, _ in hot]
        self._hot_cumulative = np.cumsum([end - start for start, end in hot]).tolist()
        self._hot_total = self._hot_cumulative[-1]

    def __repr__(self) -> str:
        return f"Seed({self.name!r}, {len(self.data)} bytes)"

    def hot_position(self, rng: random.Random) -> int:
        """A uniformly drawn byte among those a header parse reads."""
        pick = rng.randrange(self._hot_total)
        index = bisect.bisect_right(self._hot_cumulative, pick)
        before = self._hot_cumulative[index - 1] if index else 0
        return self._hot_starts[index] + pick - before


def map_tiff(data: bytes) -> TiffMap | None:
    """Walk a well-formed TIFF's IFD chain; ``None`` when the bytes are not one."""
    order = {b"II": "<", b"MM": ">"}.get(data[:2])
    if order is None or len(data) < 16:
        return None
    (version,) = struct.unpack_from(order + "H", data, 2)
    if version not in (42, 43):
        return None
    bigtiff = version == 43
    layout = TiffMap(order, bigtiff, ())
    offset = struct.unpack_from(layout.offset_format, data, 8 if bigtiff else 4)[0]
    entry_format = struct.Struct(order + ("HHQ" if bigtiff else "HHI"))
    inline_size = 8 if bigtiff else 4
    count_size = 8 if bigtiff else 2
    ifds: list[IfdMap] = []
    while offset and len(ifds) < MAX_WALK_IFDS and offset + count_size <= len(data):
        if any(ifd.offset == offset for ifd in ifds):
            break
        (n_entries,) = struct.unpack_from(layout.ifd_count_format, data, offset)
        next_pos = offset + count_size + n_entries * layout.entry_size
        if next_pos + inline_size > len(data):
            break
        entries = []
        for index in range(n_entries):
            pos = offset + count_size + index * layout.entry_size
            tag, field_type, count = entry_format.unpack_from(data, pos)
            value_size = FIELD_SIZES.get(field_type, (1, 1))[0] * count
            inline = value_size <= inline_size
            value_pos = pos + 4 + (8 if bigtiff else 4)
            if not inline:
                value_pos = struct.unpack_from(layout.offset_format, data, value_pos)[0]
            entries.append(Entry(pos, tag, field_type, count, value_pos, value_size, inline))
        ifds.append(IfdMap(offset, tuple(entries), next_pos))
        offset = struct.unpack_from(layout.offset_format, data, next_pos)[0]
    if not ifds:
        return None
    return TiffMap(order, bigtiff, tuple(ifds))


def _swap(raw: bytes, component: int) -> bytes:
    if component == 1:
        return raw
    return np.frombuffer(raw, dtype=f"<u{component}").byteswap().tobytes()


def _ghost(data: bytes, layout: TiffMap) -> bytes:
    """GDAL's ghost header between the file header and IFD0, if the file has one."""
    start = layout.header_size
    if data[start : start + len(GHOST_PREFIX)] != GHOST_PREFIX:
        return b""
    return data[start : layout.ifds[0].offset]


def relayout(data: bytes, layout: TiffMap, order: str, bigtiff: bool) -> bytes | None:
    """The same header written compactly in another byte order / TIFF flavour.

    IFDs follow each other, each table followed by its out-of-line values. Returns ``None`` when
    the target cannot hold the header (64-bit values in a classic TIFF).
    """
    target = TiffMap(order, bigtiff, ())
    ghost = _ghost(data, layout)
    inline_size = 8 if bigtiff else 4
    out = bytearray(b"II" if order == "<" else b"MM")
    if bigtiff:
        out += struct.pack(order + "HHHQ", 43, 8, 0, 16 + len(ghost) + len(ghost) % 2)
    else:
        out += struct.pack(order + "HI", 42, 8 + len(ghost) + len(ghost) % 2)
    out += ghost + b"\0" * (len(ghost) % 2)
    next_pointer_at: int | None = None
    for ifd in layout.ifds:
        entries = [e for e in ifd.entries if e.field_type in FIELD_SIZES]
        if next_pointer_at is not None:
            struct.pack_into(target.offset_format, out, next_pointer_at, len(out))
        table = bytearray(struct.pack(target.ifd_count_format, len(entries)))
        values = bytearray()
        values_start = len(out) + len(table) + len(entries) * target.entry_size + inline_size
        for entry in entries:
            field_type, raw = entry.field_type, data[entry.value_pos :][: entry.value_size]
            if entry.value_size > MAX_VALUE_BYTES or len(raw) < entry.value_size:
                return None
            raw = _swap(raw, FIELD_SIZES[field_type][1]) if order != layout.order else raw
            if not bigtiff and field_type in NARROWER_TYPE:
                wide = np.frombuffer(raw, dtype=order + "u8")
                if wide.size and int(wide.max()) >= 1 << 31:
                    return None
                field_type, raw = NARROWER_TYPE[field_type], wide.astype(order + "u4").tobytes()
            if len(raw) <= inline_size:
                value = raw.ljust(inline_size, b"\0")
            else:
                value = struct.pack(target.offset_format, values_start + len(values))
                values += raw + b"\0" * (len(raw) % 2)
            count = len(raw) // FIELD_SIZES[field_type][0]
            table += struct.pack(
                order + ("HHQ" if bigtiff else "HHI"), entry.tag, field_type, count
            )
            table += value
        next_pointer_at = len(out) + len(table)
        out += table + b"\0" * inline_size + values
    return bytes(out)


def make_seeds(files: list[tuple[str, Path]], prefix_kib: int) -> list[Seed]:
    """Seeds of every file plus its re-laid-out variants; files that are not TIFFs are skipped.

    A seed is the file's first ``prefix_kib`` KiB when its header structures all lie there,
    otherwise the file up to the end of its last header structure (IFD-at-the-end layouts).
    """
    seeds: list[Seed] = []
    for name, path in files:
        raw = path.read_bytes()
        layout = map_tiff(raw)
        if layout is None:
            continue
        header_end = max(end for _, end in layout.regions())
        data = raw[: max(prefix_kib * 1024, header_end)]
        seeds.append(Seed(name, data, layout))
        for order in "<>":
            for bigtiff in (False, True):
                if (order, bigtiff) == (layout.order, layout.bigtiff):
                    continue
                variant = relayout(data, layout, order, bigtiff)
                variant_layout = map_tiff(variant) if variant is not None else None
                if variant is not None and variant_layout is not None:
                    flavour = f"{'LE' if order == '<' else 'BE'}-{'big' if bigtiff else 'classic'}"
                    seeds.append(Seed(f"{name}@{flavour}", variant, variant_layout))
    return seeds
