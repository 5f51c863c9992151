"""Catalog documents obey the same never-contact rule as asset hrefs: a STAC page, a static
catalog child or a redirect hop aimed at a cloud-metadata address is refused before any
connection, once, as ``forbidden_url``; ordinary documents and redirects still work."""

from __future__ import annotations

import json

import pytest
from servers.range_server import Fault, RangeServer

from rasteret_assets.ingest.stac.http import JsonClient, StacApiError

METADATA_URLS = [
    "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://[fd00:ec2::254]/latest/api/token",
    "http://2852039166/latest/meta-data/",  # 169.254.169.254 as one decimal number
]


@pytest.mark.asyncio
@pytest.mark.parametrize("url", METADATA_URLS)
async def test_a_metadata_address_is_refused_without_retrying(url: str) -> None:
    async with JsonClient() as client:
        with pytest.raises(StacApiError, match="forbidden_url") as refused:
            await client.get(url)
    assert refused.value.attempts == 1
    assert client.request_count == 1  # one attempt, stopped before a connection


@pytest.mark.asyncio
async def test_a_redirect_hop_to_a_metadata_address_is_refused(range_server: RangeServer) -> None:
    range_server.add_bytes("/catalog.json", json.dumps({"type": "Catalog"}).encode())
    range_server.set_fault(
        "/catalog.json",
        Fault("redirect", times=10, location="http://169.254.169.254/latest/meta-data/"),
    )
    async with JsonClient() as client:
        with pytest.raises(StacApiError, match=r"forbidden_url.*169\.254\.169\.254"):
            await client.get(range_server.url("/catalog.json"))
    assert range_server.stats("/catalog.json").requests == 1


@pytest.mark.asyncio
async def test_ordinary_documents_and_redirects_still_load(range_server: RangeServer) -> None:
    range_server.add_bytes("/real.json", json.dumps({"type": "Catalog", "id": "x"}).encode())
    range_server.add_bytes("/moved.json", b"{}")
    range_server.set_fault("/moved.json", Fault("redirect", times=1, location="/real.json"))
    async with JsonClient() as client:
        assert (await client.get(range_server.url("/moved.json")))["id"] == "x"
