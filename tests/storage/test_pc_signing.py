"""Planetary Computer signing at read time, against a local token endpoint and a blob store
that refuses (403) unsigned, expired, revoked or other-container requests.

Nothing here is mocked: the token endpoint and the blob store are real HTTP servers on
127.0.0.1 (``servers.planetary_computer``, ``servers.range_server``), addressed path-style
(``{endpoint}/{account}/{container}/{blob}``) as Azurite is.
"""

from __future__ import annotations

import asyncio
import logging
import pickle
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pyarrow.parquet as pq
import pytest
from servers.planetary_computer import SasTokenServer
from servers.range_server import Fault, RangeServer

from rasteret_assets.ingest.headers.enrich import read_header_rows
from rasteret_assets.storage import (
    PlanetaryComputerSigner,
    RetryPolicy,
    SigningError,
    StorageError,
    StorageOptions,
    StorageRouter,
)
from rasteret_assets.storage.azure_blob import BlobContainer, blob_container, has_sas_signature

S2 = ("sentinel2l2a01", "sentinel2-l2")
LANDSAT = ("landsateuwest", "landsat-c2")
COG = "rio-tiler/cog_ovr.tif"


@pytest.fixture
def pc() -> Iterator[SasTokenServer]:
    with SasTokenServer() as server:
        yield server


@pytest.fixture
def blobs(pc: SasTokenServer) -> Iterator[RangeServer]:
    with RangeServer() as server:
        server.gate = pc.blob_gate
        yield server


@pytest.fixture
def cog(tiff_fixtures: Path) -> bytes:
    return (tiff_fixtures / COG).read_bytes()


def signing(pc: SasTokenServer, blobs: RangeServer, **extra: object) -> StorageOptions:
    return StorageOptions(
        url_signer="planetary-computer",
        pc_sas_url=pc.sas_url,
        azure_blob_endpoints=(blobs.base_url,),
        **extra,
    )


def blob(server: RangeServer, container: tuple[str, str], name: str, data: bytes) -> str:
    return server.add_bytes(f"/{container[0]}/{container[1]}/{name}", data)


# ------------------------------------------------------------------------- URL parsing


def test_blob_urls_name_their_container() -> None:
    virtual = "https://sentinel2l2a01.blob.core.windows.net/sentinel2-l2/47/X/B04.tif"
    assert blob_container(virtual) == BlobContainer(*S2)
    path_style = "http://127.0.0.1:10000/acct/cont/a/b.tif?version=2"
    assert blob_container(path_style, ["http://127.0.0.1:10000/"]) == BlobContainer("acct", "cont")
    assert blob_container(path_style) is None  # path style only under named endpoints
    assert blob_container("https://sentinel2l2a01.blob.core.windows.net/sentinel2-l2/") is None
    assert blob_container("https://example.com/sentinel2-l2/x.tif") is None
    assert blob_container("s3://bucket/key.tif") is None
    assert has_sas_signature(virtual + "?sv=1&sig=abc%3D")
    assert not has_sas_signature(virtual + "?version=2")


# ------------------------------------------------------------------- signing and refusing


@pytest.mark.asyncio
async def test_unsigned_requests_are_refused_signed_ones_served(
    pc: SasTokenServer, blobs: RangeServer, cog: bytes
) -> None:
    url = blob(blobs, S2, "T47XML/B04.tif", cog)
    plain = StorageRouter()
    with pytest.raises(StorageError) as refused:
        await plain.get_range(url, 0, 100)
    await plain.close()
    assert refused.value.error_class == "forbidden" and refused.value.status == 403
    assert pc.refused == ["no signature"]

    router = StorageRouter(signing(pc, blobs))
    try:
        assert await router.get_range(url, 0, 100) == cog[:100]
        assert (await router.head(url)).size == len(cog)
    finally:
        await router.close()
    assert pc.issued == {S2: 1}
    assert pc.accepted == 2


@pytest.mark.asyncio
async def test_one_token_per_container_for_many_concurrent_urls(
    pc: SasTokenServer,
    blobs: RangeServer,
    cog: bytes,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    urls = [
        blob(blobs, container, f"scene{i}/B{i % 4}.tif", cog)
        for container in (S2, LANDSAT)
        for i in range(30)
    ]
    router = StorageRouter(signing(pc, blobs))
    caplog.set_level(logging.DEBUG)
    try:
        rows = await read_header_rows(urls, router, max_concurrent=32)
    finally:
        await router.close()

    assert rows.column("status").to_pylist() == ["ok"] * len(urls)
    assert pc.issued == {S2: 1, LANDSAT: 1}
    assert pc.refused == [] and pc.accepted >= len(urls)
    assert sorted(rows.column("url").to_pylist()) == sorted(urls)
    # Stored rows and logs hold no token: not its signature, not its query string.
    pq.write_table(rows, tmp_path / "headers.parquet")
    stored = (tmp_path / "headers.parquet").read_bytes()
    logged = caplog.text
    for secret in pc.signatures:
        assert secret.encode() not in stored and secret not in logged
    assert b"sig=" not in stored and "sig=" not in logged


@pytest.mark.asyncio
async def test_token_is_renewed_before_it_expires(
    pc: SasTokenServer, blobs: RangeServer, cog: bytes
) -> None:
    pc.lifetime = 3.0
    url = blob(blobs, S2, "a/B04.tif", cog)
    router = StorageRouter(signing(pc, blobs, sas_renew_before=1.5))
    try:
        await router.get_range(url, 0, 16)
        first = await router.signer.sign(url)  # the cached token, as sent
        await asyncio.sleep(1.8)  # the first token has 1.2 s left, within the margin: renewed
        await router.get_range(url, 0, 16)
        assert pc.issued == {S2: 2}
        await asyncio.sleep(1.6)  # the first token has expired: the blob store refuses it
        async with aiohttp.ClientSession() as session, session.get(first) as resp:
            assert resp.status == 403
        assert pc.refused == ["signed expiry time has passed"]
        assert await router.get_range(url, 0, 16) == cog[:16]
    finally:
        await router.close()
    # Every request the router sent carried a live token.
    assert pc.refused == ["signed expiry time has passed"]


@pytest.mark.asyncio
async def test_a_revoked_token_is_replaced_after_the_403(
    pc: SasTokenServer, blobs: RangeServer, cog: bytes
) -> None:
    url = blob(blobs, S2, "a/B08.tif", cog)
    router = StorageRouter(signing(pc, blobs))
    try:
        await router.get_range(url, 0, 16)
        pc.revoke_all()
        assert await router.get_range(url, 0, 16) == cog[:16]
    finally:
        await router.close()
    assert pc.issued == {S2: 2}
    assert pc.refused == ["unknown or revoked signature"]


@pytest.mark.asyncio
async def test_blobs_refused_for_themselves_do_not_flood_the_token_endpoint(
    pc: SasTokenServer, blobs: RangeServer, cog: bytes
) -> None:
    """403s that a fresh token does not cure (the blob itself is denied) renew the token once,
    not once per URL."""
    urls = [blob(blobs, S2, f"denied/{i}.tif", cog) for i in range(12)]
    for url in urls:
        blobs.set_fault(url.removeprefix(blobs.base_url), Fault("403"))
    router = StorageRouter(signing(pc, blobs))
    try:
        rows = await read_header_rows(urls, router, max_concurrent=4)
    finally:
        await router.close()
    assert rows.column("status").to_pylist() == ["forbidden"] * len(urls)
    assert pc.issued == {S2: 2}  # the first token, and one renewal to rule it out
    assert pc.refused == []  # every request carried a valid token


@pytest.mark.asyncio
async def test_a_token_of_another_container_is_refused(
    pc: SasTokenServer, blobs: RangeServer, cog: bytes
) -> None:
    s2 = blob(blobs, S2, "a/B04.tif", cog)
    landsat = blob(blobs, LANDSAT, "a/red.tif", cog)
    router = StorageRouter(signing(pc, blobs))
    try:
        signed = await router.signer.sign(s2)
        borrowed = landsat + signed[len(s2) :]
        async with aiohttp.ClientSession() as session, session.get(borrowed) as resp:
            assert resp.status == 403
        assert await router.get_range(landsat, 0, 16) == cog[:16]
    finally:
        await router.close()
    assert pc.refused == ["signature of another container"]


@pytest.mark.asyncio
async def test_already_signed_and_foreign_urls_pass_unchanged(
    pc: SasTokenServer, blobs: RangeServer
) -> None:
    signer = StorageRouter(signing(pc, blobs)).signer
    assert isinstance(signer, PlanetaryComputerSigner)
    presigned = blobs.url("/acct/cont/x.tif") + "?sv=1&sig=given"
    assert await signer.sign(presigned) == presigned
    assert await signer.sign("https://example.com/acct/cont/x.tif") == (
        "https://example.com/acct/cont/x.tif"
    )
    await signer.close()
    assert pc.issued == {}


@pytest.mark.asyncio
async def test_the_planetary_computer_packages_variables_configure_the_signer(
    pc: SasTokenServer, blobs: RangeServer, cog: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PC_SDK_SAS_URL", pc.sas_url)
    monkeypatch.setenv("PC_SDK_SUBSCRIPTION_KEY", "env-key")
    url = blob(blobs, S2, "a/B04.tif", cog)
    options = StorageOptions(url_signer="planetary-computer", azure_blob_endpoints=blobs.base_url)
    router = StorageRouter(options)
    try:
        assert await router.get_range(url, 0, 16) == cog[:16]
    finally:
        await router.close()
    assert pc.issued == {S2: 1} and pc.subscription_keys == ["env-key"]


# ----------------------------------------------------------------- token endpoint failures


@pytest.mark.asyncio
async def test_token_endpoint_down_ends_each_url_with_a_clear_error(
    blobs: RangeServer, cog: bytes
) -> None:
    with SasTokenServer() as gone:
        pass  # started and stopped: its port now refuses connections
    urls = [blob(blobs, S2, f"s{i}/B04.tif", cog) for i in range(5)]
    router = StorageRouter(signing(gone, blobs))
    retry = RetryPolicy(max_attempts=2, base_delay=0.01, jitter=False)
    try:
        rows = await read_header_rows(urls, router, max_concurrent=5, retry=retry)
    finally:
        await router.close()
    assert rows.column("status").to_pylist() == ["server_error"] * 5
    for url, error in zip(
        rows.column("url").to_pylist(), rows.column("error").to_pylist(), strict=True
    ):
        assert url in error
        assert f"no SAS token for {S2[0]}/{S2[1]} from {gone.sas_url}/{S2[0]}/{S2[1]}" in error
    assert blobs.total_requests == 0  # nothing went out unsigned


@pytest.mark.parametrize(
    ("status", "error_class", "hint"),
    [
        (403, "forbidden", ""),
        (404, "forbidden", "no token"),
        (429, "throttled", "PC_SDK_SUBSCRIPTION_KEY"),
    ],
)
@pytest.mark.asyncio
async def test_a_refusing_token_endpoint_is_a_typed_signing_error(
    pc: SasTokenServer, blobs: RangeServer, cog: bytes, status: int, error_class: str, hint: str
) -> None:
    pc.status = status
    url = blob(blobs, S2, "a/B04.tif", cog)
    router = StorageRouter(signing(pc, blobs, pc_subscription_key="key-123"))
    try:
        with pytest.raises(SigningError) as failed:
            await router.get_range(url, 0, 16)
    finally:
        await router.close()
    error = failed.value
    assert error.error_class == error_class and error.status == status
    assert error.url == url and f"HTTP {status}" in str(error) and hint in str(error)
    assert "key-123" not in str(error) and "key-123" not in repr(router.options)
    assert pc.subscription_keys == ["key-123"]


def test_signing_errors_survive_pickling() -> None:
    error = SigningError("throttled", "http://h/acct/cont/x.tif?sig=s", "slow down", status=429)
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is SigningError and again.error_class == "throttled"
    assert again.url == "http://h/acct/cont/x.tif" and again.status == 429
