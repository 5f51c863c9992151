"""Hostile-input properties of the header parser.

Real headers (the generated corpus and the shared fixtures) are mutated where it hurts: IFD entry
fields (tag, type, count, value/offset), IFD entry counts, next-IFD pointers, the IFD0 pointer,
random byte flips and truncation. Whatever comes out, the parser may only return a header or
raise a :class:`TiffError` subclass (which the engine maps to an error class) - never
``IndexError``, ``struct.error``, ``MemoryError``, ``ValueError``, ``OverflowError`` or
``RecursionError`` - and every call must finish quickly (no quadratic walks, no giant
allocations from a claimed count).
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rasteret_assets.tiff import (
    ByteBuffer,
    CorruptTiffError,
    NeedBytes,
    NotTiffError,
    TiffError,
    TiffHeader,
    parse_header,
    parse_tiff_bytes,
    read_header,
)

from .conftest import fixture_tiff_paths
from .truth import read_tiff_truth

#: Wall-clock bound for one parse (or one whole incremental drive) of a <= 256 KiB input.
TIME_LIMIT_S = 1.0
SEED_PREFIX = 65536
MAX_SEED_FILE = 256 * 1024
FUZZ_SETTINGS = settings(
    max_examples=1500,
    deadline=None,  # timing is asserted per call, against a fixed bound, not by hypothesis
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
SIGNATURES = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
INTERESTING_TAGS = (254, 256, 257, 258, 259, 277, 284, 322, 323, 324, 325, 338, 339, 347, 273)
INTERESTING_TAGS += (33550, 33922, 34264, 34735, 34736, 34737, 42112, 42113)


class Seed:
    """One real header to mutate. A plain class (not a dataclass) so that hypothesis reports
    print the short ``repr`` instead of every byte."""

    def __init__(
        self,
        name: str,
        data: bytes,
        bigtiff: bool,
        order: str,
        ifd_offsets: tuple[int, ...],
        entries: tuple[int, ...],
    ) -> None:
        self.name = name
        self.data = data
        self.bigtiff = bigtiff
        self.order = order
        self.ifd_offsets = ifd_offsets
        self.entries = entries  # file positions of IFD entries that lie inside ``data``

    def __repr__(self) -> str:
        return f"Seed({self.name!r}, {len(self.data)} bytes)"

    @property
    def entry_size(self) -> int:
        return 20 if self.bigtiff else 12

    @property
    def offset_size(self) -> int:
        return 8 if self.bigtiff else 4


def _make_seed(name: str, path: Path) -> Seed | None:
    raw = path.read_bytes()
    truth = read_tiff_truth(path)
    if truth.header_end <= SEED_PREFIX:
        data = raw[:SEED_PREFIX]
    elif len(raw) <= MAX_SEED_FILE:
        data = raw  # IFDs at the end of a small file: keep it whole
    else:
        return None
    fmt = truth.byte_order + ("Q" if truth.bigtiff else "H")
    entries: list[int] = []
    for ifd in truth.ifds:
        (count,) = struct.unpack_from(fmt, raw, ifd.offset)
        first = ifd.offset + (8 if truth.bigtiff else 2)
        size = 20 if truth.bigtiff else 12
        entries.extend(
            first + i * size for i in range(count) if first + (i + 1) * size <= len(data)
        )
    return Seed(
        name=name,
        data=data,
        bigtiff=truth.bigtiff,
        order=truth.byte_order,
        ifd_offsets=tuple(ifd.offset for ifd in truth.ifds),
        entries=tuple(entries),
    )


@pytest.fixture(scope="session")
def fuzz_seeds(cog_corpus: list[tuple[str, Path]]) -> list[Seed]:
    """Headers of every parseable corpus file plus every small-enough shared fixture."""
    named = list(cog_corpus) + [(p.name, p) for p in fixture_tiff_paths()]
    seeds = [seed for name, path in named if (seed := _make_seed(name, path)) is not None]
    assert len(seeds) >= 25, len(seeds)
    return seeds


# ------------------------------------------------------------------------------------------------
# Mutations


def _put(buf: bytearray, pos: int, fmt: str, value: int) -> None:
    size = struct.calcsize(fmt)
    if pos >= 0 and pos + size <= len(buf):
        struct.pack_into(fmt, buf, pos, value)


def _huge_values(seed: Seed) -> st.SearchStrategy[int]:
    top = (1 << 64) - 1 if seed.bigtiff else (1 << 32) - 1
    return st.one_of(
        st.sampled_from([0, 1, 2, len(seed.data) - 1, len(seed.data), len(seed.data) + 1, top]),
        st.sampled_from([top // 2, top - 7, 1 << 31, (1 << 63) if seed.bigtiff else 1 << 30]),
        st.sampled_from(seed.ifd_offsets),
        st.integers(0, top),
    )


class Mutant:
    def __init__(self, seed: Seed, data: bytes, log: tuple[str, ...]) -> None:
        self.seed, self.data, self.log = seed, data, log

    def __repr__(self) -> str:
        return f"Mutant({self.seed.name!r}, {len(self.data)} bytes, {list(self.log)})"

    def __iter__(self):  # seed, data, log = mutant
        return iter((self.seed, self.data, list(self.log)))


@st.composite
def mutated(draw: st.DrawFn, seeds: list[Seed]) -> Mutant:
    """A seed header with 1-4 targeted mutations."""
    seed = draw(st.sampled_from(seeds))
    buf = bytearray(seed.data)
    order, osz = seed.order, seed.offset_size
    ofmt = order + ("Q" if seed.bigtiff else "I")
    cfmt = order + ("Q" if seed.bigtiff else "I")  # entry count field
    log: list[str] = []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(
            st.sampled_from(
                [
                    "flip",
                    "truncate",
                    "entry_value",
                    "entry_count",
                    "entry_type",
                    "entry_tag",
                    "ifd_entry_count",
                    "next_ifd",
                    "ifd0_pointer",
                ]
            )
        )
        entry = draw(st.sampled_from(seed.entries)) if seed.entries else 0
        ifd = draw(st.sampled_from(seed.ifd_offsets))
        if kind == "flip" and buf:
            near = draw(st.sampled_from([*seed.entries, *seed.ifd_offsets, 0]))
            pos = draw(st.one_of(st.integers(0, len(buf) - 1), st.integers(near, near + 24)))
            if pos < len(buf):
                buf[pos] ^= draw(st.integers(1, 255))
            log.append(f"flip@{pos}")
        elif kind == "truncate":
            cut = draw(st.integers(0, len(buf)))
            del buf[cut:]
            log.append(f"truncate@{cut}")
        elif kind == "entry_value":
            value = draw(_huge_values(seed))
            _put(buf, entry + 4 + osz, ofmt, value)
            log.append(f"value@{entry}={value}")
        elif kind == "entry_count":
            value = draw(_huge_values(seed))
            _put(buf, entry + 4, cfmt, value)
            log.append(f"count@{entry}={value}")
        elif kind == "entry_type":
            value = draw(st.integers(0, 0xFFFF))
            _put(buf, entry + 2, order + "H", value)
            log.append(f"type@{entry}={value}")
        elif kind == "entry_tag":
            value = draw(st.one_of(st.sampled_from(INTERESTING_TAGS), st.integers(0, 0xFFFF)))
            _put(buf, entry, order + "H", value)
            log.append(f"tag@{entry}={value}")
        elif kind == "ifd_entry_count":
            value = draw(st.one_of(st.sampled_from([0, 1, 0xFFFF]), st.integers(0, 0xFFFF)))
            if seed.bigtiff:
                value = draw(st.sampled_from([value, 1 << 40, (1 << 64) - 1]))
            _put(buf, ifd, order + ("Q" if seed.bigtiff else "H"), value)
            log.append(f"ifd_count@{ifd}={value}")
        elif kind == "next_ifd":
            (count,) = struct.unpack_from(order + ("Q" if seed.bigtiff else "H"), seed.data, ifd)
            pos = ifd + (8 if seed.bigtiff else 2) + count * seed.entry_size
            value = draw(_huge_values(seed))
            _put(buf, pos, ofmt, value)
            log.append(f"next@{ifd}={value}")
        else:
            value = draw(_huge_values(seed))
            _put(buf, 8 if seed.bigtiff else 4, ofmt, value)
            log.append(f"ifd0={value}")
    return Mutant(seed, bytes(buf), tuple(log))


# ------------------------------------------------------------------------------------------------
# Drivers, each timed


def _timed(call: Callable[[], object], what: str) -> object:
    start = time.perf_counter()
    try:
        result = call()
    except TiffError as error:
        result = error
    except Exception as error:  # the point of the test: nothing else may escape
        raise AssertionError(f"{what} raised {type(error).__name__}: {error}") from error
    elapsed = time.perf_counter() - start
    assert elapsed < TIME_LIMIT_S, f"{what} took {elapsed:.2f} s"
    assert isinstance(result, (TiffHeader, TiffError)), type(result)
    return result


def _drive_exact(data: bytes, *, known_size: bool) -> TiffHeader:
    """parse_header fed exactly the ranges it asks for; a hostile file must not livelock it."""
    buffer = ByteBuffer(len(data) if known_size else None)
    buffer.add(0, data[:16])
    for _ in range(200):
        result = parse_header(buffer)
        if not isinstance(result, NeedBytes):
            return result
        progress = False
        for offset, length in result.ranges:
            assert offset >= 0 and length > 0, result.ranges
            if known_size:
                assert offset + length <= len(data), f"asks past the known end: {result.ranges}"
            chunk = data[offset : offset + length]
            if len(chunk) and buffer.view(offset, len(chunk), "fuzz") is None:
                progress = True
            buffer.add(offset, chunk)
            if len(chunk) < length:
                buffer.mark_end_of_file(len(data))
                progress = True
        assert progress, f"asked again for bytes it already has: {result.ranges}"
    raise AssertionError("no result after 200 rounds")


# ------------------------------------------------------------------------------------------------
# Properties


def test_seeds_parse_before_mutation(fuzz_seeds: list[Seed]) -> None:
    """The fuzz starts from valid headers: unmutated seeds parse (or are cleanly refused)."""
    outcomes = [_timed(lambda s=s: parse_tiff_bytes(s.data), s.name) for s in fuzz_seeds]
    parsed = sum(isinstance(o, TiffHeader) for o in outcomes)
    assert parsed >= 0.6 * len(fuzz_seeds), parsed


@FUZZ_SETTINGS
@given(data=st.data())
def test_mutated_headers_parse_or_raise_tiff_error(
    fuzz_seeds: list[Seed], data: st.DataObject
) -> None:
    seed, blob, log = data.draw(mutated(fuzz_seeds))
    _timed(lambda: parse_tiff_bytes(blob), f"parse_tiff_bytes({seed.name}, {log})")


@FUZZ_SETTINGS
@given(data=st.data(), known_size=st.booleans())
def test_mutated_headers_incremental_parse(
    fuzz_seeds: list[Seed], data: st.DataObject, known_size: bool
) -> None:
    seed, blob, log = data.draw(mutated(fuzz_seeds))
    what = f"parse_header loop ({seed.name}, {log}, known_size={known_size})"
    outcome = _timed(lambda: _drive_exact(blob, known_size=known_size), what)
    # Same bytes, same verdict: the incremental path succeeds exactly when the whole-buffer
    # parse does (the error *class* may differ: which defect is met first depends on which
    # bytes are present when).
    whole = _timed(lambda: parse_tiff_bytes(blob), f"parse_tiff_bytes({seed.name}, {log})")
    assert isinstance(outcome, TiffHeader) == isinstance(whole, TiffHeader), (what, outcome, whole)


@FUZZ_SETTINGS
@given(data=st.data(), first_read=st.sampled_from([16, 512, 16384, 65536]))
def test_mutated_headers_read_header(
    fuzz_seeds: list[Seed], data: st.DataObject, first_read: int
) -> None:
    seed, blob, log = data.draw(mutated(fuzz_seeds))
    _timed(
        lambda: read_header(lambda o, n: blob[o : o + n], first_read=first_read)[0],
        f"read_header({seed.name}, {log}, first_read={first_read})",
    )


@settings(max_examples=300, deadline=None)
@given(blob=st.binary(min_size=8, max_size=4096))
def test_non_tiff_bytes_raise_not_tiff(blob: bytes) -> None:
    if blob[:4] in SIGNATURES:
        blob = b"GIF8" + blob[4:]
    with pytest.raises(NotTiffError) as info:
        parse_tiff_bytes(blob)
    assert info.value.error_class == "not_tiff"


@settings(max_examples=300, deadline=None)
@given(signature=st.sampled_from(SIGNATURES), tail=st.binary(max_size=4096))
def test_random_bytes_behind_a_signature(signature: bytes, tail: bytes) -> None:
    _timed(lambda: parse_tiff_bytes(signature + tail), f"signature {signature!r} + random")
    _timed(lambda: _drive_exact(signature + tail, known_size=False), "incremental random")


@pytest.mark.parametrize("blob", [b"", b"I", b"II", b"II*", b"MM\x00", b"II*\x00", b"MM\x00+"])
def test_short_prefixes_are_tiff_errors(blob: bytes) -> None:
    with pytest.raises(TiffError):
        parse_tiff_bytes(blob)


@pytest.mark.parametrize("text", [b"%PDF-1.7\n", b"\x89PNG\r\n\x1a\n", b"<html><body>", b"\0" * 64])
def test_well_known_non_tiffs(text: bytes) -> None:
    with pytest.raises(NotTiffError):
        parse_tiff_bytes(text + bytes(64))


# ------------------------------------------------------------------------------------------------
# Deterministic hostile headers


def _seed(fuzz_seeds: list[Seed], name: str) -> Seed:
    return next(s for s in fuzz_seeds if s.name == name)


def _next_pointer_pos(seed: Seed, ifd: int) -> int:
    (count,) = struct.unpack_from(seed.order + ("Q" if seed.bigtiff else "H"), seed.data, ifd)
    return ifd + (8 if seed.bigtiff else 2) + count * seed.entry_size


@pytest.mark.parametrize(
    "name", ["cog-deflate-u8-1b-b256-utm-ovr3-nodata0", "cog-bigtiff-jpeg-u8-3b-b256-mask"]
)
@pytest.mark.parametrize("target", ["self", "first"])
def test_ifd_loops_are_corrupt(fuzz_seeds: list[Seed], name: str, target: str) -> None:
    seed = _seed(fuzz_seeds, name)
    buf = bytearray(seed.data)
    last = seed.ifd_offsets[-1]
    pointer = last if target == "self" else seed.ifd_offsets[0]
    _put(buf, _next_pointer_pos(seed, last), seed.order + ("Q" if seed.bigtiff else "I"), pointer)
    outcome = _timed(lambda: parse_tiff_bytes(bytes(buf)), f"loop {name} {target}")
    assert isinstance(outcome, CorruptTiffError), outcome
    assert outcome.error_class == "corrupt"


@pytest.mark.parametrize("tag", [324, 325, 258, 34735, 33922])
def test_huge_counts_fail_fast(fuzz_seeds: list[Seed], tag: int) -> None:
    """A count claiming 4 G values must not be allocated or scanned.

    Tile tables and BitsPerSample are required, so the header is refused; a broken GeoTIFF tag
    may be refused or ignored, but quickly either way.
    """
    required = tag in (324, 325, 258)
    for name in ("cog-deflate-u8-1b-b256-utm-ovr3-nodata0", "cog-bigtiff-jpeg-u8-3b-b256-mask"):
        seed = _seed(fuzz_seeds, name)
        buf = bytearray(seed.data)
        fmt = seed.order + ("Q" if seed.bigtiff else "I")
        for entry in seed.entries:
            (code,) = struct.unpack_from(seed.order + "H", buf, entry)
            if code == tag:
                huge = (1 << 62) if seed.bigtiff else (1 << 32) - 1
                _put(buf, entry + 4, fmt, huge)
        outcome = _timed(lambda b=bytes(buf): parse_tiff_bytes(b), f"huge count {tag} {name}")
        assert isinstance(outcome, TiffError) or not required, outcome
        outcome = _timed(
            lambda b=bytes(buf): read_header(lambda o, n: b[o : o + n])[0], f"huge count {tag}"
        )
        assert isinstance(outcome, TiffError) or not required, outcome


@pytest.mark.parametrize("field_type", [16, 17, 18])
@pytest.mark.parametrize("tag", [256, 257, 259, 277, 322, 323, 284, 317])
def test_eight_byte_types_in_classic_tiff(
    fuzz_seeds: list[Seed], field_type: int, tag: int
) -> None:
    """LONG8/SLONG8/IFD8 are BigTIFF-only: in a classic TIFF one value no longer fits the
    4-byte inline field, so a scalar tag retyped that way is corrupt (not a struct.error)."""
    seed = _seed(fuzz_seeds, "cog-deflate-u8-1b-b256-utm-ovr3-nodata0")
    buf = bytearray(seed.data)
    hits = 0
    for entry in seed.entries:
        (code,) = struct.unpack_from("<H", buf, entry)
        if code == tag:
            struct.pack_into("<HI", buf, entry + 2, field_type, 1)
            hits += 1
    if not hits:
        pytest.skip(f"tag {tag} not written by GDAL in this file")
    whole = _timed(lambda: parse_tiff_bytes(bytes(buf)), f"type {field_type} for tag {tag}")
    assert isinstance(whole, TiffError), whole
