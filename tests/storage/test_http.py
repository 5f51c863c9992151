"""HttpBackend against the real range server on 127.0.0.1 (no mocks)."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
import traceback
from collections.abc import AsyncIterator
from email.utils import formatdate
from pathlib import Path

import pytest
import pytest_asyncio
from servers.range_server import HTML_PAGE, Fault, RangeServer

from rasteret_assets.storage import (
    HttpBackend,
    RetryPolicy,
    StorageBackend,
    StorageError,
    StorageOptions,
)

COG = "rio-tiler/cog.tif"
FAST_RETRY = RetryPolicy(max_attempts=5, base_delay=0.001, max_delay=0.01)


@pytest.fixture
def cog(tiff_fixtures: Path) -> bytes:
    return (tiff_fixtures / COG).read_bytes()


@pytest.fixture
def cog_url(range_server: RangeServer, cog: bytes) -> str:
    """The real COG at its own path, so faults set on it touch nothing else."""
    return range_server.add_bytes("/http/cog.tif", cog)


@pytest_asyncio.fixture
async def backend() -> AsyncIterator[HttpBackend]:
    http = HttpBackend(StorageOptions(connect_timeout=2.0, read_timeout=0.3))
    yield http
    await http.close()


def test_is_a_storage_backend() -> None:
    assert isinstance(HttpBackend(), StorageBackend)


# -- clean reads ---------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_get_range_matches_the_file(
    backend: HttpBackend, range_server: RangeServer, tiff_fixtures: Path, cog: bytes
) -> None:
    url = range_server.url(f"/fixtures/{COG}")
    assert await backend.get_range(url, 0, 16384) == cog[:16384]
    assert await backend.get_range(url, 100_000, 300) == cog[100_000:100_300]
    stats = range_server.stats(f"/fixtures/{COG}")
    assert stats.requests == 2
    assert stats.bytes_served == 16384 + 300
    assert stats.ranges == ["bytes=0-16383", "bytes=100000-100299"]


@pytest.mark.asyncio
async def test_get_range_with_info_reports_identity_from_the_same_get(
    backend: HttpBackend, range_server: RangeServer, cog_url: str, cog: bytes
) -> None:
    read = await backend.get_range_with_info(cog_url, 0, 1024)
    assert read.data == cog[:1024]
    assert read.info.size == len(cog)
    assert read.info.etag and read.info.etag.startswith('"')
    assert read.info.last_modified and read.info.last_modified.endswith("+00:00")
    assert range_server.stats("/http/cog.tif").methods == ["GET"]


@pytest.mark.asyncio
async def test_reads_at_and_past_eof(
    backend: HttpBackend, range_server: RangeServer, cog_url: str, cog: bytes
) -> None:
    assert await backend.get_range(cog_url, len(cog) - 10, 4096) == cog[-10:]
    past = await backend.get_range_with_info(cog_url, len(cog) + 5, 4096)  # 416
    assert past.data == b""
    assert past.info.size == len(cog)
    assert await backend.get_range(cog_url, 0, 0) == b""  # no request at all
    assert range_server.stats("/http/cog.tif").requests == 2


@pytest.mark.asyncio
async def test_get_ranges_coalesces_nearby_ranges(
    backend: HttpBackend, range_server: RangeServer, cog_url: str, cog: bytes
) -> None:
    ranges = [(400_000, 100), (16, 8), (0, 8), (1_000, 50)]
    out = await backend.get_ranges(cog_url, ranges)
    assert out == [cog[s : s + n] for s, n in ranges]
    # (0, 8), (16, 8) and (1000, 50) share one GET; 400000 is too far away.
    assert range_server.stats("/http/cog.tif").requests == 2


@pytest.mark.asyncio
async def test_head(
    backend: HttpBackend, range_server: RangeServer, cog_url: str, cog: bytes
) -> None:
    info = await backend.head(cog_url)
    assert info.size == len(cog)
    assert info == (await backend.get_range_with_info(cog_url, 0, 1)).info
    assert range_server.stats("/http/cog.tif").methods == ["HEAD", "GET"]


@pytest.mark.asyncio
async def test_head_falls_back_to_a_one_byte_get(
    backend: HttpBackend, range_server: RangeServer, cog_url: str, cog: bytes
) -> None:
    # Presigned GET URLs answer HEAD with 403; the fallback GET still gets the facts.
    range_server.set_fault("/http/cog.tif", Fault("403", times=1))
    assert (await backend.head(cog_url)).size == len(cog)
    stats = range_server.stats("/http/cog.tif")
    assert stats.methods == ["HEAD", "GET"]
    assert stats.ranges[1] == "bytes=0-0"


@pytest.mark.asyncio
async def test_head_of_missing_object(backend: HttpBackend, range_server: RangeServer) -> None:
    with pytest.raises(StorageError) as info:
        await backend.head(range_server.url("/http/missing.tif"))
    assert info.value.error_class == "not_found"


# -- faults: one attempt, the right class ---------------------------------------------------

FAULT_CLASSES = [
    (Fault("503", retry_after=0), "throttled"),
    (Fault("429", retry_after="1"), "throttled"),
    (Fault("500"), "server_error"),
    (Fault("404"), "not_found"),
    (Fault("403"), "forbidden"),
    (Fault("reset"), "truncated"),
    (Fault("truncate"), "truncated"),
    (Fault("slow", delay=1.5), "timeout"),
    (Fault("bad_range"), "server_error"),
]


@pytest.mark.asyncio
@pytest.mark.parametrize(("fault", "error_class"), FAULT_CLASSES, ids=lambda v: str(v)[:30])
async def test_fault_maps_to_error_class(
    backend: HttpBackend, range_server: RangeServer, cog_url: str, fault: Fault, error_class: str
) -> None:
    range_server.set_fault("/http/cog.tif", fault)
    with pytest.raises(StorageError) as info:
        await backend.get_range(cog_url, 0, 65536)
    assert info.value.error_class == error_class
    assert range_server.stats("/http/cog.tif").requests == 1  # the backend never retries
    if fault.kind in ("503", "429"):
        assert info.value.retry_after == float(fault.retry_after)  # type: ignore[arg-type]


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", ["503", "429", "500", "reset", "truncate", "slow", "bad_range"])
async def test_transient_faults_succeed_through_retry_policy(
    backend: HttpBackend, range_server: RangeServer, cog_url: str, cog: bytes, kind: str
) -> None:
    clean = await backend.get_range(cog_url, 1000, 65536)
    range_server.reset()
    range_server.set_fault("/http/cog.tif", Fault(kind, times=2, retry_after=0, delay=1.5))
    data, attempts = await FAST_RETRY.call(
        lambda: backend.get_range(cog_url, 1000, 65536), url=cog_url
    )
    assert attempts == 3
    assert data == clean == cog[1000 : 1000 + 65536]
    assert range_server.stats("/http/cog.tif").requests == 3


@pytest.mark.asyncio
@pytest.mark.parametrize(("kind", "error_class"), [("404", "not_found"), ("403", "forbidden")])
async def test_permanent_faults_fail_after_exactly_one_attempt(
    backend: HttpBackend, range_server: RangeServer, cog_url: str, kind: str, error_class: str
) -> None:
    range_server.set_fault("/http/cog.tif", Fault(kind))
    with pytest.raises(StorageError) as info:
        await FAST_RETRY.call(lambda: backend.get_range(cog_url, 0, 100), url=cog_url)
    assert (info.value.error_class, info.value.attempts) == (error_class, 1)
    assert range_server.stats("/http/cog.tif").requests == 1


@pytest.mark.asyncio
async def test_retry_after_zero_overrides_a_long_backoff(
    backend: HttpBackend, range_server: RangeServer, cog_url: str, cog: bytes
) -> None:
    range_server.set_fault("/http/cog.tif", Fault("503", times=2, retry_after=0))
    slow_policy = RetryPolicy(base_delay=30.0, max_delay=30.0)
    started = time.monotonic()
    data, attempts = await slow_policy.call(lambda: backend.get_range(cog_url, 0, 10), url=cog_url)
    assert (data, attempts) == (cog[:10], 3)
    assert time.monotonic() - started < 5


@pytest.mark.asyncio
async def test_retry_after_as_http_date(
    backend: HttpBackend, range_server: RangeServer, cog_url: str
) -> None:
    range_server.set_fault("/http/cog.tif", Fault("503", retry_after=formatdate(time.time() + 30)))
    with pytest.raises(StorageError) as info:
        await backend.get_range(cog_url, 0, 10)
    assert info.value.retry_after == pytest.approx(30, abs=2)


@pytest.mark.asyncio
async def test_connection_refused_is_a_transient_server_error(backend: HttpBackend) -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(StorageError) as info:
        await backend.get_range(f"http://127.0.0.1:{port}/x.tif", 0, 10)
    assert info.value.error_class == "server_error"
    assert info.value.transient


# -- servers that ignore Range, or answer with something else --------------------------------


@pytest.mark.asyncio
async def test_server_ignoring_range_is_read_only_up_to_the_range(
    backend: HttpBackend, range_server: RangeServer, cog_url: str, cog: bytes
) -> None:
    range_server.set_fault("/http/cog.tif", Fault("ignore_range"))
    read = await backend.get_range_with_info(cog_url, 5000, 100)
    assert read.data == cog[5000:5100]
    assert read.info.size == len(cog)


@pytest.mark.asyncio
async def test_server_ignoring_range_beyond_the_cap_is_refused(
    range_server: RangeServer, cog_url: str
) -> None:
    range_server.set_fault("/http/cog.tif", Fault("ignore_range"))
    capped = HttpBackend(StorageOptions(ignored_range_cap=64 * 1024))
    try:
        with pytest.raises(StorageError) as info:
            await capped.get_range(cog_url, 500_000, 100)
        assert info.value.error_class == "unsupported"
        assert not info.value.transient
    finally:
        await capped.close()


@pytest.mark.asyncio
async def test_html_page_with_200_is_returned_as_is(
    backend: HttpBackend, range_server: RangeServer, cog_url: str
) -> None:
    """Storage cannot tell a login page from data; the TIFF parser classifies it not_tiff."""
    range_server.set_fault("/http/cog.tif", Fault("html"))
    data = await backend.get_range(cog_url, 0, 16384)
    assert data == HTML_PAGE
    assert data[:4] not in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


# -- secrets never leak ---------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", ["403", "404", "503", "reset", "truncate", "slow", "refused"])
async def test_signed_url_secret_never_appears_in_errors_or_logs(
    backend: HttpBackend,
    range_server: RangeServer,
    cog_url: str,
    caplog: pytest.LogCaptureFixture,
    kind: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    query = "?X-Amz-Credential=AKIDSECRET&X-Amz-Signature=SECRET"
    if kind == "refused":
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        url = f"http://user:SECRET@127.0.0.1:{port}/x.tif{query}"
    else:
        range_server.set_fault("/http/cog.tif", Fault(kind, delay=1.5))
        url = cog_url + query
    policy = RetryPolicy(max_attempts=2, base_delay=0.001)
    with pytest.raises(StorageError) as info:
        await policy.call(lambda: backend.get_range(url, 0, 65536), url=url)
    error = info.value
    rendered = "".join(traceback.format_exception(error))
    for text in (str(error), repr(error), error.url, rendered):
        assert "SECRET" not in text
    assert caplog.records  # the backend and the policy did log
    for record in caplog.records:
        assert "SECRET" not in record.getMessage()
        assert "SECRET" not in (record.exc_text or "")


# -- connection pool ------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_connection_limit_caps_tcp_connections(
    range_server: RangeServer, cog_url: str, cog: bytes
) -> None:
    range_server.latency = 0.05
    limited = HttpBackend(StorageOptions(max_connections=4, max_connections_per_host=0))
    try:
        offsets = [i * 4096 for i in range(40)]
        out = await asyncio.gather(*(limited.get_range(cog_url, o, 100) for o in offsets))
    finally:
        await limited.close()
    assert out == [cog[o : o + 100] for o in offsets]
    assert range_server.stats("/http/cog.tif").requests == 40
    assert range_server.connections_accepted <= 4
    assert range_server.max_in_flight == 4  # the pool was used to its limit, not beyond


@pytest.mark.asyncio
async def test_per_host_limit_caps_tcp_connections(range_server: RangeServer, cog_url: str) -> None:
    range_server.latency = 0.05
    limited = HttpBackend(StorageOptions(max_connections=50, max_connections_per_host=2))
    try:
        await asyncio.gather(*(limited.get_range(cog_url, i * 10, 10) for i in range(12)))
    finally:
        await limited.close()
    assert range_server.connections_accepted <= 2
    assert range_server.max_in_flight == 2


def test_backend_survives_successive_event_loops(range_server: RangeServer, cog_url: str) -> None:
    """Dagster runs each materialization under its own ``asyncio.run``: one backend object
    must work in each, reopening its pool after ``close``."""
    http = HttpBackend()

    async def read_and_close() -> bytes:
        try:
            return await http.get_range(cog_url, 0, 8)
        finally:
            await http.close()

    assert asyncio.run(read_and_close()) == asyncio.run(read_and_close())
    assert range_server.connections_accepted == 2
