"""The parse paths every fuzz input goes through, and the promises each of them must keep.

A path may return a header or raise a :class:`TiffError`; anything else is a crash. Beyond
that, the drivers check what the engine relies on: a ``NeedBytes`` never asks for bytes the
buffer already holds (that would loop forever), never asks past a known end of file, and the
three paths agree on the same bytes (same header, or all fail).
"""

from __future__ import annotations

import pickle
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from rasteret_assets.tiff import (
    ByteBuffer,
    NeedBytes,
    TiffError,
    TiffHeader,
    parse_header,
    parse_tiff_bytes,
    read_header,
)

#: First-read sizes for the driver path: far below a header, so that it must ask for more.
SMALL_FIRST_READS = (16, 512, 4096)
#: Rounds of exact reads after which the incremental path counts as looping.
MAX_EXACT_ROUNDS = 256
#: ``read_header`` gives up after a bounded number of rounds by design; that refusal of a
#: hostile chain is not a disagreement with the whole-buffer parse.
ROUNDS_LIMIT_MESSAGE = "rounds of reads"

Outcome = TiffHeader | TiffError


class BrokenPromiseError(Exception):
    """A driver-level invariant failed (not a parser exception, but just as much a crash)."""


@dataclass(slots=True)
class PathResults:
    whole: Outcome
    incremental: Outcome
    small_first_read: Outcome
    largest_request: int  # bytes of the largest range any NeedBytes asked for
    seconds: tuple[float, float, float]  # per path, in the order above


def _outcome(call: Callable[[], TiffHeader]) -> Outcome:
    try:
        return call()
    except TiffError as error:
        return error


def parse_incremental(data: bytes, *, known_size: bool) -> tuple[Outcome, int]:
    """``parse_header`` fed exactly the ranges it asks for, starting from 16 bytes."""
    buffer = ByteBuffer(len(data) if known_size else None)
    buffer.add(0, data[:16])
    largest = 0
    for _ in range(MAX_EXACT_ROUNDS):
        try:
            result = parse_header(buffer)
        except TiffError as error:
            return error, largest
        if not isinstance(result, NeedBytes):
            return result, largest
        progress = False
        for offset, length in result.ranges:
            if offset < 0 or length <= 0:
                raise BrokenPromiseError(
                    f"NeedBytes with an empty or negative range: {result.ranges}"
                )
            if known_size and offset + length > len(data):
                raise BrokenPromiseError(
                    f"NeedBytes past the known end {len(data)}: {result.ranges}"
                )
            largest = max(largest, length)
            chunk = data[offset : offset + length]
            if chunk and buffer.view(offset, len(chunk), "fuzz") is None:
                progress = True
            buffer.add(offset, chunk)
            if len(chunk) < length:
                buffer.mark_end_of_file(len(data))
                progress = True
        if not progress:
            raise BrokenPromiseError(f"NeedBytes asks again for bytes it holds: {result.ranges}")
    raise BrokenPromiseError(f"no result after {MAX_EXACT_ROUNDS} rounds of exact reads")


def _fingerprint(header: TiffHeader) -> tuple[object, ...]:
    """What must not depend on how the bytes arrived (the ghost header may: it is only
    looked for when already in the buffer when IFD0 is far from it)."""
    levels = tuple(
        (
            ifd.index,
            ifd.offset,
            ifd.image_width,
            ifd.image_height,
            ifd.tile_width,
            ifd.tile_height,
            ifd.samples_per_pixel,
            ifd.dtype,
            ifd.compression,
            ifd.predictor,
            ifd.photometric,
            ifd.planar_configuration,
            ifd.extra_samples,
            ifd.new_subfile_type,
            ifd.tile_offsets.tobytes(),
            ifd.tile_byte_counts.tobytes(),
            ifd.jpeg_tables,
        )
        for ifd in header.ifds
    )
    # Pickled, not compared: NaN != NaN, and the bytes compare fast however long a tuple is.
    return header.byte_order, header.bigtiff, levels, pickle.dumps(header.geo)


def _check_agreement(results: PathResults) -> None:
    whole = results.whole
    for name, other in (
        ("incremental", results.incremental),
        ("small first read", results.small_first_read),
    ):
        if isinstance(other, TiffError) and ROUNDS_LIMIT_MESSAGE in str(other):
            continue
        if isinstance(whole, TiffHeader) != isinstance(other, TiffHeader):
            raise BrokenPromiseError(
                f"whole-buffer parse gave {whole!r} but the {name} path {other!r}"
            )
        if isinstance(whole, TiffHeader) and _fingerprint(whole) != _fingerprint(other):
            raise BrokenPromiseError(f"whole-buffer and {name} parses give different headers")


def run_paths(data: bytes, *, known_size: bool, first_read: int) -> PathResults:
    """Parse ``data`` three ways and check the drivers' promises; raise on a crash."""
    start = time.perf_counter()
    whole = _outcome(lambda: parse_tiff_bytes(data))
    after_whole = time.perf_counter()
    incremental, largest = parse_incremental(data, known_size=known_size)
    after_incremental = time.perf_counter()
    small = _outcome(lambda: read_header(lambda o, n: data[o : o + n], first_read=first_read)[0])
    seconds = (
        after_whole - start,
        after_incremental - after_whole,
        time.perf_counter() - after_incremental,
    )
    results = PathResults(whole, incremental, small, largest, seconds)
    _check_agreement(results)
    return results


_QUOTED = re.compile(r"b?'[^']*'|b?\"[^\"]*\"")
_NUMBER = re.compile(r"-?\d[\d.e+-]*")


def message_template(error: TiffError) -> str:
    """The error's class and message with numbers and quoted bytes blanked, for counting."""
    text = _NUMBER.sub("N", _QUOTED.sub("S", str(error)))
    return f"{error.error_class}: {text}"
