"""Header reading over worker processes: real processes, a real range server, real COGs.

Workers are killed with SIGKILL in the middle of a run to show that every URL still ends
with exactly one row.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from servers.range_server import Fault, RangeServer

from rasteret_assets.ingest.headers.pool import WORKER_LOST, HeaderPool, split_concurrency
from rasteret_assets.ingest.headers.stream import (
    COLD_URLS_PER_WORKER,
    WARM_URLS_PER_WORKER,
    default_workers,
    header_rows,
    plan_workers,
)
from rasteret_assets.ingest.headers.worker import WorkerConfig
from rasteret_assets.storage import LocalBackend, RetryPolicy, StorageOptions, StorageRouter

COGS = ("rio-tiler/cog.tif", "rasterio/cogeo.tif", "cogeotiff/sparse.tiff", "rio-tiler/cog_ovr.tif")
FAST_RETRY = RetryPolicy(max_attempts=2, base_delay=0.01, max_delay=0.02)


@pytest.fixture
def urls(range_server: RangeServer, tiff_fixtures: Path) -> list[str]:
    """240 distinct URLs over four real COGs, plus two that fail (404, not a TIFF)."""
    blobs = [(tiff_fixtures / name).read_bytes() for name in COGS]
    for i in range(240):
        range_server.add_bytes(f"/pool/{i}.tif", blobs[i % len(blobs)])
    range_server.add_bytes("/pool/text.tif", b"plain text, no TIFF here" * 10)
    return [range_server.url(f"/pool/{i}.tif") for i in range(240)] + [
        range_server.url("/pool/missing.tif"),
        range_server.url("/pool/text.tif"),
    ]


def config(max_concurrent: int = 16) -> WorkerConfig:
    options = StorageOptions(max_connections=max_concurrent, max_connections_per_host=0)
    return WorkerConfig(
        options=options, retry=FAST_RETRY, max_concurrent=max_concurrent, batch_size=25, engine={}
    )


def one_process_rows(urls: list[str]) -> pa.Table:
    async def read() -> pa.Table:
        backend = StorageRouter(StorageOptions())
        try:
            batches = [
                rows
                async for rows in header_rows(
                    urls, backend, max_concurrent=16, retry=FAST_RETRY, workers=1
                )
            ]
        finally:
            await backend.close()
        return pa.concat_tables(batches)

    return asyncio.run(read())


def by_url(rows: pa.Table) -> pa.Table:
    return rows.select(["url", "status", "ifds", "transform", "epsg", "size"]).sort_by("url")


def test_two_workers_give_the_rows_one_process_gives(urls: list[str]) -> None:
    pool = HeaderPool(urls, config(), workers=2, batch_size=100)
    tables = list(pool.rows())
    rows = pa.concat_tables(tables)
    assert rows.num_rows == len(urls)
    assert by_url(rows).equals(by_url(one_process_rows(urls)))
    statuses = dict(zip(*pc.value_counts(rows["status"]).flatten(), strict=True))
    assert {k.as_py(): v.as_py() for k, v in statuses.items()} == {
        "ok": 240,
        "not_found": 1,
        "not_tiff": 1,
    }
    assert pool.deaths == 0 and pool.worker_cpu > 0  # both ended cleanly and said so
    assert all(t.num_rows >= 100 for t in tables[:-1])


def test_a_worker_killed_mid_run_loses_no_url(urls: list[str], range_server: RangeServer) -> None:
    range_server.latency = 0.03  # long enough that the victim holds URLs when it dies
    started = []
    pool = HeaderPool(urls, config(), workers=2, batch_size=20, on_spawn=started.append)
    tables = []
    for table in pool.rows():
        tables.append(table)
        if len(tables) == 1:
            os.kill(started[0].pid, signal.SIGKILL)
    rows = pa.concat_tables(tables)
    assert pool.deaths == 1 and len(started) == 3  # the victim was replaced
    assert started[0].exitcode == -signal.SIGKILL
    assert rows.num_rows == len(urls)
    assert sorted(rows["url"].to_pylist()) == sorted(urls)  # each URL exactly once
    assert pc.sum(pc.equal(rows["status"], "ok")).as_py() == 240


def test_urls_held_by_two_dead_workers_become_worker_lost_rows(urls: list[str]) -> None:
    def kill(process: object) -> None:
        os.kill(process.pid, signal.SIGKILL)  # type: ignore[attr-defined]

    pool = HeaderPool(urls[:50], config(), workers=1, max_respawns=1, on_spawn=kill)
    rows = pa.concat_tables(list(pool.rows()))
    assert sorted(rows["url"].to_pylist()) == sorted(urls[:50])
    assert set(rows["status"].to_pylist()) == {WORKER_LOST}
    assert pool.deaths == 2
    assert "died" in rows["error"][0].as_py()


def test_a_failing_url_in_a_worker_is_a_row_not_a_lost_worker(
    urls: list[str], range_server: RangeServer
) -> None:
    range_server.set_fault("/pool/3.tif", Fault("500"))
    rows = pa.concat_tables(list(HeaderPool(urls[:40], config(), workers=2).rows()))
    failed = rows.filter(pc.equal(rows["url"], urls[3]))
    assert failed["status"].to_pylist() == ["server_error"]
    assert failed["attempts"].to_pylist() == [FAST_RETRY.max_attempts]


def test_the_run_concurrency_is_shared_by_the_workers() -> None:
    share = split_concurrency(config(max_concurrent=257), 2)
    assert share.max_concurrent == 129
    assert share.options.max_connections == 129
    assert share.options.max_connections_per_host == 0  # unlimited stays unlimited


class SuffixSigner:
    """A URL signer of this process only (it could hold a token cache or a callback)."""

    async def sign(self, url: str) -> str:
        return f"{url}?sig=local"

    def refused(self, url: str, signed: str) -> bool:
        return False

    async def close(self) -> None:
        return None


def test_small_runs_local_backends_and_injected_signers_stay_in_process() -> None:
    router = StorageRouter(StorageOptions())
    cold, warm = 4 * COLD_URLS_PER_WORKER, 4 * WARM_URLS_PER_WORKER
    assert plan_workers(4, cold, 256, router, warm=False) == 4
    assert plan_workers(4, warm, 256, router, warm=False) == 1  # not worth a forkserver
    assert plan_workers(4, warm, 256, router, warm=True) == 4  # forking from it is cheap
    assert plan_workers(4, 2 * WARM_URLS_PER_WORKER - 1, 256, router, warm=True) == 1
    assert plan_workers(4, cold, 2, router) == 2  # never more workers than URLs in flight
    assert plan_workers(None, cold * 64, 256, router) == min(default_workers(), 256)
    assert plan_workers(4, cold, 256, StorageRouter(local=LocalBackend())) == 1
    assert plan_workers(4, cold, 256, LocalBackend()) == 1
    # A signer handed in exists only here; one the options name is rebuilt by each worker.
    assert plan_workers(4, cold, 256, StorageRouter(StorageOptions(), signer=SuffixSigner())) == 1
    named = StorageRouter(StorageOptions(url_signer="planetary-computer"))
    assert plan_workers(4, cold, 256, named) == 4
    with pytest.raises(ValueError, match="workers must be >= 1"):
        plan_workers(0, cold, 256, router)


def test_default_workers_is_the_cpus_this_process_may_use() -> None:
    assert default_workers() == len(os.sched_getaffinity(0))


def test_a_large_run_through_the_library_path_uses_the_workers(
    range_server: RangeServer, tiff_fixtures: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = (tiff_fixtures / COGS[0]).read_bytes()
    many = [range_server.url(f"/many/{i}.tif") for i in range(2 * WARM_URLS_PER_WORKER)]
    for i in range(len(many)):
        range_server.add_bytes(f"/many/{i}.tif", data)
    list(HeaderPool(many[:1], config(), workers=1).rows())  # this process has a forkserver now

    async def read() -> list[pa.Table]:
        backend = StorageRouter(StorageOptions(max_connections=64))
        try:
            stream = header_rows(many, backend, max_concurrent=64, workers=2, batch_size=500)
            return [rows async for rows in stream]
        finally:
            await backend.close()

    with caplog.at_level(logging.INFO, logger="rasteret_assets.ingest.headers.stream"):
        tables = asyncio.run(read())
    rows = pa.concat_tables(tables)
    assert f"reading {len(many)} URLs with 2 worker processes" in caplog.text
    assert sorted(rows["url"].to_pylist()) == sorted(many)
    assert set(rows["status"].to_pylist()) == {"ok"}
    assert len(tables) >= 2 and tables[0].num_rows >= 500  # batches as they come, not one
