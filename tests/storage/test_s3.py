"""S3Backend against moto (auth, buckets, EOF) and against the range server (faults).

moto cannot be told to throttle or break connections, so fault tests point the S3 client's
``endpoint_url`` at the range server, which answers with S3-style XML errors; botocore,
aiobotocore and s3fs run their full, real request path in both cases.
"""

from __future__ import annotations

import logging
import socket
import traceback
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from servers.moto_s3 import MotoS3
from servers.range_server import HTML_PAGE, Fault, RangeServer

from rasteret_assets.storage import (
    RetryPolicy,
    S3Backend,
    StorageBackend,
    StorageError,
    StorageOptions,
)

COG = "rio-tiler/cog.tif"
KEY = f"cogs/{COG}"
FAST_RETRY = RetryPolicy(max_attempts=5, base_delay=0.001, max_delay=0.01)

MakeBackend = Callable[..., S3Backend]


@pytest.fixture
def cog(tiff_fixtures: Path) -> bytes:
    return (tiff_fixtures / COG).read_bytes()


@pytest_asyncio.fixture
async def make_backend() -> AsyncIterator[MakeBackend]:
    """Build S3 backends from StorageOptions keywords; all are closed after the test."""
    created: list[S3Backend] = []

    def make(**options: Any) -> S3Backend:
        backend = S3Backend(StorageOptions(**options))
        created.append(backend)
        return backend

    yield make
    for backend in created:
        await backend.close()


def moto_options(moto: MotoS3, **extra: Any) -> dict[str, Any]:
    return {"endpoint_url": moto.endpoint_url, "region": moto.region, **extra}


def test_is_a_storage_backend() -> None:
    assert isinstance(S3Backend(), StorageBackend)


# -- moto: buckets and credentials --------------------------------------------------------


@pytest.mark.asyncio
async def test_anonymous_read_of_public_bucket(
    moto_s3: MotoS3, make_backend: MakeBackend, cog: bytes
) -> None:
    backend = make_backend(**moto_options(moto_s3, anon=True))
    url = f"s3://{moto_s3.public_bucket}/{KEY}"
    read = await backend.get_range_with_info(url, 0, 16384)
    assert read.data == cog[:16384]
    assert read.info.size == len(cog)
    assert read.info.etag
    assert read.info.last_modified and read.info.last_modified.endswith("+00:00")
    assert await backend.get_range(url, 200_000, 77) == cog[200_000:200_077]


@pytest.mark.asyncio
async def test_anonymous_read_of_private_bucket_is_forbidden_after_one_attempt(
    moto_s3: MotoS3, make_backend: MakeBackend
) -> None:
    backend = make_backend(**moto_options(moto_s3, anon=True))
    # An object of its own, so the test does not depend on the shared fixtures.
    url = moto_s3.put(moto_s3.private_bucket, "tests/private.bin", b"private bytes")
    with pytest.raises(StorageError) as info:
        await FAST_RETRY.call(lambda: backend.get_range(url, 0, 100), url=url)
    assert (info.value.error_class, info.value.attempts) == ("forbidden", 1)
    with pytest.raises(StorageError) as info:
        await backend.head(url)
    assert info.value.error_class == "forbidden"


@pytest.mark.asyncio
async def test_explicit_credentials_read_private_bucket(
    moto_s3: MotoS3, make_backend: MakeBackend, cog: bytes
) -> None:
    backend = make_backend(
        **moto_options(moto_s3, anon=False, key=moto_s3.key_id, secret=moto_s3.secret)
    )
    assert await backend.get_range(f"s3://{moto_s3.private_bucket}/{KEY}", 0, 512) == cog[:512]


@pytest.mark.asyncio
async def test_default_credential_chain_uses_the_environment(
    moto_s3: MotoS3, make_backend: MakeBackend, cog: bytes
) -> None:
    """``anon=None`` signs with whatever the AWS chain finds: here the fixture's dummy env."""
    backend = make_backend(**moto_options(moto_s3))
    assert await backend.get_range(f"s3://{moto_s3.private_bucket}/{KEY}", 0, 64) == cog[:64]


@pytest.mark.asyncio
@pytest.mark.parametrize("where", ["missing-key", "missing-bucket"])
async def test_missing_objects_are_not_found(
    moto_s3: MotoS3, make_backend: MakeBackend, where: str
) -> None:
    backend = make_backend(**moto_options(moto_s3, anon=True))
    bucket = moto_s3.public_bucket if where == "missing-key" else "no-such-bucket-here"
    url = f"s3://{bucket}/cogs/none.tif"
    for call in (lambda: backend.get_range(url, 0, 10), lambda: backend.head(url)):
        with pytest.raises(StorageError) as info:
            await call()
        assert info.value.error_class == "not_found"
        assert not info.value.transient


@pytest.mark.asyncio
async def test_reads_at_and_past_eof(
    moto_s3: MotoS3, make_backend: MakeBackend, cog: bytes
) -> None:
    backend = make_backend(**moto_options(moto_s3, anon=True))
    url = f"s3://{moto_s3.public_bucket}/{KEY}"
    assert await backend.get_range(url, len(cog) - 10, 4096) == cog[-10:]
    past = await backend.get_range_with_info(url, len(cog) + 5, 4096)
    assert past.data == b""
    assert past.info.size == len(cog)  # from S3's InvalidRange <ActualObjectSize>
    assert await backend.get_range(url, 0, 0) == b""


@pytest.mark.asyncio
async def test_get_ranges_and_head(moto_s3: MotoS3, make_backend: MakeBackend, cog: bytes) -> None:
    backend = make_backend(**moto_options(moto_s3, anon=True))
    url = f"s3://{moto_s3.public_bucket}/{KEY}"
    ranges = [(700_000, 64), (0, 8), (8, 8), (len(cog) - 4, 100)]
    assert await backend.get_ranges(url, ranges) == [cog[s : s + n] for s, n in ranges]
    info = await backend.head(url)
    assert info == (await backend.get_range_with_info(url, 0, 1)).info
    assert info.size == len(cog)


@pytest.mark.asyncio
async def test_query_string_is_ignored_and_never_reported(
    moto_s3: MotoS3, make_backend: MakeBackend, cog: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    backend = make_backend(**moto_options(moto_s3, anon=True))
    query = "?X-Amz-Signature=SECRET"
    assert await backend.get_range(f"s3://{moto_s3.public_bucket}/{KEY}{query}", 0, 4) == cog[:4]
    with pytest.raises(StorageError) as info:
        await backend.get_range(f"s3://{moto_s3.public_bucket}/cogs/none.tif{query}", 0, 4)
    assert "SECRET" not in "".join(traceback.format_exception(info.value))
    assert all("SECRET" not in record.getMessage() for record in caplog.records)


@pytest.mark.asyncio
@pytest.mark.parametrize("requester_pays", [True, False])
async def test_requester_pays_header(
    moto_s3: MotoS3, make_backend: MakeBackend, cog: bytes, requester_pays: bool
) -> None:
    """moto does not implement requester pays (no ``PutBucketRequestPayment``, no 403 for a
    missing header), so this checks that the header is sent when asked, and accepted."""
    backend = make_backend(**moto_options(moto_s3, anon=False, requester_pays=requester_pays))
    seen: list[str | None] = []

    def record(request: Any, **_: Any) -> None:
        seen.append(request.headers.get("x-amz-request-payer"))

    fs = await backend.filesystem()
    client = await fs.set_session()
    client.meta.events.register("before-send.s3.GetObject", record)
    client.meta.events.register("before-send.s3.HeadObject", record)
    url = f"s3://{moto_s3.requester_pays_bucket}/{KEY}"
    assert await backend.get_range(url, 0, 256) == cog[:256]
    assert (await backend.head(url)).size == len(cog)
    expected = "requester" if requester_pays else None
    assert [v.decode() if isinstance(v, bytes) else v for v in seen] == [expected, expected]


# -- faults (range server posing as an S3 endpoint) -----------------------------------------


@pytest.fixture
def faulty(range_server: RangeServer, cog: bytes) -> tuple[RangeServer, str]:
    range_server.add_bytes("/faulty-bucket/cog.tif", cog)
    return range_server, "s3://faulty-bucket/cog.tif"


def fault_options(server: RangeServer) -> dict[str, Any]:
    return {
        "anon": True,
        "endpoint_url": server.base_url,
        "region": "us-east-1",
        "read_timeout": 0.3,
        "connect_timeout": 2.0,
    }


@pytest.mark.asyncio
async def test_plain_range_server_works_as_endpoint(
    faulty: tuple[RangeServer, str], make_backend: MakeBackend, cog: bytes
) -> None:
    server, url = faulty
    backend = make_backend(**fault_options(server))
    read = await backend.get_range_with_info(url, 10, 1000)
    assert read.data == cog[10:1010]
    assert read.info.size == len(cog)
    assert server.stats("/faulty-bucket/cog.tif").ranges == ["bytes=10-1009"]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("fault", "error_class"),
    [
        (Fault("503", retry_after=0), "throttled"),
        (Fault("429", retry_after=2), "throttled"),
        (Fault("500"), "server_error"),
        (Fault("404"), "not_found"),
        (Fault("403"), "forbidden"),
        (Fault("reset"), "truncated"),
        (Fault("truncate"), "truncated"),
        (Fault("slow", delay=1.5), "timeout"),
        (Fault("bad_range"), "server_error"),
    ],
    ids=lambda v: str(v)[:30],
)
async def test_fault_maps_to_error_class_without_hidden_retries(
    faulty: tuple[RangeServer, str], make_backend: MakeBackend, fault: Fault, error_class: str
) -> None:
    server, url = faulty
    backend = make_backend(**fault_options(server))
    server.set_fault("/faulty-bucket/cog.tif", fault)
    with pytest.raises(StorageError) as info:
        await backend.get_range(url, 0, 65536)
    assert info.value.error_class == error_class
    # s3fs and botocore retries are off: RetryPolicy is the only retry loop.
    assert server.stats("/faulty-bucket/cog.tif").requests == 1
    if fault.kind in ("503", "429"):
        assert info.value.retry_after == float(fault.retry_after)  # type: ignore[arg-type]


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", ["503", "500", "reset", "truncate", "slow"])
async def test_transient_faults_succeed_through_retry_policy(
    faulty: tuple[RangeServer, str], make_backend: MakeBackend, cog: bytes, kind: str
) -> None:
    server, url = faulty
    backend = make_backend(**fault_options(server))
    clean = await backend.get_range(url, 4096, 65536)
    server.reset()
    server.set_fault("/faulty-bucket/cog.tif", Fault(kind, times=2, retry_after=0, delay=1.5))
    data, attempts = await FAST_RETRY.call(lambda: backend.get_range(url, 4096, 65536), url=url)
    assert attempts == 3
    assert data == clean == cog[4096 : 4096 + 65536]
    assert server.stats("/faulty-bucket/cog.tif").requests == 3


@pytest.mark.asyncio
async def test_connection_refused_is_transient(make_backend: MakeBackend) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    backend = make_backend(anon=True, endpoint_url=f"http://127.0.0.1:{port}", region="us-east-1")
    with pytest.raises(StorageError) as info:
        await backend.get_range("s3://bucket/key.tif", 0, 10)
    assert info.value.error_class == "server_error"
    assert info.value.transient


@pytest.mark.asyncio
async def test_not_an_s3_url(make_backend: MakeBackend) -> None:
    with pytest.raises(StorageError) as info:
        await make_backend(anon=True).get_range("s3://bucket-only", 0, 10)
    assert info.value.error_class == "unsupported"


@pytest.mark.asyncio
async def test_endpoint_ignoring_range_is_read_only_up_to_the_range(
    faulty: tuple[RangeServer, str], make_backend: MakeBackend, cog: bytes
) -> None:
    server, url = faulty
    server.set_fault("/faulty-bucket/cog.tif", Fault("ignore_range"))
    read = await make_backend(**fault_options(server)).get_range_with_info(url, 3000, 100)
    assert read.data == cog[3000:3100]
    assert read.info.size == len(cog)
    capped = make_backend(**fault_options(server), ignored_range_cap=64 * 1024)
    with pytest.raises(StorageError) as info:
        await capped.get_range(url, 500_000, 100)
    assert info.value.error_class == "unsupported"


@pytest.mark.asyncio
async def test_html_page_from_endpoint_is_returned_as_is(
    faulty: tuple[RangeServer, str], make_backend: MakeBackend
) -> None:
    """As over HTTP: storage hands the bytes on, the TIFF parser classifies them."""
    server, url = faulty
    server.set_fault("/faulty-bucket/cog.tif", Fault("html"))
    assert await make_backend(**fault_options(server)).get_range(url, 0, 16384) == HTML_PAGE
