"""Memory and speed of ``RecordTableBuilder`` on large synthetic stac-geoparquet record tables.

Two runs, each in a fresh process so that its peak RSS is its own:

* **normalise + write**: ``--rows`` (default 1,000,000) records over 12 months, three COG band
  assets and a JPEG thumbnail per record (hrefs repeat ``--files`` files), WKB footprints,
  Parquet row groups of 65,536 rows — built into a workspace with enrichment off;
* **enrich + normalise + write**: ``--enrich-rows`` (default 100,000) records whose band hrefs
  point at a local range server (``tests/servers/range_server.py``, its own process) that maps
  them onto a few dozen GDAL-written COGs. By default every record has its own three files
  (300,000 distinct URLs: every header is read, as in a real catalog); ``--scenes N`` makes
  records share N scenes instead (``3 x N`` URLs), which exercises the header cache.

For comparison, a third process just reads the 1M-row table whole (``pq.read_table``): what
materialising it would cost before any normalisation. Peak RSS is sampled from
``/proc/self/statm`` every 10 ms and cross-checked with ``ru_maxrss``.

    .venv/bin/python benchmarks/record_table_build.py              # full run (~1-2 min)
    .venv/bin/python benchmarks/record_table_build.py --quick      # smoke run
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from ingest.synthetic_records import write_synthetic  # noqa: E402
from servers.range_server import RangeServer  # noqa: E402

BANDS = ("B02", "B03", "B04")
TARGET_RSS_MIB = 2048


def current_rss_mib() -> float:
    with Path("/proc/self/statm").open() as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


def measured(run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run ``run`` while sampling RSS; add peak RSS and wall time to its result."""
    start = current_rss_mib()
    peak = [start]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.01):
            peak[0] = max(peak[0], current_rss_mib())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    try:
        result = run()
    finally:
        done.set()
        sampler.join()
    result["seconds"] = time.perf_counter() - started
    result["start_rss_mib"] = start
    result["peak_rss_mib"] = max(peak[0], current_rss_mib())
    result["ru_maxrss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def build_child(conn: Connection, path: str, workspace: str, enrich: bool) -> None:
    from rasteret_assets.ingest import RecordTableBuilder

    def run() -> dict[str, Any]:
        builder = RecordTableBuilder(
            path,
            workspace_dir=workspace,
            enrich_cog=enrich,
            band_codes=list(BANDS) if enrich else None,
            max_concurrent=128,
        )
        collection = builder.build()
        stats = builder.stats
        result = {
            "rows": collection.count_rows(),
            "plan_seconds": stats.plan_seconds,
            "build_seconds": stats.build_seconds,
            "rows_per_second": stats.rows_per_second,
            "batches": stats.batches,
            "max_batch_rows": stats.max_batch_rows,
            "peak_arrow_mib": stats.peak_arrow_bytes / 2**20,
            "months": len(stats.months),
        }
        if builder.enrichment is not None:
            report = builder.enrichment
            result |= {
                "headers": report.headers_fetched,
                "cache_hits": report.cache_hits,
                "status": dict(report.status_counts),
            }
        return result

    conn.send(measured(run))


def read_whole_child(conn: Connection, path: str) -> None:
    import pyarrow.parquet as pq

    def run() -> dict[str, Any]:
        table = pq.read_table(path)
        return {"rows": table.num_rows, "arrow_mib": table.nbytes / 2**20}

    conn.send(measured(run))


def in_child(target: Callable[..., None], *args: object) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    process = ctx.Process(target=target, args=(child, *args))
    process.start()
    result = parent.recv()
    process.join()
    return result


def write_cogs(directory: Path, count: int) -> list[Path]:
    """Small Sentinel-2-like COGs: uint16/int16, 2048 px, 256/512 px tiles, overviews."""
    paths = []
    for i in range(count):
        block = 512 if i % 2 else 256
        profile = {
            "driver": "COG",
            "width": 2048,
            "height": 2048,
            "count": 1,
            "dtype": "uint16" if i % 3 else "int16",
            "compress": "DEFLATE",
            "blocksize": block,
            # One UTM zone per three consecutive files: a scene's bands (mapped onto files
            # 3k, 3k+1, 3k+2) share a CRS, as real scenes do.
            "crs": f"EPSG:{32601 + (i // 3) % 60}",
            "transform": Affine(10, 0, 300000 + i * 1000, 0, -10, 5000040),
            "nodata": 0,
            "overview_count": 3,
        }
        path = directory / f"cog_{i:02d}.tif"
        with rasterio.open(path, "w", **profile) as dataset:
            dataset.write(np.full((1, 2048, 2048), 1000 + i, dtype=profile["dtype"]))
        paths.append(path)
    return paths


def serve(conn: Connection, files: list[str], scenes: int) -> None:
    """Server process: ``/cogs/{k}/{band}.tif`` for every scene and band."""
    blobs = [Path(f).read_bytes() for f in files]
    server = RangeServer().start()
    for k in range(scenes):
        for b, band in enumerate(BANDS):
            server.add_bytes(f"/cogs/{k}/{band}.tif", blobs[(3 * k + b) % len(blobs)])
    conn.send(server.base_url)
    conn.recv()
    conn.send({"requests": server.total_requests, "connections": server.connections_accepted})
    server.stop()


def report(label: str, result: dict[str, Any], rows: int) -> None:
    rate = result.get("rows_per_second") or rows / result["seconds"]
    extra = ""
    if "headers" in result:
        extra = (
            f"  headers={result['headers']} cache_hits={result['cache_hits']} {result['status']}"
        )
    if "plan_seconds" in result:
        extra = (
            f"  plan={result['plan_seconds']:.1f}s batches={result['batches']} "
            f"arrow_peak={result['peak_arrow_mib']:.0f}MiB" + extra
        )
    print(
        f"{label:<34} {rows:>9,} {result['seconds']:>8.1f} {rate:>10,.0f} "
        f"{result['start_rss_mib']:>9,.0f} {result['peak_rss_mib']:>9,.0f} "
        f"{result['ru_maxrss_mib']:>9,.0f}{extra}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--files", type=int, default=30, help="distinct files per band (1M run)")
    parser.add_argument("--enrich-rows", type=int, default=100_000)
    parser.add_argument(
        "--scenes", type=int, default=0, help="scenes shared by the enrich run (0: one per row)"
    )
    parser.add_argument("--cogs", type=int, default=24)
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.enrich_rows, args.cogs = 100_000, 10_000, 4

    tmp = Path(tempfile.mkdtemp(prefix="record-table-bench-"))
    try:
        big = tmp / "records_1m.parquet"
        started = time.perf_counter()
        write_synthetic(big, args.rows, files=args.files, bands=BANDS)
        print(
            f"{args.rows:,} synthetic records written in {time.perf_counter() - started:.1f} s "
            f"({big.stat().st_size / 2**20:.0f} MiB Parquet)"
        )
        cogs = write_cogs(tmp, args.cogs)
        server_parent, server_child = mp.get_context("spawn").Pipe()
        scenes = args.scenes or args.enrich_rows
        server = mp.get_context("spawn").Process(
            target=serve, args=(server_child, [str(c) for c in cogs], scenes), daemon=True
        )
        server.start()
        base_url = server_parent.recv()
        enrich_table = tmp / "records_enrich.parquet"
        write_synthetic(
            enrich_table,
            args.enrich_rows,
            files=scenes,
            bands=BANDS,
            href_base=f"{base_url}/cogs",
        )

        print(
            f"\n{'run':<34} {'rows':>9} {'wall s':>8} {'rows/s':>10} "
            f"{'RSS start':>9} {'RSS peak':>9} {'maxrss':>9}   (MiB)"
        )
        whole = in_child(read_whole_child, str(big))
        report("read whole table (reference)", whole, args.rows)
        off = in_child(build_child, str(big), str(tmp / "ws_off"), False)
        report("build, enrichment off", off, args.rows)
        on = in_child(build_child, str(enrich_table), str(tmp / "ws_on"), True)
        report("build, enrichment on (loopback)", on, args.enrich_rows)
        server_parent.send("stats")
        served = server_parent.recv()
        server.join(10)
        print(
            f"\nrange server: {served['requests']:,} requests over "
            f"{served['connections']:,} connections"
        )
        verdict = "PASS" if off["peak_rss_mib"] < TARGET_RSS_MIB else "FAIL"
        print(
            f"target: peak RSS < {TARGET_RSS_MIB} MiB for {args.rows:,} rows -> "
            f"{off['peak_rss_mib']:.0f} MiB: {verdict}"
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
