"""First reads learned during a run: bytes per file near the header, about one request each."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from servers.range_server import RangeServer

from rasteret_assets.ingest.headers.engine import HeaderOutcome, fetch_headers
from rasteret_assets.ingest.headers.read_size import (
    MARGIN,
    START_READ,
    WARMUP,
    LearnedFirstReads,
)
from rasteret_assets.storage import StorageOptions, StorageRouter
from rasteret_assets.storage.policy import url_origin
from rasteret_assets.tiff import HeaderReadDriver

#: Real COGs whose headers end within a few KiB (ghost header, IFDs, tile tables).
COGS = ("rio-tiler/cog.tif", "rasterio/cogeo.tif", "rio-tiler/cog_ovr.tif")


def header_extent(data: bytes) -> int:
    """How far into ``data`` its header reaches, read locally with the same driver."""
    driver = HeaderReadDriver(first_read=len(data))
    driver.feed([(0, len(data))], [data], file_size=len(data))
    return driver.buffer.extent


def read_all(urls: list[str], **engine: int) -> list[HeaderOutcome]:
    async def run() -> list[HeaderOutcome]:
        backend = StorageRouter(StorageOptions())
        try:
            return [o async for o in fetch_headers(urls, backend, max_concurrent=4, **engine)]
        finally:
            await backend.close()

    return asyncio.run(run())


@pytest.fixture
def mix(range_server: RangeServer, tiff_fixtures: Path) -> tuple[list[str], dict[str, int]]:
    """300 URLs over three real COGs on one host, and each URL's true header extent."""
    blobs = [(tiff_fixtures / name).read_bytes() for name in COGS]
    extents = {}
    for i in range(300):
        range_server.add_bytes(f"/learn/{i}.tif", blobs[i % 3])
        extents[range_server.url(f"/learn/{i}.tif")] = header_extent(blobs[i % 3])
    return list(extents), extents


def test_bytes_per_file_follow_the_header_size_in_one_request(
    mix: tuple[list[str], dict[str, int]],
) -> None:
    urls, extents = mix
    outcomes = read_all(urls)
    assert all(o.ok for o in outcomes)
    assert {o.header_extent for o in outcomes} == set(extents.values())
    assert sum(o.requests for o in outcomes) <= 1.05 * len(urls)
    learned = outcomes[WARMUP + 8 :]  # after the warm-up, at the learned size
    largest = max(extents.values())
    assert all(o.bytes_read <= largest + MARGIN + 1024 for o in learned)
    mean_bytes = sum(o.bytes_read for o in learned) / len(learned)
    mean_header = sum(extents[o.url] for o in learned) / len(learned)
    assert mean_bytes <= 1.5 * mean_header + 4096
    assert mean_bytes < START_READ  # smaller than the fixed start, let alone 64 KiB


def test_a_given_first_read_is_used_as_is(mix: tuple[list[str], dict[str, int]]) -> None:
    urls, _ = mix
    outcomes = read_all(urls[:20], first_read=65536)
    sizes = {o.url: o.size for o in outcomes}
    assert all(o.bytes_read == min(65536, sizes[o.url]) for o in outcomes)


def test_a_host_starts_small_then_follows_a_high_percentile_of_its_headers() -> None:
    sizes = LearnedFirstReads()
    a, b = "https://a.example/x/1.tif", "https://b.example/1.tif"
    assert sizes.size_for(a) == START_READ
    for i in range(WARMUP):
        sizes.record(a, 3000 + (i % 4) * 100)  # extents 3000..3300
    assert 3300 + MARGIN <= sizes.size_for(a) <= 3300 + MARGIN + 1024
    assert sizes.size_for(b) == START_READ  # another host learns on its own
    for _ in range(400):
        sizes.record(a, 40_000)  # the host's files changed: the size follows them
    assert sizes.size_for(a) >= 40_000 + MARGIN


def test_a_learned_size_stays_within_the_header_budget() -> None:
    sizes = LearnedFirstReads(ceiling=8192)
    for _ in range(WARMUP):
        sizes.record("s3://bucket/k.tif", 1 << 20)
    assert sizes.size_for("s3://bucket/other.tif") == 8192


def test_urls_group_by_scheme_and_host() -> None:
    assert url_origin("https://h.example:8443/a/b.tif?sig=1") == "https://h.example:8443"
    assert url_origin("s3://bucket/key.tif") == "s3://bucket"
    assert url_origin("/data/local.tif") == ""
