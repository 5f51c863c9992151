"""StorageRouter: one options object, mixed URLs, rewrites onto moto."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import FrozenInstanceError, fields
from pathlib import Path

import pytest
import pytest_asyncio
from servers.moto_s3 import MotoS3
from servers.range_server import RangeServer

from rasteret_assets.storage import (
    HttpBackend,
    LocalBackend,
    ObjectInfo,
    S3Backend,
    StorageBackend,
    StorageError,
    StorageOptions,
    StorageRouter,
    url_kind,
)

COG = "rio-tiler/cog.tif"


@pytest.fixture
def cog(tiff_fixtures: Path) -> bytes:
    return (tiff_fixtures / COG).read_bytes()


@pytest_asyncio.fixture
async def router(moto_s3: MotoS3) -> AsyncIterator[StorageRouter]:
    options = StorageOptions(
        anon=True,
        endpoint_url=moto_s3.endpoint_url,
        region=moto_s3.region,
    )
    storage = StorageRouter(options)
    yield storage
    await storage.close()


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("https://h/x.tif", "http"),
        ("HTTP://h/x.tif", "http"),
        ("s3://b/k.tif", "s3"),
        ("s3a://b/k.tif", "s3"),
        ("file:///x.tif", "local"),
        ("/abs/x.tif", "local"),
        ("rel/x.tif", "local"),
    ],
)
def test_url_kind(url: str, kind: str) -> None:
    assert url_kind(url) == kind


def test_unknown_scheme_is_unsupported() -> None:
    with pytest.raises(StorageError) as info:
        StorageRouter().resolve("gs://bucket/x.tif?sig=SECRET")
    assert info.value.error_class == "unsupported"
    assert "SECRET" not in str(info.value)


def test_router_is_a_storage_backend() -> None:
    assert isinstance(StorageRouter(), StorageBackend)


@pytest.mark.asyncio
async def test_mixed_urls_through_one_options_object(
    router: StorageRouter,
    range_server: RangeServer,
    moto_s3: MotoS3,
    tiff_fixtures: Path,
    cog: bytes,
) -> None:
    urls = {
        "local": str(tiff_fixtures / COG),
        "file": (tiff_fixtures / COG).resolve().as_uri(),
        "http": range_server.url(f"/fixtures/{COG}"),
        "s3": f"s3://{moto_s3.public_bucket}/cogs/{COG}",
    }
    for name, url in urls.items():
        assert await router.get_range(url, 0, 4096) == cog[:4096], name
        assert await router.get_ranges(url, [(10, 5), (300_000, 5)]) == [
            cog[10:15],
            cog[300_000:300_005],
        ], name
        read = await router.get_range_with_info(url, 0, 8)
        assert (read.data, read.info.size) == (cog[:8], len(cog)), name
        assert (await router.head(url)).size == len(cog), name
    kinds = {type(router.resolve(u)[1]) for u in urls.values()}
    assert kinds == {LocalBackend, HttpBackend, S3Backend}


@pytest.mark.asyncio
async def test_the_router_reads_the_url_it_is_given_unrewritten(
    moto_s3: MotoS3, range_server: RangeServer
) -> None:
    """Rewrites belong to sources (applied once, at record time); the router never chains
    another onto the stored href."""
    assert "url_rewrite_patterns" not in {f.name for f in fields(StorageOptions)}
    router = StorageRouter(StorageOptions(anon=True, endpoint_url=moto_s3.endpoint_url))
    url = range_server.url(f"/fixtures/{COG}")
    assert router.resolve(url)[0] == url
    with pytest.raises(StorageError) as info:
        await router.get_range(f"s3://{moto_s3.public_bucket}/missing.tif?sig=SECRET", 0, 8)
    assert info.value.error_class == "not_found"
    await router.close()


@pytest.mark.asyncio
async def test_backends_are_created_once_and_lazily(router: StorageRouter) -> None:
    assert router.resolve("s3://b/k")[1] is router.resolve("s3://b/other")[1]
    assert router.resolve("https://h/x")[1] is router.resolve("http://other/y")[1]


class RecordingBackend:
    """A minimal third-party backend: only the Protocol, no get_range_with_info."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.closed = False

    async def get_range(self, url: str, start: int, length: int) -> bytes:
        self.calls.append(("get_range", url))
        return b"x" * length

    async def get_ranges(self, url: str, ranges: list[tuple[int, int]]) -> list[bytes]:
        self.calls.append(("get_ranges", url))
        return [b"x" * n for _, n in ranges]

    async def head(self, url: str) -> ObjectInfo:
        self.calls.append(("head", url))
        return ObjectInfo(size=1)

    async def close(self) -> None:
        self.closed = True


@pytest.mark.asyncio
async def test_injected_backend_is_used_and_closed() -> None:
    custom = RecordingBackend()
    router = StorageRouter(StorageOptions(), http=custom)
    read = await router.get_range_with_info("https://a/x.tif", 0, 3)
    assert read.data == b"xxx"
    assert read.info == ObjectInfo()  # unknown: the backend cannot report it
    await router.get_ranges("https://a/x.tif", [(0, 1)])
    await router.head("https://a/x.tif")
    assert custom.calls == [
        ("get_range", "https://a/x.tif"),
        ("get_ranges", "https://a/x.tif"),
        ("head", "https://a/x.tif"),
    ]
    await router.close()
    assert custom.closed


def test_options_are_immutable_and_hide_secrets() -> None:
    options = StorageOptions(key="AKID", secret="SECRET", token="SECRET")
    assert "SECRET" not in repr(options)
    with pytest.raises(FrozenInstanceError):
        options.key = "other"  # type: ignore[misc]
    with pytest.raises(ValueError):
        StorageOptions(max_connections=0)
