"""The one read driver of the sans-I/O parser: which bytes to read next, and when to stop.

:func:`parse_header` never reads; something must turn its :class:`NeedBytes` into reads and
feed the bytes back. Both the synchronous reader (:mod:`rasteret_assets.tiff.reader`, local
files, tests, benchmarks) and the async engine (:mod:`rasteret_assets.ingest.headers.engine`)
do it through :class:`HeaderReadDriver`, so the first read, end-of-file marking, follow-up
planning, the round limit and the header byte budget are decided here only. The driver does
no I/O itself::

    driver = HeaderReadDriver()
    while reads := driver.next_reads():
        driver.feed(reads, [read(offset, length) for offset, length in reads])
    header = driver.header
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rasteret_assets.tiff.buffer import ByteBuffer, NeedBytes, plan_reads
from rasteret_assets.tiff.errors import CorruptTiffError, UnsupportedTiffError
from rasteret_assets.tiff.model import TiffHeader
from rasteret_assets.tiff.parser import parse_header

#: The speculative first read: a GDAL COG keeps every IFD and tile table at the front, so one
#: 64 KiB read holds the whole header of all but the largest files.
DEFAULT_FIRST_READ = 65536
#: Each missing range is padded to this: a missing IFD is first known only by its offset, and
#: 16 KiB from there usually brings its entries and their values in the same round trip.
DEFAULT_MIN_READ = 16384
#: Rounds of reads per header, the first read included. Every real file measured (the GDAL
#: corpus of tests/tiff and the shared fixtures, first reads from 16 B to 256 KiB) needs at
#: most 3: one per layer of unknowns (IFDs, then their out-of-line values). Only hostile or
#: pathological chains (IFDs scattered through the file, one per round trip) need more; those
#: are bounded in bytes by ``max_header_bytes`` and in time by the round trips, so the engine's
#: tighter value of 16 is used everywhere: 5x headroom over real files, while a hostile URL
#: holds a worker for at most 16 round trips instead of 64.
MAX_ROUNDS = 16
#: Most bytes one header may cost. A real COG's header is kilobytes to a few MiB (a
#: 100,000 px square at 512 px tiles has 38,000 tiles: 0.6 MiB of BigTIFF offsets and
#: counts), while a hostile tag can ask for 256 MiB -- times ``max_concurrent`` workers.
DEFAULT_MAX_HEADER_BYTES = 32 << 20

Read = tuple[int, int]


@dataclass(frozen=True, slots=True)
class ReadStats:
    """What a header cost: range reads asked for, and bytes they returned."""

    reads: int
    bytes_read: int


class HeaderReadDriver:
    """Hands out batches of ``(offset, length)`` reads and parses the bytes fed back.

    The first batch is ``[(0, first_read)]``. After each :meth:`feed` the buffer is parsed:
    either the header is complete (:attr:`header`, and :meth:`next_reads` returns ``[]``) or
    the missing ranges are planned into the next batch, merged and padded to ``min_read``.
    A chunk shorter than its read marks the end of the file there.

    Raises (from :meth:`feed`) any :class:`TiffError` of the parser, :class:`CorruptTiffError`
    when the header is still incomplete after ``max_rounds`` batches, and
    :class:`UnsupportedTiffError` when the next batch would take the bytes read past
    ``max_header_bytes`` -- before that batch is handed out, so the oversized read is never
    sent. ``max_header_bytes=None`` means no budget.
    """

    __slots__ = (
        "_header",
        "_pending",
        "buffer",
        "bytes_read",
        "max_header_bytes",
        "max_rounds",
        "min_read",
        "reads",
        "rounds",
    )

    def __init__(
        self,
        *,
        first_read: int = DEFAULT_FIRST_READ,
        min_read: int = DEFAULT_MIN_READ,
        max_rounds: int = MAX_ROUNDS,
        max_header_bytes: int | None = DEFAULT_MAX_HEADER_BYTES,
    ) -> None:
        if first_read < 1:
            raise ValueError(f"first_read must be >= 1, got {first_read}")
        if min_read < 0:
            raise ValueError(f"min_read must be >= 0, got {min_read}")
        if max_rounds < 1:
            raise ValueError(f"max_rounds must be >= 1, got {max_rounds}")
        if max_header_bytes is not None and max_header_bytes < first_read:
            raise ValueError(
                f"max_header_bytes={max_header_bytes} is less than first_read={first_read}"
            )
        self.min_read = min_read
        self.max_rounds = max_rounds
        self.max_header_bytes = max_header_bytes
        self.buffer = ByteBuffer()
        self.reads = 0  # reads handed out and fed back
        self.bytes_read = 0  # bytes those reads returned
        self.rounds = 0  # batches fed back
        self._pending: list[Read] = [(0, first_read)]
        self._header: TiffHeader | None = None

    @property
    def header(self) -> TiffHeader | None:
        """The parsed header once complete, else ``None``."""
        return self._header

    @property
    def done(self) -> bool:
        return self._header is not None

    @property
    def stats(self) -> ReadStats:
        return ReadStats(self.reads, self.bytes_read)

    def next_reads(self) -> list[Read]:
        """The batch to read now (the same until it is fed back); ``[]`` once done."""
        return list(self._pending)

    def feed(
        self, reads: Sequence[Read], chunks: Sequence[bytes], *, file_size: int | None = None
    ) -> TiffHeader | None:
        """Take the bytes of the batch :meth:`next_reads` gave; return the header when done.

        ``file_size``, when the storage reported it (say with the first read), lets the parser
        tell a truncated header from one that needs more reads.
        """
        if self._header is not None or not self._pending:
            raise RuntimeError("feed() called with no reads outstanding")
        if list(reads) != self._pending:
            raise ValueError(f"fed reads {list(reads)} but the driver asked for {self._pending}")
        if len(chunks) != len(reads):
            raise ValueError(f"{len(chunks)} chunks for {len(reads)} reads")
        self._pending = []
        if file_size is not None:
            self.buffer.mark_end_of_file(file_size)
        for (offset, length), data in zip(reads, chunks, strict=True):
            self.reads += 1
            self.bytes_read += len(data)
            self.buffer.add(offset, data)
            if len(data) < length:
                self.buffer.mark_end_of_file(offset + len(data))
        self.rounds += 1
        result = parse_header(self.buffer)
        if not isinstance(result, NeedBytes):
            self._header = result
            return result
        if self.rounds >= self.max_rounds:
            raise CorruptTiffError(f"header still incomplete after {self.rounds} rounds of reads")
        planned = plan_reads(result.ranges, min_read=self.min_read)
        wanted = self.bytes_read + sum(length for _, length in planned)
        if self.max_header_bytes is not None and wanted > self.max_header_bytes:
            raise UnsupportedTiffError(
                f"header needs {wanted} bytes, more than max_header_bytes={self.max_header_bytes}"
            )
        self._pending = planned
        return None
