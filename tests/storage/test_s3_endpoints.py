"""S3Backend endpoint mistakes end as clear, bounded errors that name the endpoint."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from servers.moto_s3 import MotoS3
from servers.range_server import RangeServer, self_signed_tls

from rasteret_assets.storage import RetryPolicy, S3Backend, StorageError, StorageOptions

RETRY = RetryPolicy(max_attempts=3, base_delay=0.001, max_delay=0.01)


@pytest.fixture(scope="module")
def tls_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A TLS-only port (an HTTPS range server) for the http:// mistake."""
    context, _ = self_signed_tls(tmp_path_factory.mktemp("tls"))
    server = RangeServer(ssl_context=context).start()
    assert server.port is not None
    try:
        yield server.port
    finally:
        server.stop()


async def read_error(moto_s3: MotoS3, endpoint_url: str) -> tuple[StorageError, float]:
    url = moto_s3.put(moto_s3.public_bucket, "endpoints/x.bin", b"x" * 64)
    backend = S3Backend(StorageOptions(endpoint_url=endpoint_url, region=moto_s3.region, anon=True))
    started = time.perf_counter()
    try:
        with pytest.raises(StorageError) as info:
            await RETRY.call(lambda: backend.get_range(url, 0, 8), url=url)
    finally:
        await backend.close()
    return info.value, time.perf_counter() - started


@pytest.mark.asyncio
async def test_https_endpoint_that_speaks_plain_http(moto_s3: MotoS3) -> None:
    endpoint = moto_s3.endpoint_url.replace("http://", "https://")
    error, elapsed = await read_error(moto_s3, endpoint)
    assert (error.error_class, error.attempts) == ("unsupported", 1)
    assert f"TLS failed with endpoint {endpoint}" in error.detail
    assert elapsed < 5


@pytest.mark.asyncio
async def test_http_endpoint_on_a_tls_port(moto_s3: MotoS3, tls_port: int) -> None:
    endpoint = f"http://127.0.0.1:{tls_port}"
    error, elapsed = await read_error(moto_s3, endpoint)
    assert (error.error_class, error.attempts) == ("server_error", RETRY.max_attempts)
    assert f"(endpoint {endpoint}" in error.detail
    assert "TLS-only port" in error.detail
    assert elapsed < 5


@pytest.mark.asyncio
async def test_endpoint_whose_host_does_not_resolve(moto_s3: MotoS3) -> None:
    endpoint = "http://s3.example.invalid:9000"
    error, elapsed = await read_error(moto_s3, endpoint)
    assert (error.error_class, error.attempts) == ("not_found", 1)
    assert f"(endpoint {endpoint}" in error.detail
    assert "does not resolve" in error.detail
    assert elapsed < 5


@pytest.mark.parametrize(
    "endpoint", ["http://169.254.169.254", "http://[fd00:ec2::254]:80", "http://metadata"]
)
@pytest.mark.asyncio
async def test_endpoint_on_a_metadata_address_is_refused_without_connecting(
    moto_s3: MotoS3, endpoint: str
) -> None:
    error, elapsed = await read_error(moto_s3, endpoint)
    assert (error.error_class, error.attempts) == ("forbidden_url", 1)
    assert f"(endpoint {endpoint}" in error.detail
    assert elapsed < 1
