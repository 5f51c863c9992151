"""The one read driver both header readers use: first read, EOF marking, rounds and budget.

``HeaderReadDriver`` does no I/O; these tests play the storage by slicing bytes, and check
what it asks for, in which order, and when it stops asking.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from rasteret_assets.tiff import (
    CorruptTiffError,
    HeaderReadDriver,
    TiffHeader,
    TruncatedTiffError,
    UnsupportedTiffError,
    read_header,
    reader,
)
from rasteret_assets.tiff import driver as tiff_driver
from rasteret_assets.tiff.driver import (
    DEFAULT_FIRST_READ,
    DEFAULT_MAX_HEADER_BYTES,
    DEFAULT_MIN_READ,
    MAX_ROUNDS,
    ReadStats,
)

from .driver_files import IFD_SPACING, huge_tables, scattered_chain


class Storage:
    """Bytes served by slicing, with every read recorded."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.calls: list[tuple[int, int]] = []

    def read(self, offset: int, length: int) -> bytes:
        self.calls.append((offset, length))
        return self.data[offset : offset + length]


def drive(driver: HeaderReadDriver, storage: Storage) -> TiffHeader:
    while reads := driver.next_reads():
        driver.feed(reads, [storage.read(o, n) for o, n in reads])
    assert driver.header is not None
    return driver.header


# ------------------------------------------------------------------------------------------------
# The first read and the defaults


def test_the_first_batch_is_one_read_of_first_read_bytes() -> None:
    assert HeaderReadDriver().next_reads() == [(0, DEFAULT_FIRST_READ)]
    assert HeaderReadDriver(first_read=512).next_reads() == [(0, 512)]


def test_next_reads_repeats_until_fed() -> None:
    driver = HeaderReadDriver(first_read=16)
    assert driver.next_reads() == driver.next_reads() == [(0, 16)]
    assert (driver.reads, driver.bytes_read, driver.rounds) == (0, 0, 0)


def test_the_defaults_are_defined_once() -> None:
    """The reader re-exports the driver's constants instead of keeping its own copies."""
    assert reader.DEFAULT_FIRST_READ is tiff_driver.DEFAULT_FIRST_READ
    assert reader.DEFAULT_MIN_READ is tiff_driver.DEFAULT_MIN_READ
    assert reader.MAX_ROUNDS is tiff_driver.MAX_ROUNDS
    assert reader.ReadStats is ReadStats
    assert (DEFAULT_FIRST_READ, DEFAULT_MIN_READ, MAX_ROUNDS) == (65536, 16384, 16)
    assert DEFAULT_MAX_HEADER_BYTES == 32 << 20


@pytest.mark.parametrize(
    "kwargs",
    [
        {"first_read": 0},
        {"min_read": -1},
        {"max_rounds": 0},
        {"first_read": 4096, "max_header_bytes": 4095},
    ],
)
def test_nonsense_settings_are_refused(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        HeaderReadDriver(**kwargs)


def test_feeding_other_reads_than_asked_is_a_bug() -> None:
    driver = HeaderReadDriver(first_read=16)
    with pytest.raises(ValueError, match="asked for"):
        driver.feed([(0, 32)], [bytes(32)])
    with pytest.raises(ValueError, match="chunks"):
        driver.feed([(0, 16)], [])
    done = HeaderReadDriver()
    drive(done, Storage(scattered_chain(1)))
    with pytest.raises(RuntimeError):
        done.feed([(0, 16)], [bytes(16)])


# ------------------------------------------------------------------------------------------------
# A real COG: one read


@pytest.mark.parametrize(
    "name", ["cog-deflate-u8-1b-b256-utm-ovr3-nodata0", "cog-bigtiff-jpeg-u8-3b-b256-mask"]
)
def test_a_gdal_cog_parses_in_one_64k_read(cog_corpus: list[tuple[str, Path]], name: str) -> None:
    data = dict(cog_corpus)[name].read_bytes()
    storage = Storage(data)
    driver = HeaderReadDriver()
    header = drive(driver, storage)
    assert storage.calls == [(0, 65536)]
    assert (driver.reads, driver.rounds) == (1, 1)
    assert driver.stats == ReadStats(1, min(65536, len(data)))
    assert len(header.ifds) >= 2  # the full-resolution image and its overviews or mask
    assert driver.next_reads() == []


def test_a_small_first_read_costs_rounds_but_reads_each_range_once(
    cog_corpus: list[tuple[str, Path]],
) -> None:
    data = dict(cog_corpus)["cog-deflate-u8-1b-b32-many-tiles"].read_bytes()
    storage = Storage(data)
    driver = HeaderReadDriver(first_read=16)
    drive(driver, storage)
    assert 2 <= driver.rounds <= 3
    assert storage.calls[0] == (0, 16)
    assert all(length >= DEFAULT_MIN_READ for _, length in storage.calls[1:])  # padded
    assert driver.stats == ReadStats(
        len(storage.calls), sum(len(data[o : o + n]) for o, n in storage.calls)
    )


# ------------------------------------------------------------------------------------------------
# End of file


def test_a_short_read_marks_the_end_of_the_file() -> None:
    data = scattered_chain(1)
    driver = HeaderReadDriver()
    reads = driver.next_reads()
    header = driver.feed(reads, [data])  # far shorter than the 64 KiB asked for
    assert header is not None
    assert driver.buffer.file_size == len(data)


def test_a_header_past_a_short_read_is_truncated_without_asking_for_more() -> None:
    """IFD1 lies past the end revealed by the short first read: truncated, not another read."""
    data = scattered_chain(2)[: IFD_SPACING // 2]
    storage = Storage(data)
    with pytest.raises(TruncatedTiffError):
        drive(HeaderReadDriver(), storage)
    assert storage.calls == [(0, DEFAULT_FIRST_READ)]


def test_a_reported_file_size_marks_the_end_too() -> None:
    data = scattered_chain(2)
    driver = HeaderReadDriver()
    reads = driver.next_reads()
    with pytest.raises(TruncatedTiffError):
        # A full first read, but the storage says the file ends right after it.
        driver.feed(reads, [data[:DEFAULT_FIRST_READ]], file_size=DEFAULT_FIRST_READ)


def test_a_short_follow_up_read_marks_the_end_where_it_stopped() -> None:
    data = scattered_chain(3)
    cut = 8 + IFD_SPACING + 200  # IFD1 whole, IFD2 gone
    storage = Storage(data[:cut])
    with pytest.raises(TruncatedTiffError, match=f"ends at byte {cut}"):
        drive(HeaderReadDriver(), storage)
    assert len(storage.calls) == 2


# ------------------------------------------------------------------------------------------------
# The round limit


def test_the_round_limit_makes_a_scattered_chain_corrupt() -> None:
    storage = Storage(scattered_chain(3 * MAX_ROUNDS))
    driver = HeaderReadDriver()
    with pytest.raises(CorruptTiffError, match=f"after {MAX_ROUNDS} rounds of reads"):
        drive(driver, storage)
    # The first read plus one padded read per IFD, and nothing asked after the last round.
    assert len(storage.calls) == driver.reads == driver.rounds == MAX_ROUNDS
    assert storage.calls[1:] == [
        (8 + i * IFD_SPACING, DEFAULT_MIN_READ) for i in range(1, MAX_ROUNDS)
    ]
    assert driver.next_reads() == []


def test_a_chain_within_the_round_limit_parses() -> None:
    storage = Storage(scattered_chain(MAX_ROUNDS))
    driver = HeaderReadDriver()
    header = drive(driver, storage)
    assert len(header.ifds) == MAX_ROUNDS
    assert driver.rounds == MAX_ROUNDS


def test_max_rounds_counts_the_first_read() -> None:
    with pytest.raises(CorruptTiffError, match="after 1 rounds"):
        drive(HeaderReadDriver(max_rounds=1), Storage(scattered_chain(2)))
    header = drive(HeaderReadDriver(max_rounds=1), Storage(scattered_chain(1)))
    assert len(header.ifds) == 1


def test_the_sync_reader_stops_at_the_same_round_limit() -> None:
    data = scattered_chain(MAX_ROUNDS + 1)
    with pytest.raises(CorruptTiffError, match="rounds of reads"):
        read_header(lambda o, n: data[o : o + n])


# ------------------------------------------------------------------------------------------------
# The byte budget


def test_the_budget_refuses_before_the_oversized_read_is_asked() -> None:
    data = huge_tables(256 * 256)  # 512 KiB of tile tables
    storage = Storage(data)
    driver = HeaderReadDriver(max_header_bytes=256 << 10)
    with pytest.raises(UnsupportedTiffError, match="max_header_bytes=262144"):
        drive(driver, storage)
    assert storage.calls == [(0, DEFAULT_FIRST_READ)]  # only the speculative first read
    assert driver.next_reads() == []  # the oversized batch is never handed out


def test_the_budget_counts_bytes_already_read() -> None:
    """Tables that fit after the first read: allowed at exactly the bytes they need."""
    data = huge_tables(256 * 256)
    probe = HeaderReadDriver(max_header_bytes=None)
    drive(probe, Storage(data))
    needed = probe.bytes_read
    assert probe.rounds == 2 and needed > DEFAULT_FIRST_READ
    drive(HeaderReadDriver(max_header_bytes=needed), Storage(data))
    with pytest.raises(UnsupportedTiffError, match=f"needs {needed} bytes"):
        drive(HeaderReadDriver(max_header_bytes=needed - 1), Storage(data))


def test_the_sync_reader_has_the_same_default_budget() -> None:
    data = huge_tables(2048 * 2048)  # 32 MiB of tile tables
    storage = Storage(data)
    with pytest.raises(UnsupportedTiffError, match="max_header_bytes"):
        read_header(storage.read)
    assert storage.calls == [(0, DEFAULT_FIRST_READ)]
    header, stats = read_header(Storage(data).read, max_header_bytes=None)
    assert header.image.tile_offsets.size == 2048 * 2048
    assert stats.bytes_read > DEFAULT_MAX_HEADER_BYTES
