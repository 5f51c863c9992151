"""Structure-aware mutations of TIFF headers for the header fuzzer.

Each mutation aims at something the parser trusts: an IFD entry's tag, type, count or value
offset, an IFD's entry count or next pointer, the IFD0 pointer, the byte-order mark and version,
the GeoKeyDirectory, ASCII values such as GDAL_NODATA. Blind bit flips, interesting integers,
truncation and random bytes fill the gaps. A mutation returns a short description for the log,
so that a crash report says how its input was made.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable

from fuzz_seeds import Entry, Seed

INTERESTING_8 = (0, 1, 0x7F, 0x80, 0xFF)
INTERESTING_16 = (0, 1, 2, 0x7FFF, 0x8000, 0xFFFF)
INTERESTING_32 = (0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF)
INTERESTING_64 = (0, 1, 1 << 31, 1 << 32, (1 << 63) - 1, 1 << 63, (1 << 64) - 1)
USED_TAGS = (254, 256, 257, 258, 259, 262, 273, 277, 284, 317, 322, 323, 324, 325, 338, 339, 347)
USED_TAGS += (33550, 33922, 34264, 34735, 34736, 34737, 42112, 42113)
FIELD_TYPES = (*range(0, 20), 0xFFFF)
GEO_KEY_LOCATIONS = (0, 34735, 34736, 34737, 0xFFFF)
TEXT_VALUES = (b"", b"nan", b"-inf", b"1e999", b"abc", b"0x10", b"\xff\xfe", b"1,5", b" 7 ")
SIGNATURES = (b"II*\x00", b"MM\x00*", b"II+\x00\x08\x00\x00\x00", b"MM\x00+\x00\x08\x00\x00")
MAX_STACK = 6


class Mutator:
    """Draws mutated inputs from a list of seeds with one :class:`random.Random`."""

    def __init__(self, seeds: list[Seed], rng: random.Random) -> None:
        self.seeds = seeds
        self.rng = rng
        self._by_format: dict[tuple[str, bool], list[Seed]] = {}
        for seed in seeds:
            key = (seed.layout.order, seed.layout.bigtiff)
            self._by_format.setdefault(key, []).append(seed)
        self._kinds: list[Callable[[Seed, bytearray], str]] = [
            self._bit_flip,
            self._interesting_byte,
            self._interesting_word,
            self._entry_tag,
            self._entry_type,
            self._entry_count,
            self._entry_value,
            self._ifd_entry_count,
            self._next_ifd,
            self._ifd0_pointer,
            self._splice_entry,
            self._swap_entries,
            self._delete_entry,
            self._value_bytes,
            self._text_value,
            self._geo_key,
            self._truncate,
            self._byte_order_mark,
            self._version,
            self._random_block,
        ]
        # Weights: structural fields get most of the budget, blind ones the rest.
        self._weights = [4, 1, 3, 2, 3, 4, 4, 2, 3, 1, 3, 1, 1, 3, 1, 2, 2, 1, 1, 2]

    def mutate(self) -> tuple[str, bytes, list[str]]:
        """(seed name, mutated bytes, mutation log); a few inputs are random bytes only."""
        rng = self.rng
        if rng.random() < 0.02:
            size = rng.choice((8, 16, 64, 512, 4096))
            body = rng.randbytes(size)
            return "random", rng.choice(SIGNATURES) + body, [f"random_bytes({size})"]
        seed = rng.choice(self.seeds)
        buf = bytearray(seed.data)
        stack = min(MAX_STACK, 1 + int(rng.expovariate(0.9)))
        log = [kind(seed, buf) for kind in rng.choices(self._kinds, weights=self._weights, k=stack)]
        return seed.name, bytes(buf), log

    # --- helpers ------------------------------------------------------------------------------

    def _entry(self, seed: Seed) -> Entry | None:
        return self.rng.choice(seed.entries) if seed.entries else None

    def _offset_like(self, seed: Seed, buf: bytearray) -> int:
        """A value that is dangerous as an offset or count for this file."""
        rng = self.rng
        roll = rng.randrange(6)
        if roll == 0:
            return rng.choice(INTERESTING_64 if seed.layout.bigtiff else INTERESTING_32)
        if roll == 1:
            return max(0, len(buf) + rng.randint(-8, 8))
        if roll == 2:
            return rng.choice(seed.ifd_offsets) + rng.choice((0, 0, 1, 2, -1))
        if roll == 3 and seed.entries:
            return rng.choice(seed.entries).pos + rng.choice((0, 4, 8))
        if roll == 4:
            return rng.randrange(seed.layout.header_size + 1)
        return rng.getrandbits(64 if seed.layout.bigtiff else 32)

    def _put(self, buf: bytearray, pos: int, fmt: str, value: int) -> None:
        size = struct.calcsize(fmt)
        if pos >= 0 and pos + size <= len(buf):
            struct.pack_into(fmt, buf, pos, value & ((1 << (8 * size)) - 1))

    # --- mutations ----------------------------------------------------------------------------

    def _bit_flip(self, seed: Seed, buf: bytearray) -> str:
        rng = self.rng
        pos = seed.hot_position(rng) if rng.random() < 0.9 else rng.randrange(len(seed.data))
        bit = rng.randrange(8)
        if pos < len(buf):
            buf[pos] ^= 1 << bit
        return f"bit_flip@{pos}.{bit}"

    def _interesting_byte(self, seed: Seed, buf: bytearray) -> str:
        pos, value = seed.hot_position(self.rng), self.rng.choice(INTERESTING_8)
        self._put(buf, pos, "B", value)
        return f"byte@{pos}={value}"

    def _interesting_word(self, seed: Seed, buf: bytearray) -> str:
        rng = self.rng
        code, values = rng.choice(
            (("H", INTERESTING_16), ("I", INTERESTING_32), ("Q", INTERESTING_64))
        )
        order = seed.layout.order if rng.random() < 0.8 else rng.choice("<>")
        pos, value = seed.hot_position(rng), rng.choice(values)
        self._put(buf, pos, order + code, value)
        return f"word@{pos}={order}{code}:{value}"

    def _entry_tag(self, seed: Seed, buf: bytearray) -> str:
        entry = self._entry(seed)
        if entry is None:
            return "entry_tag:none"
        tag = self.rng.choice(USED_TAGS) if self.rng.random() < 0.8 else self.rng.randrange(65536)
        self._put(buf, entry.pos, seed.layout.order + "H", tag)
        return f"entry_tag@{entry.pos}={tag}"

    def _entry_type(self, seed: Seed, buf: bytearray) -> str:
        entry = self._entry(seed)
        if entry is None:
            return "entry_type:none"
        field_type = self.rng.choice(FIELD_TYPES)
        self._put(buf, entry.pos + 2, seed.layout.order + "H", field_type)
        return f"entry_type@{entry.pos}={field_type}"

    def _entry_count(self, seed: Seed, buf: bytearray) -> str:
        entry = self._entry(seed)
        if entry is None:
            return "entry_count:none"
        rng = self.rng
        roll = rng.randrange(3)
        if roll == 0:
            count = max(0, entry.count + rng.choice((-1, 1, 2, -entry.count)))
        elif roll == 1:
            count = entry.count * rng.choice((2, 4, 1 << 16, 1 << 28))
        else:
            count = self._offset_like(seed, buf)
        self._put(buf, entry.pos + 4, seed.layout.count_format, count)
        return f"entry_count@{entry.pos}={count}"

    def _entry_value(self, seed: Seed, buf: bytearray) -> str:
        entry = self._entry(seed)
        if entry is None:
            return "entry_value:none"
        value = self._offset_like(seed, buf)
        pos = entry.pos + (12 if seed.layout.bigtiff else 8)
        self._put(buf, pos, seed.layout.offset_format, value)
        return f"entry_value@{entry.pos}={value}"

    def _ifd_entry_count(self, seed: Seed, buf: bytearray) -> str:
        rng = self.rng
        ifd = rng.choice(seed.layout.ifds)
        n = len(ifd.entries)
        choices = [0, 1, max(0, n - 1), n + 1, n * 2, 4096, 4097, 0xFFFF]
        if seed.layout.bigtiff:
            choices += [1 << 32, (1 << 64) - 1]
        count = rng.choice(choices)
        self._put(buf, ifd.offset, seed.layout.ifd_count_format, count)
        return f"ifd_count@{ifd.offset}={count}"

    def _next_ifd(self, seed: Seed, buf: bytearray) -> str:
        rng = self.rng
        ifd = rng.choice(seed.layout.ifds)
        target = rng.choice((ifd.offset, seed.ifd_offsets[0], self._offset_like(seed, buf)))
        self._put(buf, ifd.next_pos, seed.layout.offset_format, target)
        return f"next_ifd@{ifd.offset}={target}"

    def _ifd0_pointer(self, seed: Seed, buf: bytearray) -> str:
        value = self._offset_like(seed, buf)
        self._put(buf, 8 if seed.layout.bigtiff else 4, seed.layout.offset_format, value)
        return f"ifd0={value}"

    def _splice_entry(self, seed: Seed, buf: bytearray) -> str:
        """Overwrite an entry with one from any seed of the same format (or this one)."""
        entry = self._entry(seed)
        donors = self._by_format[(seed.layout.order, seed.layout.bigtiff)]
        donor = self.rng.choice(donors)
        source = self._entry(donor)
        if entry is None or source is None:
            return "splice:none"
        size = seed.layout.entry_size
        self._put_bytes(buf, entry.pos, donor.data[source.pos : source.pos + size])
        return f"splice@{entry.pos}<-{donor.name}@{source.pos}"

    def _swap_entries(self, seed: Seed, buf: bytearray) -> str:
        """Break the ascending tag order (or duplicate a tag) within one IFD."""
        ifd = self.rng.choice(seed.layout.ifds)
        if len(ifd.entries) < 2:
            return "swap:none"
        first, second = self.rng.sample(ifd.entries, 2)
        size = seed.layout.entry_size
        if max(first.pos, second.pos) + size > len(buf):
            return "swap:truncated"
        a = bytes(buf[first.pos : first.pos + size])
        if self.rng.random() < 0.5:
            buf[first.pos : first.pos + size] = buf[second.pos : second.pos + size]
        buf[second.pos : second.pos + size] = a
        return f"swap@{first.pos},{second.pos}"

    def _delete_entry(self, seed: Seed, buf: bytearray) -> str:
        """Remove an entry: shift the rest of the table down and decrement the count."""
        ifd = self.rng.choice(seed.layout.ifds)
        if not ifd.entries:
            return "delete:none"
        entry = self.rng.choice(ifd.entries)
        end = ifd.next_pos + (8 if seed.layout.bigtiff else 4)
        size = seed.layout.entry_size
        if end > len(buf):
            return "delete:truncated"
        buf[entry.pos : end - size] = buf[entry.pos + size : end]
        self._put(buf, ifd.offset, seed.layout.ifd_count_format, len(ifd.entries) - 1)
        return f"delete@{entry.pos}"

    def _value_bytes(self, seed: Seed, buf: bytearray) -> str:
        """Interesting integers inside an entry's value (tile tables, GeoKeys, scales)."""
        entry = self._entry(seed)
        if entry is None or entry.value_size == 0:
            return "value_bytes:none"
        rng = self.rng
        width = rng.choice((1, 2, 4, 8))
        pos = entry.value_pos + rng.randrange(entry.value_size)
        value = rng.choice(INTERESTING_64) if rng.random() < 0.7 else rng.getrandbits(64)
        self._put(buf, pos, seed.layout.order + {1: "B", 2: "H", 4: "I", 8: "Q"}[width], value)
        return f"value_bytes@{pos}:{width}={value}"

    def _text_value(self, seed: Seed, buf: bytearray) -> str:
        """Rewrite an ASCII value (nodata, citations, GDAL metadata) with awkward text."""
        texts = [e for e in seed.entries if e.field_type == 2 and e.value_size]
        if not texts:
            return "text:none"
        entry = self.rng.choice(texts)
        text = self.rng.choice(TEXT_VALUES) + self.rng.choice((b"\0", b""))
        text = text[: entry.value_size].ljust(entry.value_size, b"\0")
        self._put_bytes(buf, entry.value_pos, text)
        return f"text@{entry.value_pos}={text[:12]!r}"

    def _geo_key(self, seed: Seed, buf: bytearray) -> str:
        """Break one field of one GeoKeyDirectory key: id, location, count or value index."""
        directory = next((e for e in seed.entries if e.tag == 34735 and e.value_size >= 8), None)
        if directory is None:
            return "geo_key:none"
        rng = self.rng
        shorts = directory.value_size // 2
        index = rng.randrange(shorts)
        if index % 4 == 1 and index >= 4:
            value = rng.choice(GEO_KEY_LOCATIONS)
        else:
            value = rng.choice((*INTERESTING_16, 3, 4, 1024, 1025, 2048, 3072, 32767))
        self._put(buf, directory.value_pos + 2 * index, seed.layout.order + "H", value)
        return f"geo_key[{index}]={value}"

    def _truncate(self, seed: Seed, buf: bytearray) -> str:
        rng = self.rng
        if rng.random() < 0.5 and seed.entries:
            cut = rng.choice(seed.entries).pos + rng.randrange(seed.layout.entry_size)
        else:
            cut = seed.hot_position(rng) if rng.random() < 0.7 else rng.randrange(len(buf) + 1)
        del buf[cut:]
        return f"truncate@{cut}"

    def _byte_order_mark(self, seed: Seed, buf: bytearray) -> str:
        mark = self.rng.choice((b"II", b"MM", b"IM", b"\0\0"))
        self._put_bytes(buf, 0, mark)
        return f"mark={mark!r}"

    def _version(self, seed: Seed, buf: bytearray) -> str:
        """Claim the other flavour, or break BigTIFF's offset-size / reserved fields."""
        rng = self.rng
        order = seed.layout.order
        roll = rng.randrange(3)
        if roll == 0:
            value = rng.choice((42, 43, 0, 0x2A2A))
            self._put(buf, 2, order + "H", value)
            return f"version={value}"
        field, value = rng.choice(((4, rng.choice((0, 4, 16))), (6, rng.choice((1, 0xFFFF)))))
        self._put(buf, field, order + "H", value)
        return f"bigtiff_field@{field}={value}"

    def _random_block(self, seed: Seed, buf: bytearray) -> str:
        rng = self.rng
        pos, size = seed.hot_position(rng), rng.choice((1, 2, 4, 8, 16, 64))
        self._put_bytes(buf, pos, rng.randbytes(size))
        return f"random_block@{pos}:{size}"

    @staticmethod
    def _put_bytes(buf: bytearray, pos: int, data: bytes) -> None:
        """Overwrite in place, clipped at the end: a mutation never grows the input."""
        if pos < len(buf):
            data = data[: len(buf) - pos]
            buf[pos : pos + len(data)] = data
