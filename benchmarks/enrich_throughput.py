"""Throughput, requests, bytes, CPU and memory of the header engine against a local server.

The range server (tests/servers/range_server.py) runs in a separate process with injected
per-request latency and serves N URLs that map onto a few dozen GDAL-written COGs shaped
like Sentinel-2 bands (1024-pixel tiles, 4 overview levels). For every latency x concurrency
pair, one after the other against the same server so drift hits all alike, it runs

* the engine through the reference function's path (``enrich_table``: fetch, parse, Arrow
  ``{band}_metadata`` column) with each ``--workers`` count; ``cpu_ms/hdr`` sums the CPU of
  this process and of every worker process (the forkserver's reaped children);
* a bare aiohttp client making one 16 KiB GET per URL and parsing nothing: the transport
  ceiling of one process (client and server share the machine's cores);
* async-tiff 0.7.2 (Rust; ``pip install -e '.[bench]'``): ``TIFF.open(url, prefetch=32768)``
  with an ``HTTPStore``, every IFD parsed;
* with ``--uvloop``, the one-process engine once more on uvloop's event loop (A/B);
* with ``--parse-ceiling``, the engine with the most workers once more with every header
  parse remembered after the first of each file: the throughput a free parser would give,
  so what is left of a gap to the bare client is the engine's other per-URL costs.

``KiB/file`` is what the engine read per file, ``hdr KiB`` how far the headers of the URL mix
reach on average (the bytes a perfect first read would cover). Then it measures the peak
RSS growth of a streaming run (header rows written to Parquet, all worker processes
included) for each ``--rss-urls`` count in fresh processes.

    .venv/bin/python benchmarks/enrich_throughput.py                 # full run
    .venv/bin/python benchmarks/enrich_throughput.py --quick         # smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import os
import resource
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Coroutine, Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TypeVar

import aiohttp
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

# rasterio and the test server are imported where used: header worker processes re-import
# this script (multiprocessing's __main__ semantics), and should not pay for GDAL each.
from rasteret_assets.contract import COG_HEADERS_SCHEMA  # noqa: E402
from rasteret_assets.ingest import build_url_index_from_assets, enrich_table  # noqa: E402
from rasteret_assets.ingest.headers import pool as pool_module  # noqa: E402
from rasteret_assets.ingest.headers.pool import HeaderPool  # noqa: E402
from rasteret_assets.ingest.headers.stream import header_rows  # noqa: E402
from rasteret_assets.ingest.headers.worker import WorkerConfig, run_worker  # noqa: E402
from rasteret_assets.storage import RetryPolicy, StorageOptions, StorageRouter  # noqa: E402
from rasteret_assets.tiff import (  # noqa: E402
    ByteBuffer,
    HeaderReadDriver,
    NeedBytes,
    TiffHeader,
    driver,
)

BARE_READ = 16384
T = TypeVar("T")


def write_cogs(directory: Path, count: int) -> list[Path]:
    """Sentinel-2-like COGs: 10980 px would be slow to write, so 5120 px with 1024 tiles."""
    import rasterio
    from rasterio.transform import from_origin

    rng = np.random.default_rng(0)
    paths = []
    variants = [
        ("uint16", "DEFLATE", 1024),
        ("uint16", "ZSTD", 512),
        ("int16", "LZW", 1024),
        ("float32", "DEFLATE", 512),
    ]
    for i in range(count):
        dtype, compress, block = variants[i % len(variants)]
        size = 5120 - 256 * (i % 5)
        path = directory / f"cog_{i:02d}.tif"
        profile = {
            "driver": "COG",
            "width": size,
            "height": size,
            "count": 1,
            "dtype": dtype,
            "compress": compress,
            "blocksize": block,
            "crs": f"EPSG:{32601 + i % 60}",
            "transform": from_origin(300000 + i * 1000, 5000040, 10, 10),
            "nodata": 0,
            "overview_count": 4,
        }
        data = np.full((1, size, size), 1000 + i, dtype=dtype)
        data[0, :: block // 2, :: block // 2] = rng.integers(1, 100, dtype=np.int16)
        with rasterio.open(path, "w", **profile) as dataset:
            dataset.write(data)
        paths.append(path)
    return paths


def serve(conn: Connection, files: list[Path], n_urls: int) -> None:
    """Server process: serve ``/cog/{i}.tif`` for i < n_urls and answer control messages."""
    from servers.range_server import RangeServer

    blobs = [f.read_bytes() for f in files]
    server = RangeServer().start()
    for i in range(n_urls):
        server.add_bytes(f"/cog/{i}.tif", blobs[i % len(blobs)])
    conn.send(server.base_url)
    while True:
        command, arg = conn.recv()
        if command == "latency":
            server.reset()
            server.latency = arg
            conn.send(None)
        elif command == "stats":
            conn.send(
                {
                    "connections": server.connections_accepted,
                    "requests": server.total_requests,
                    "max_in_flight": server.max_in_flight,
                }
            )
        else:
            server.stop()
            conn.send(None)
            return


class ServerProcess:
    def __init__(self, files: list[Path], n_urls: int) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=serve, args=(child, files, n_urls), daemon=True)
        self.process.start()
        self.base_url = self.conn.recv()

    def call(self, command: str, arg: object = None) -> object:
        self.conn.send((command, arg))
        return self.conn.recv()

    def stop(self) -> None:
        self.call("stop")
        self.process.join(10)


def url_table(base_url: str, n: int) -> pa.Table:
    return pa.table(
        {
            "id": [f"r{i}" for i in range(n)],
            "assets": [
                {"B04": {"href": f"{base_url}/cog/{i}.tif", "band_index": 0}} for i in range(n)
            ],
        }
    )


async def bare_client(urls: list[str], concurrency: int) -> tuple[float, float]:
    """One 16 KiB GET per URL, nothing parsed: requests per second, CPU seconds per request."""
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
    queue = iter(urls)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            for url in queue:
                headers = {"Range": f"bytes=0-{BARE_READ - 1}"}
                async with session.get(url, headers=headers) as response:
                    await response.read()

        started, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        cpu = (time.process_time() - cpu) / len(urls)
        return len(urls) / (time.perf_counter() - started), cpu


async def engine_run(table: pa.Table, concurrency: int, workers: int) -> tuple[float, float, dict]:
    """Wall seconds, CPU seconds of every process of the run, and what was read."""
    backend = StorageRouter(
        StorageOptions(max_connections=concurrency, max_connections_per_host=concurrency)
    )
    index = build_url_index_from_assets(table)
    cpu, wall = run_cpu(), time.perf_counter()
    result = await enrich_table(
        table, index, ["B04"], max_concurrent=concurrency, backend=backend, workers=workers
    )
    wall, cpu = time.perf_counter() - wall, run_cpu() - cpu
    await backend.close()
    outcomes = result.outcomes
    summary = {
        "ok": result.status_counts.get("ok", 0),
        "requests": pa.compute.sum(outcomes.column("requests")).as_py(),
        "bytes": pa.compute.sum(outcomes.column("bytes_read")).as_py(),
    }
    return wall, cpu, summary


async def async_tiff_client(base_url: str, n: int, concurrency: int) -> float:
    """async-tiff opening every URL (all IFDs) with 32 KiB prefetch: headers per second."""
    from async_tiff import TIFF
    from async_tiff.store import HTTPStore

    store = HTTPStore.from_url(
        base_url, client_options={"allow_http": "true", "pool_max_idle_per_host": "1024"}
    )
    paths = iter(range(n))

    async def worker() -> None:
        for i in paths:
            tiff = await TIFF.open(f"cog/{i}.tif", store=store, prefetch=32768)
            assert tiff.ifds

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return n / (time.perf_counter() - started)


def forkserver_pid() -> int | None:
    """The forkserver the header workers fork from (started on first use)."""
    from multiprocessing import forkserver

    return forkserver._forkserver._forkserver_pid  # type: ignore[attr-defined]


def _stat_fields(pid: int) -> list[str]:
    with Path(f"/proc/{pid}/stat").open() as stat:
        return stat.read().rsplit(")", 1)[1].split()


def run_cpu() -> float:
    """CPU seconds of this process plus every worker process that has ended so far.

    Workers are children of the forkserver, which reaps them: their CPU accrues to its
    ``cutime``/``cstime``, so the sum over all processes is available after a run.
    """
    total = time.process_time()
    pid = forkserver_pid()
    if pid is not None:
        fields = _stat_fields(pid)
        total += (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")
    return total


def rss_mib(pid: int | str = "self") -> float:
    with Path(f"/proc/{pid}/statm").open() as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


def worker_rss_mib() -> float:
    """Resident memory of the header worker processes alive now."""
    parent = forkserver_pid()
    if parent is None:
        return 0.0
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if int(_stat_fields(int(entry.name))[1]) == parent:
                total += rss_mib(entry.name)
        except (OSError, IndexError, ValueError):
            continue  # it ended meanwhile
    return total


def streaming_rss(base_url: str, n: int, concurrency: int, out: Path) -> dict:
    """In a fresh process: peak RSS growth of all processes while ``n`` rows stream to Parquet.

    The baseline is this process before the run plus the workers' RSS when first seen (just
    forked, holding the forkserver's imported modules), so the growth is what the run adds.
    """
    urls = [f"{base_url}/cog/{i}.tif" for i in range(n)]
    before = rss_mib()
    peak = [0.0, 0.0, 0.0]  # parent, parent + workers, workers when first seen (just forked)
    done = threading.Event()

    def sample() -> None:  # ru_maxrss would include start-up peaks before the run
        while not done.wait(0.05):
            parent, workers = rss_mib(), worker_rss_mib()
            peak[0] = max(peak[0], parent)
            peak[1] = max(peak[1], parent + workers)
            peak[2] = peak[2] or workers

    async def go() -> dict:
        backend = StorageRouter(
            StorageOptions(max_connections=concurrency, max_connections_per_host=concurrency)
        )
        started = time.perf_counter()
        counts: Counter[str] = Counter()
        with pq.ParquetWriter(out, COG_HEADERS_SCHEMA, compression="zstd") as writer:
            async for rows in header_rows(urls, backend, max_concurrent=concurrency):
                counts.update(rows.column("status").to_pylist())
                writer.write_table(rows)
        await backend.close()
        return {"counts": dict(counts), "seconds": time.perf_counter() - started}

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    result = asyncio.run(go())
    done.set()
    sampler.join()
    result["parent_growth_mib"] = peak[0] - before
    result["all_growth_mib"] = peak[1] - before - peak[2]
    result["workers_at_fork_mib"] = peak[2]
    return result


def _rss_child(conn: Connection, base_url: str, n: int, concurrency: int, out: str) -> None:
    conn.send(streaming_rss(base_url, n, concurrency, Path(out)))


def mean_header_kib(files: list[Path], n_urls: int) -> float:
    """How far the headers of the URL mix reach into their files, on average."""
    extents = []
    for path in files:
        data = path.read_bytes()
        driver = HeaderReadDriver(first_read=len(data), max_header_bytes=None)
        driver.feed([(0, len(data))], [data], file_size=len(data))
        extents.append(driver.buffer.extent)
    return np.mean([extents[i % len(files)] for i in range(n_urls)]) / 1024


@contextlib.contextmanager
def remembered_parses() -> Iterator[None]:
    """``parse_header`` answers from memory once a file's first 4 KiB have been parsed (the
    benchmark's URLs map onto a few dozen files): a diagnostic, never how the engine runs."""
    real = driver.parse_header
    seen: dict[bytes, TiffHeader] = {}

    def remembered(buffer: ByteBuffer) -> TiffHeader | NeedBytes:
        head = buffer.view(0, 4096, "the first 4 KiB")
        key = None if head is None else bytes(head)
        header = seen.get(key) if key is not None else None
        if header is None:
            header = real(buffer)
            if key is not None and isinstance(header, TiffHeader):
                seen[key] = header
        return header

    driver.parse_header = remembered
    try:
        yield
    finally:
        driver.parse_header = real


def remembered_parse_worker(tasks: Connection, results: Connection, config: WorkerConfig) -> None:
    """A header worker process that parses with :func:`remembered_parses`."""
    with remembered_parses():
        run_worker(tasks, results, config)


@contextlib.contextmanager
def parse_ceiling(enabled: bool) -> Iterator[None]:
    """Remembered parses in this process and in every worker started meanwhile."""
    if not enabled:
        yield
        return
    real_worker = pool_module.run_worker
    pool_module.run_worker = remembered_parse_worker
    try:
        with remembered_parses():
            yield
    finally:
        pool_module.run_worker = real_worker


def run_in_loop(coro: Coroutine[object, object, T], use_uvloop: bool) -> T:
    """``asyncio.run``, on uvloop's event loop when asked (the A/B of ``--uvloop``)."""
    if not use_uvloop:
        return asyncio.run(coro)
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def run_cell(
    server: ServerProcess,
    table: pa.Table,
    latency: float,
    concurrency: int,
    args: argparse.Namespace,
    header_kib: float,
) -> None:
    """Every client at one latency and concurrency, one after the other; one line each."""
    urls = table.column("assets").combine_chunks().field("B04").field("href").to_pylist()
    rates: dict[str, float] = {}
    lines: dict[str, str] = {}
    server.call("latency", latency / 1000)
    rates["bare"], bare_cpu = asyncio.run(bare_client(urls, concurrency))
    lines["bare"] = f"{1:8.3f} {BARE_READ / 1024:8.1f} {'':7s} {bare_cpu * 1000:11.3f}"
    if not args.no_async_tiff:
        server.call("latency", latency / 1000)
        rates["async-tiff"] = asyncio.run(
            async_tiff_client(server.base_url, len(urls), concurrency)
        )
    engines = [(f"workers={w}", w, False, False) for w in args.workers]
    if args.uvloop:
        engines.append(("w=1 uvloop", 1, True, False))
    if args.parse_ceiling:
        engines.append((f"w={max(args.workers)} memo", max(args.workers), False, True))
    for label, workers, use_uvloop, memo in engines:
        server.call("latency", latency / 1000)
        with parse_ceiling(memo):
            wall, cpu, summary = run_in_loop(engine_run(table, concurrency, workers), use_uvloop)
        rates[label] = len(urls) / wall
        lines[label] = (
            f"{summary['requests'] / len(urls):8.3f} "
            f"{summary['bytes'] / len(urls) / 1024:8.1f} {header_kib:7.1f} "
            f"{cpu / len(urls) * 1000:11.3f}"
            + ("" if summary["ok"] == len(urls) else f"  FAILED {summary}")
        )
    peer = rates.get("async-tiff", float("nan"))
    for label, rate in rates.items():
        print(
            f"{latency:10.0f} {concurrency:4d} {label:11s} | {rate:6.0f} "
            f"{rate / rates['bare']:6.2f} {rate / peer:11.2f} | {lines.get(label, '')}",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--urls", type=int, default=2000)
    parser.add_argument("--files", type=int, default=24)
    parser.add_argument("--latency-ms", type=float, nargs="+", default=[0, 50])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--no-async-tiff", action="store_true", help="skip the async-tiff peer")
    parser.add_argument("--uvloop", action="store_true", help="A/B the engine on uvloop")
    parser.add_argument(
        "--parse-ceiling", action="store_true", help="once more with parsing (almost) free"
    )
    parser.add_argument("--rss-urls", type=int, nargs="*", default=[20000, 200000])
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    args = parser.parse_args()
    if args.quick:
        args.urls, args.files, args.rss_urls = 300, 4, [2000]
        args.latency_ms, args.concurrency = [0, 20], [64]

    with tempfile.TemporaryDirectory() as tmp:
        files = write_cogs(Path(tmp), args.files)
        mean_size = np.mean([f.stat().st_size for f in files]) / 1e6
        header_kib = mean_header_kib(files, args.urls)
        print(f"{len(files)} COGs written, mean {mean_size:.1f} MB, headers {header_kib:.1f} KiB")
        server = ServerProcess(files, max([args.urls, *args.rss_urls]))
        table = url_table(server.base_url, args.urls)
        # The forkserver starts once per process (the first pool of a Dagster step pays it);
        # start it before anything is timed, so every workers>1 run forks from it.
        warm_up = WorkerConfig(StorageOptions(), RetryPolicy(), 1, 1, {})
        list(HeaderPool(table.slice(0, 1).column("id").to_pylist(), warm_up, 1).rows())
        print(
            "latency_ms conc client      | hdr/s  /bare  /async-tiff | "
            "req/file KiB/file hdr KiB  cpu_ms/hdr"
        )
        for latency in args.latency_ms:
            for concurrency in args.concurrency:
                run_cell(server, table, latency, concurrency, args, header_kib)
        server.call("latency", 0.0)
        ctx = mp.get_context("spawn")
        for n in args.rss_urls:
            parent, child = ctx.Pipe()
            out = str(Path(tmp) / f"headers_{n}.parquet")
            proc = ctx.Process(target=_rss_child, args=(child, server.base_url, n, 256, out))
            proc.start()
            result = parent.recv()
            proc.join()
            print(
                f"streaming {n} URLs -> Parquet at concurrency 256 (default workers): "
                f"{n / result['seconds']:.0f} hdr/s, peak RSS growth of this process "
                f"+{result['parent_growth_mib']:.0f} MiB, of all processes "
                f"+{result['all_growth_mib']:.0f} MiB (over this process before the run and the "
                f"workers as forked, {result['workers_at_fork_mib']:.0f} MiB), "
                f"statuses {result['counts']}"
            )
        server.stop()


if __name__ == "__main__":
    main()
