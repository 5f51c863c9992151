"""The whole engine over good URLs mixed with every hostile or broken case at once.

One ``enrich_table`` run reads real COGs next to servers that ignore Range and stream without
end, trickle bytes, loop redirects, redirect to the metadata service, lie in Content-Range,
gzip a range, send a short 200, speak TLS where HTTP was expected (and the reverse), and hosts
that do not resolve. Every URL must end as exactly one outcome row with the right error class,
the good ones ``ok``, in bounded time and bytes; nothing is mocked.
"""

from __future__ import annotations

import asyncio
import shutil
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest
from servers.moto_s3 import MotoS3
from servers.range_server import Fault, RangeServer, self_signed_tls

from rasteret_assets.ingest import enrich_table
from rasteret_assets.ingest.headers.enrich import EnrichmentResult
from rasteret_assets.storage import RetryPolicy, StorageOptions, StorageRouter
from rasteret_assets.storage.policy import UrlPolicy

DEMO_ITEM = Path(__file__).resolve().parents[2] / "rasteret_assets/demo/catalog/items"
COG = DEMO_ITEM / "DEMO_T33UVP_20240108" / "red.tif"  # a 70 KB GDAL COG, shipped in the package
CAP = 1024 * 1024  # most bytes read from a server that ignores Range
DEADLINE = 1.5  # seconds per URL, across attempts and rounds
RETRY = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05, url_deadline=DEADLINE)


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RangeServer]:
    context, _ = self_signed_tls(tmp_path_factory.mktemp("tls"))
    server = RangeServer(ssl_context=context).start()
    server.add_file("/cog.tif", COG)
    try:
        yield server
    finally:
        server.stop()


def serve(
    server: RangeServer, path: str, fault: Fault | None = None, data: bytes | None = None
) -> str:
    url = server.add_bytes(path, COG.read_bytes() if data is None else data)
    if fault is not None:
        server.set_fault(path, fault)
    return url


def hostile_urls(
    server: RangeServer, tls_server: RangeServer, moto_s3: MotoS3, tmp_path: Path
) -> dict[str, str]:
    """``{url: expected status}`` for every case of the run."""
    allowed = tmp_path / "allowed"
    outside = tmp_path / "outside"
    for directory in (allowed, outside):
        directory.mkdir()
        shutil.copy(COG, directory / "cog.tif")
    far_ifd = b"II*\x00" + struct.pack("<I", 8 * CAP)  # a TIFF whose first IFD is past the cap
    plain_port = server.url("/h/good.tif")
    return {
        serve(server, "/h/good.tif"): "ok",
        str(allowed / "cog.tif"): "ok",
        serve(server, "/h/hop.tif", Fault("redirect", location="good2.tif")): "ok",
        serve(server, "/h/good2.tif"): "ok",
        serve(server, "/h/huge-garbage.tif", Fault("huge_body"), b"<html>" * 100): "not_tiff",
        serve(server, "/h/huge-far-ifd.tif", Fault("huge_body"), far_ifd): "unsupported",
        serve(server, "/h/trickle.tif", Fault("trickle", delay=0.05)): "timeout",
        serve(server, "/h/loop.tif", Fault("redirect_loop")): "unsupported",
        serve(
            server,
            "/h/to-metadata.tif",
            Fault("redirect", location="http://169.254.169.254/latest/meta-data/"),
        ): "forbidden_url",
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/": "forbidden_url",
        "http://metadata.google.internal/computeMetadata/v1/": "forbidden_url",
        serve(server, "/h/no-range.tif", Fault("content_range", content_range=None)): (
            "server_error"
        ),
        serve(server, "/h/shifted.tif", Fault("bad_range")): "server_error",
        serve(server, "/h/gzip.tif", Fault("gzip")): "unsupported",
        serve(server, "/h/short.tif", Fault("short_200")): "truncated",
        "http://cogs.example.invalid/x.tif": "not_found",
        plain_port.replace("http://", "https://"): "unsupported",
        tls_server.url("/cog.tif").replace("https://", "http://"): "server_error",
        f"s3://{moto_s3.public_bucket}/cogs/x.tif": "unsupported",  # https endpoint, plain moto
        str(outside / "cog.tif"): "forbidden_url",
        f"{allowed}/../outside/cog.tif": "forbidden_url",
        "file:///etc/passwd": "forbidden_url",
    }


def run(urls: list[str], options: StorageOptions) -> EnrichmentResult:
    table = pa.table(
        {
            "id": [f"rec-{i}" for i in range(len(urls))],
            "assets": [{"red": {"href": url, "band_index": 0}} for url in urls],
        }
    )
    index = {f"rec-{i}": {"red": {"url": url, "band_index": 0}} for i, url in enumerate(urls)}

    async def go() -> EnrichmentResult:
        router = StorageRouter(options)
        try:
            # A fixed 64 KiB first read reaches past the half body of the short 200.
            return await enrich_table(
                table,
                index,
                ["red"],
                max_concurrent=len(urls),
                backend=router,
                retry=RETRY,
                first_read=65536,
            )
        finally:
            await router.close()

    return asyncio.run(go())


def test_every_hostile_case_is_one_outcome_with_its_class(
    range_server: RangeServer, tls_server: RangeServer, moto_s3: MotoS3, tmp_path: Path
) -> None:
    expected = hostile_urls(range_server, tls_server, moto_s3, tmp_path)
    options = StorageOptions(
        connect_timeout=2.0,
        read_timeout=5.0,  # longer than the trickle's gaps: only the deadline can stop it
        ignored_range_cap=CAP,
        endpoint_url=moto_s3.endpoint_url.replace("http://", "https://"),
        region=moto_s3.region,
        anon=True,
        url_policy=UrlPolicy(allowed_local_roots=(tmp_path / "allowed",)),
    )
    started = time.perf_counter()
    result = run(list(expected), options)
    elapsed = time.perf_counter() - started

    rows = result.outcomes.to_pylist()
    assert sorted(r["url"] for r in rows) == sorted(expected)  # exactly one row per URL
    got = {r["url"]: r["status"] for r in rows}
    assert got == expected, {u: (got[u], expected[u]) for u in expected if got[u] != expected[u]}
    for row in rows:
        assert row["bytes_read"] <= CAP, row
        assert (row["error"] is None) == (row["status"] == "ok"), row
        assert row["attempts"] <= RETRY.max_attempts, row
        assert row["elapsed_s"] <= DEADLINE + 1.0, row
    # URLs run concurrently: the slowest case (the trickle) bounds the run.
    assert elapsed < DEADLINE + 5.0
    # Servers that stream without end were cut off: socket buffers hold a few MiB at most.
    for path in ("/h/huge-garbage.tif", "/h/huge-far-ifd.tif"):
        assert range_server.stats(path).bytes_served < 32 * CAP
    assert result.table.column("red_metadata").null_count == len(expected) - 4


def test_trickle_timeout_row_says_why(range_server: RangeServer) -> None:
    url = serve(range_server, "/h/trickle-alone.tif", Fault("trickle", delay=0.05))
    started = time.perf_counter()
    result = run([url], StorageOptions(read_timeout=5.0))
    assert time.perf_counter() - started < DEADLINE + 2.0
    row = result.outcomes.to_pylist()[0]
    assert row["status"] == "timeout"
    assert "deadline" in row["error"] and url in row["error"]
    # The deadline cut the first attempt; no retry started after it.
    assert row["attempts"] == 1
    assert range_server.stats("/h/trickle-alone.tif").requests == 1
