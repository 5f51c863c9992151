"""Throughput, requests, bytes, CPU and memory of the header engine against a local server.

The range server (tests/servers/range_server.py) runs in a separate process with injected
per-request latency and serves N URLs that map onto a few dozen GDAL-written COGs shaped
like Sentinel-2 bands (1024-pixel tiles, 4 overview levels). For every latency x concurrency
pair it runs

* the engine (``enrich_table``: fetch, parse, Arrow ``{band}_metadata`` column), and
* a bare aiohttp client making one 16 KiB GET per URL and parsing nothing: the transport
  ceiling of this machine (client and server share its cores).

Then it measures peak RSS growth of a streaming run (outcomes written to Parquet) for two
URL counts in fresh processes.

    .venv/bin/python benchmarks/enrich_throughput.py                 # full run (~3 min)
    .venv/bin/python benchmarks/enrich_throughput.py --quick         # smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import resource
import sys
import tempfile
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path

import aiohttp
import numpy as np
import pyarrow as pa
import rasterio
from rasterio.transform import from_origin

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from servers.range_server import RangeServer  # noqa: E402

from rasteret_assets.ingest import build_url_index_from_assets, enrich_table  # noqa: E402
from rasteret_assets.ingest.headers.engine import fetch_headers  # noqa: E402
from rasteret_assets.ingest.headers.rows import write_outcomes  # noqa: E402
from rasteret_assets.storage import StorageOptions, StorageRouter  # noqa: E402

BARE_READ = 16384


def write_cogs(directory: Path, count: int) -> list[Path]:
    """Sentinel-2-like COGs: 10980 px would be slow to write, so 5120 px with 1024 tiles."""
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


async def bare_client(urls: list[str], concurrency: int) -> float:
    """One 16 KiB GET per URL, nothing parsed: requests per second."""
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
    queue = iter(urls)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            for url in queue:
                headers = {"Range": f"bytes=0-{BARE_READ - 1}"}
                async with session.get(url, headers=headers) as response:
                    await response.read()

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return len(urls) / (time.perf_counter() - started)


async def engine_run(table: pa.Table, concurrency: int) -> tuple[float, float, dict]:
    backend = StorageRouter(
        StorageOptions(max_connections=concurrency, max_connections_per_host=concurrency)
    )
    index = build_url_index_from_assets(table)
    cpu, wall = time.process_time(), time.perf_counter()
    result = await enrich_table(table, index, ["B04"], max_concurrent=concurrency, backend=backend)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    await backend.close()
    outcomes = result.outcomes
    summary = {
        "ok": result.status_counts.get("ok", 0),
        "requests": pa.compute.sum(outcomes.column("requests")).as_py(),
        "bytes": pa.compute.sum(outcomes.column("bytes_read")).as_py(),
    }
    return wall, cpu, summary


def current_rss_mib() -> float:
    with Path("/proc/self/statm").open() as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


def streaming_rss(base_url: str, n: int, concurrency: int, out: Path) -> dict:
    """In a fresh process: peak RSS growth while ``n`` outcomes stream into Parquet."""
    urls = [f"{base_url}/cog/{i}.tif" for i in range(n)]
    before = current_rss_mib()
    peak = [before]
    done = threading.Event()

    def sample() -> None:  # ru_maxrss would include start-up peaks before the run
        while not done.wait(0.01):
            peak[0] = max(peak[0], current_rss_mib())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()

    async def go() -> dict:
        backend = StorageRouter(
            StorageOptions(max_connections=concurrency, max_connections_per_host=concurrency)
        )
        started = time.perf_counter()
        counts = await write_outcomes(fetch_headers(urls, backend, max_concurrent=concurrency), out)
        await backend.close()
        return {"counts": dict(counts), "seconds": time.perf_counter() - started}

    result = asyncio.run(go())
    done.set()
    sampler.join()
    result["rss_growth_mib"] = max(peak[0], current_rss_mib()) - before
    return result


def _rss_child(conn: Connection, base_url: str, n: int, concurrency: int, out: str) -> None:
    conn.send(streaming_rss(base_url, n, concurrency, Path(out)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--urls", type=int, default=2000)
    parser.add_argument("--files", type=int, default=24)
    parser.add_argument("--latency-ms", type=float, nargs="+", default=[0, 20, 50])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--rss-urls", type=int, nargs="+", default=[20000, 200000])
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    args = parser.parse_args()
    if args.quick:
        args.urls, args.files, args.rss_urls = 300, 4, [2000]
        args.latency_ms, args.concurrency = [0, 20], [64]

    with tempfile.TemporaryDirectory() as tmp:
        files = write_cogs(Path(tmp), args.files)
        mean_size = np.mean([f.stat().st_size for f in files]) / 1e6
        print(f"{len(files)} COGs written, mean {mean_size:.1f} MB")
        server = ServerProcess(files, max([args.urls, *args.rss_urls]))
        table = url_table(server.base_url, args.urls)
        urls = table.column("assets").combine_chunks().field("B04").field("href").to_pylist()
        print(
            "latency_ms conc | engine hdr/s  ideal  ratio | bare hdr/s  engine/bare | "
            "req/file  KiB/file  cpu_ms/hdr  conns"
        )
        for latency in args.latency_ms:
            for concurrency in args.concurrency:
                server.call("latency", latency / 1000)
                wall, cpu, summary = asyncio.run(engine_run(table, concurrency))
                stats = server.call("stats")
                server.call("latency", latency / 1000)
                bare = asyncio.run(bare_client(urls, concurrency))
                rate = args.urls / wall
                ideal = concurrency / (latency / 1000) if latency else float("inf")
                print(
                    f"{latency:10.0f} {concurrency:4d} | {rate:12.0f} {ideal:6.0f} "
                    f"{rate / ideal:6.2f} | {bare:10.0f} {rate / bare:12.2f} | "
                    f"{summary['requests'] / args.urls:8.3f} "
                    f"{summary['bytes'] / args.urls / 1024:9.1f} "
                    f"{cpu / args.urls * 1000:11.3f} {stats['connections']:6d}"
                    + ("" if summary["ok"] == args.urls else f"  FAILED {summary}")
                )
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
                f"streaming {n} URLs -> Parquet at concurrency 256: "
                f"{n / result['seconds']:.0f} hdr/s, peak RSS growth "
                f"{result['rss_growth_mib']:.0f} MiB, statuses {result['counts']}"
            )
        server.stop()


if __name__ == "__main__":
    main()
