"""HttpBackend against hostile and broken servers: redirects, encodings, endless or wrong bodies,
TLS mistakes and DNS failures. Real servers on 127.0.0.1 throughout."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio
from aiohttp.abc import AbstractResolver, ResolveResult
from servers.range_server import Fault, RangeServer, self_signed_tls

from rasteret_assets.storage import HttpBackend, RetryPolicy, StorageError, StorageOptions
from rasteret_assets.storage.policy import UrlPolicy

DATA = bytes(range(256)) * 1024  # 256 KiB
CAP = 1024 * 1024


@pytest.fixture
def blob_url(range_server: RangeServer) -> str:
    return range_server.add_bytes("/hostile/blob.bin", DATA)


@pytest_asyncio.fixture
async def backend() -> AsyncIterator[HttpBackend]:
    http = HttpBackend(StorageOptions(connect_timeout=2.0, read_timeout=2.0, ignored_range_cap=CAP))
    yield http
    await http.close()


async def error_of(
    backend: HttpBackend, url: str, start: int = 0, length: int = 1024
) -> StorageError:
    with pytest.raises(StorageError) as info:
        await backend.get_range(url, start, length)
    return info.value


# -- redirects ---------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_redirects_are_followed_to_the_object(
    backend: HttpBackend, range_server: RangeServer, blob_url: str
) -> None:
    range_server.set_fault("/hostile/hop1", Fault("redirect", location="/hostile/hop2"))
    range_server.set_fault("/hostile/hop2", Fault("redirect", location=blob_url))
    read = await backend.get_range_with_info(range_server.url("/hostile/hop1"), 10, 100)
    assert read.data == DATA[10:110]
    assert read.info.size == len(DATA)
    assert range_server.stats("/hostile/blob.bin").ranges == ["bytes=10-109"]
    assert (await backend.head(range_server.url("/hostile/hop1"))).size == len(DATA)


@pytest.mark.asyncio
async def test_redirect_loop_ends_as_unsupported(
    backend: HttpBackend, range_server: RangeServer
) -> None:
    range_server.set_fault("/hostile/loop", Fault("redirect_loop"))
    error = await error_of(backend, range_server.url("/hostile/loop"))
    assert error.error_class == "unsupported"
    assert "redirect loop" in error.detail
    assert range_server.stats("/hostile/loop").requests == 1  # noticed, not re-requested
    range_server.set_fault("/hostile/ping", Fault("redirect", location="pong"))
    range_server.set_fault("/hostile/pong", Fault("redirect", location="ping"))
    error = await error_of(backend, range_server.url("/hostile/ping"))
    assert error.error_class == "unsupported"
    assert "redirect loop back to " + range_server.url("/hostile/ping") in error.detail


@pytest.mark.asyncio
async def test_too_many_redirects_end_as_unsupported(range_server: RangeServer) -> None:
    for hop in range(4):
        range_server.set_fault(
            f"/hostile/chain{hop}", Fault("redirect", location=f"chain{hop + 1}")
        )
    backend = HttpBackend(StorageOptions(max_redirects=2))
    error = await error_of(backend, range_server.url("/hostile/chain0"))
    await backend.close()
    assert error.error_class == "unsupported"
    assert "more than 2 redirects" in error.detail
    assert range_server.stats("/hostile/chain3").requests == 0


@pytest.mark.parametrize(
    ("location", "reason"),
    [
        ("http://169.254.169.254/latest/meta-data/?X-Amz-Signature=SECRET", "link-local"),
        ("http://metadata.google.internal/computeMetadata/v1/?sig=SECRET", "metadata host"),
        ("file:///etc/passwd?SECRET", "non-HTTP"),
        ("s3://bucket/key?SECRET", "non-HTTP"),
    ],
)
@pytest.mark.asyncio
async def test_redirect_to_a_forbidden_url_is_refused_before_connecting(
    backend: HttpBackend,
    range_server: RangeServer,
    location: str,
    reason: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    range_server.set_fault("/hostile/to-metadata", Fault("redirect", location=location))
    started = time.perf_counter()
    error = await error_of(backend, range_server.url("/hostile/to-metadata") + "?sig=SECRET")
    assert time.perf_counter() - started < 1.0  # no connection attempt to the target
    assert error.error_class == "forbidden_url"
    assert reason in error.detail
    assert error.url == range_server.url("/hostile/to-metadata")
    assert "SECRET" not in str(error)
    assert all("SECRET" not in record.getMessage() for record in caplog.records)


@pytest.mark.asyncio
async def test_redirect_to_a_host_outside_the_allowed_patterns(range_server: RangeServer) -> None:
    range_server.set_fault("/hostile/away", Fault("redirect", location="http://localhost/x"))
    policy = UrlPolicy(allowed_hosts=("127.0.0.1",))
    backend = HttpBackend(StorageOptions(url_policy=policy))
    error = await error_of(backend, range_server.url("/hostile/away"))
    await backend.close()
    assert error.error_class == "forbidden_url"
    assert "host 'localhost'" in error.detail


# -- DNS ----------------------------------------------------------------------------------------


class FixedResolver(AbstractResolver):
    """Answers every name with one address.

    Test double for DNS itself: making a real name resolve to 169.254.169.254 would need
    /etc/hosts or a DNS server, neither of which a test may change.
    """

    def __init__(self, address: str) -> None:
        self.address = address
        self.asked: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.asked.append(host)
        return [
            {
                "hostname": host,
                "host": self.address,
                "port": port,
                "family": socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
        ]

    async def close(self) -> None:
        return None


@pytest.mark.asyncio
async def test_a_name_resolving_to_the_metadata_address_is_refused() -> None:
    resolver = FixedResolver("169.254.169.254")
    backend = HttpBackend(StorageOptions(connect_timeout=1.0), resolver=resolver)
    error = await error_of(backend, "http://innocent-looking.example.com/x.tif")
    await backend.close()
    assert resolver.asked == ["innocent-looking.example.com"]
    assert error.error_class == "forbidden_url"
    assert "resolves to 169.254.169.254" in error.detail


@pytest.mark.asyncio
async def test_a_name_resolving_to_an_ordinary_address_connects(
    range_server: RangeServer, blob_url: str
) -> None:
    backend = HttpBackend(StorageOptions(), resolver=FixedResolver("127.0.0.1"))
    url = f"http://cogs.example.com:{range_server.port}/hostile/blob.bin"
    assert await backend.get_range(url, 0, 16) == DATA[:16]
    await backend.close()


@pytest.mark.asyncio
async def test_unresolvable_host_is_not_found_and_permanent(backend: HttpBackend) -> None:
    retry = RetryPolicy(max_attempts=5, base_delay=0.001)
    started = time.perf_counter()
    with pytest.raises(StorageError) as info:
        await retry.call(
            lambda: backend.get_range("http://cogs.example.invalid/x.tif", 0, 8), url=""
        )
    assert time.perf_counter() - started < 1.0
    assert (info.value.error_class, info.value.attempts) == ("not_found", 1)
    assert "cogs.example.invalid" in info.value.detail


# -- bodies that are not what was asked for -----------------------------------------------------


@pytest.mark.asyncio
async def test_gzip_encoded_range_is_refused_not_parsed(
    backend: HttpBackend, range_server: RangeServer, blob_url: str
) -> None:
    range_server.set_fault("/hostile/blob.bin", Fault("gzip"))
    error = await error_of(backend, blob_url)
    assert error.error_class == "unsupported"
    assert "Content-Encoding 'gzip'" in error.detail


@pytest.mark.parametrize(
    ("content_range", "needle"),
    [
        (None, "without a usable Content-Range"),
        ("bytes abc", "without a usable Content-Range"),
        ("bytes 5-1028/262144", "server sent from 5"),
        ("bytes 0-1023/512", "ends past the size 512"),
        ("bytes */262144", "without a usable Content-Range"),
    ],
)
@pytest.mark.asyncio
async def test_wrong_content_range_is_a_server_error(
    backend: HttpBackend,
    range_server: RangeServer,
    blob_url: str,
    content_range: str | None,
    needle: str,
) -> None:
    range_server.set_fault("/hostile/blob.bin", Fault("content_range", content_range=content_range))
    error = await error_of(backend, blob_url)
    assert error.error_class == "server_error"
    assert needle in error.detail


@pytest.mark.asyncio
async def test_short_200_is_truncated(
    backend: HttpBackend, range_server: RangeServer, blob_url: str
) -> None:
    range_server.set_fault("/hostile/blob.bin", Fault("short_200"))
    error = await error_of(backend, blob_url, 0, len(DATA))
    assert error.error_class == "truncated"


@pytest.mark.asyncio
async def test_huge_body_ignoring_range_is_read_only_to_the_range(
    backend: HttpBackend, range_server: RangeServer, blob_url: str
) -> None:
    range_server.set_fault("/hostile/blob.bin", Fault("huge_body"))
    assert await backend.get_range(blob_url, 100, 1000) == DATA[100:1100]
    range_server.set_fault("/hostile/blob.bin", Fault("huge_body"))
    error = await error_of(backend, blob_url, 10 * CAP, 1000)
    assert error.error_class == "unsupported"
    assert "exceeds the cap" in error.detail
    # The server streams 1 GiB unless the client hangs up; socket buffers hold a few MiB.
    assert range_server.stats("/hostile/blob.bin").bytes_served < 32 * CAP


# -- TLS mistakes -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RangeServer]:
    context, _ = self_signed_tls(tmp_path_factory.mktemp("tls"))
    server = RangeServer(ssl_context=context).start()
    server.add_bytes("/blob.bin", DATA)
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.asyncio
async def test_https_to_a_plain_http_port_is_unsupported(
    backend: HttpBackend, range_server: RangeServer, blob_url: str
) -> None:
    error = await error_of(backend, blob_url.replace("http://", "https://"))
    assert error.error_class == "unsupported"
    assert "TLS failed" in error.detail
    assert error.url.startswith("https://127.0.0.1:")


@pytest.mark.asyncio
async def test_untrusted_certificate_is_unsupported(
    backend: HttpBackend, tls_server: RangeServer
) -> None:
    error = await error_of(backend, tls_server.url("/blob.bin"))
    assert error.error_class == "unsupported"
    assert "CERTIFICATE_VERIFY_FAILED" in error.detail


@pytest.mark.asyncio
async def test_http_to_a_tls_port_is_a_bounded_server_error(
    backend: HttpBackend, tls_server: RangeServer
) -> None:
    url = tls_server.url("/blob.bin").replace("https://", "http://")
    retry = RetryPolicy(max_attempts=3, base_delay=0.001, max_delay=0.01)
    with pytest.raises(StorageError) as info:
        await retry.call(lambda: backend.get_range(url, 0, 8), url=url)
    assert (info.value.error_class, info.value.attempts) == ("server_error", 3)
    assert "TLS-only port" in info.value.detail
