"""Peak RSS and per-step rates of ONE month materialized through the real Dagster graph.

A generated stac-geoparquet record table (one Parquet file, every record in 2024-03, three
COG band assets ``B02``/``B03``/``B04`` plus a thumbnail per record, every record its own
three files) is configured as a ``record_table`` source in a sources YAML
(``RASTERET_ASSETS_SOURCES``). A fresh process per ``--headers`` figure (multiprocessing
``spawn``, so its peak RSS is its own) loads ``rasteret_assets.definitions`` with a temporary
workspace and ``DAGSTER_HOME`` and runs the source's ``<name>_monthly`` job for that one
partition, as ``python -m rasteret_assets.demo`` does: records -> cog_headers -> collection
(with its checks). The band hrefs point at a local range server (``tests/servers/
range_server.py``, in its own process) that maps every URL onto a few dozen GDAL-written COGs,
so every header is really fetched over loopback TCP.

Reported per run: peak RSS of the child (``/proc/self/statm`` sampled every 10 ms,
cross-checked with ``ru_maxrss``) overall and per step, wall time, process CPU per header, and
per step its time (from the run's event log: step start to step success) and rate: records
rows/s, cog_headers headers/s (plus the engine's own ``fetched``/``elapsed_s``/
``headers_per_s`` materialization metadata), collection headers joined/s (the (record, band)
header uses the ``header_coverage`` check counted, divided by the collection step's seconds).
Targets are printed next to the figures; a miss does not fail the process.

    .venv/bin/python benchmarks/month_materialize.py                          # 60,000 headers
    .venv/bin/python benchmarks/month_materialize.py --quick                  # 3,000: smoke run
    .venv/bin/python benchmarks/month_materialize.py --headers 60000 --headers 600000
    .venv/bin/python benchmarks/month_materialize.py --concurrency 128 --json

The loopback server shares the machine's cores with the measured process, so header rates
are lower bounds on what the engine does against a remote store.
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing as mp
import os
import resource
import shutil
import sys
import tempfile
import threading
import time
from array import array
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

# The measured child imports this module too (spawn), so everything only the parent or the
# server process needs (rasterio, the generator, the server) is imported where it is used:
# the child's RSS holds Dagster and rasteret_assets, nothing of the harness.

SOURCE = "bench"
BANDS = ("B02", "B03", "B04")
MONTH = datetime(2024, 3, 1, tzinfo=UTC)
PARTITION = MONTH.strftime("%Y-%m-%d")
STEPS = ("records", "cog_headers", "collection")

TARGET_RSS_MIB = 1024  # peak RSS at 60,000 headers
TARGET_RSS_AT = 60_000
TARGET_GROWTH_MIB = 150  # peak RSS from 60,000 to 600,000 headers
TARGET_GROWTH_TO = 600_000
TARGET_JOIN_PER_S = 20_000  # collection step, headers joined per second


def current_rss_mib() -> float:
    with Path("/proc/self/statm").open() as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Sampler:
    """RSS and process CPU every 10 ms on a daemon thread, kept as a timeline so that each
    step's peak and CPU can be read off its window afterwards."""

    def __init__(self) -> None:
        self.times = array("d")
        self.rss = array("d")
        self.cpu = array("d")
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        self.times.append(time.time())
        self.rss.append(current_rss_mib())
        self.cpu.append(cpu_seconds())

    def _run(self) -> None:
        while not self._done.wait(0.01):
            self._sample()

    def start(self) -> Sampler:
        self._sample()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._done.set()
        self._thread.join()
        self._sample()

    def window(self, start: float, end: float) -> tuple[float, float]:
        """Peak RSS (MiB) and CPU seconds between the wall-clock times ``start`` and ``end``."""
        inside = [i for i, t in enumerate(self.times) if start <= t <= end]
        if not inside:  # a step shorter than one sample: the samples around it
            before = max((i for i, t in enumerate(self.times) if t < start), default=0)
            inside = [before, min(before + 1, len(self.times) - 1)]
        first, last = inside[0], inside[-1]
        peak = max(self.rss[i] for i in inside)
        return peak, self.cpu[last] - self.cpu[max(first - 1, 0)]


def _plain(value: Any) -> Any:
    """A metadata value as JSON-able Python."""
    value = getattr(value, "value", value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def materialize_child(
    conn: Connection, env: dict[str, str], concurrency: int, per_host: int
) -> None:
    """The measured process: load the definitions, run the month, report what it saw."""
    os.environ.update(env)
    import warnings

    warnings.filterwarnings("ignore")  # Dagster's beta/preview notices on every asset
    sampler = Sampler().start()
    cpu_at_start = cpu_seconds()
    import dagster as dg

    from rasteret_assets.definitions import defs

    instance = dg.DagsterInstance.get()
    job = defs.resolve_job_def(f"{SOURCE}_monthly")
    run_config = {
        "loggers": {"console": {"config": {"log_level": "WARNING"}}},
        "resources": {
            "concurrency": {"config": {"max_concurrent": concurrency, "max_per_host": per_host}}
        },
    }
    loaded_rss = current_rss_mib()
    cpu_loaded = cpu_seconds()
    started = time.perf_counter()
    result = job.execute_in_process(
        partition_key=PARTITION, instance=instance, run_config=run_config, raise_on_error=False
    )
    seconds = time.perf_counter() - started
    cpu_run = cpu_seconds() - cpu_loaded
    sampler.stop()

    steps: dict[str, dict[str, Any]] = {}
    begun: dict[str, float] = {}
    for entry in instance.all_logs(result.run_id):
        event = entry.dagster_event
        if event is None or entry.step_key is None:
            continue
        step = entry.step_key.removeprefix(f"{SOURCE}__")
        if event.event_type_value == "STEP_START":
            begun[step] = entry.timestamp
        elif event.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE") and step in begun:
            peak, cpu = sampler.window(begun[step], entry.timestamp)
            steps[step] = {
                "status": event.event_type_value.removeprefix("STEP_").lower(),
                "seconds": entry.timestamp - begun[step],
                "peak_rss_mib": peak,
                "cpu_s": cpu,
            }
    for step in STEPS:
        events = result.asset_materializations_for_node(f"{SOURCE}__{step}")
        if events:
            steps.setdefault(step, {})["metadata"] = {
                k: _plain(v)
                for k, v in events[-1].metadata.items()
                if k not in ("dagster/column_schema", "path")
            }
    checks = {
        c.check_name: {"passed": c.passed, **{k: _plain(v) for k, v in c.metadata.items()}}
        for c in result.get_asset_check_evaluations()
    }
    conn.send(
        {
            "success": result.success,
            "seconds": seconds,
            "cpu_s": cpu_run,
            "cpu_total_s": cpu_seconds() - cpu_at_start,
            "start_rss_mib": sampler.rss[0],
            "loaded_rss_mib": loaded_rss,
            "peak_rss_mib": max(sampler.rss),
            "ru_maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "steps": steps,
            "checks": checks,
        }
    )


def serve(conn: Connection, files: list[str], records: int) -> None:
    """Server process: ``/cogs/{k}/{band}.tif`` for ``k < records``, aliased onto the COGs."""
    from servers.range_server import RangeServer

    server = RangeServer().start()
    blobs = []
    for i, file in enumerate(files):
        blobs.append(f"/blobs/{i}.tif")
        server.add_file(blobs[-1], Path(file))
    for k in range(records):
        for b, band in enumerate(BANDS):
            server.add_alias(f"/cogs/{k}/{band}.tif", blobs[(3 * k + b) % len(blobs)])
    conn.send(server.base_url)
    while conn.recv() == "stats":
        conn.send({"requests": server.total_requests, "connections": server.connections_accepted})
    server.stop()


def write_table(path: Path, records: int, base_url: str) -> None:
    from ingest.synthetic_records import write_synthetic

    write_synthetic(
        path,
        records,
        start=MONTH,
        months=1,  # 30.4 days from March 1st: all of them in 2024-03
        unique_hrefs=True,
        bands=BANDS,
        href_base=f"{base_url}/cogs",
        id_prefix="BENCH",
    )


def write_sources(path: Path, table: Path) -> None:
    band_map = ", ".join(f"{b}: {b}" for b in BANDS)
    path.write_text(
        "sources:\n"
        f"  - name: {SOURCE}\n"
        "    kind: record_table\n"
        f"    location: {json.dumps(str(table))}\n"
        f"    band_map: {{{band_map}}}\n"
        f'    start_month: "{MONTH:%Y-%m}"\n'
    )


def run_one(
    tmp: Path, headers: int, base_url: str, args: argparse.Namespace, server: Connection
) -> dict[str, Any]:
    records = max(headers // len(BANDS), 1)
    run_dir = tmp / f"run_{headers}"
    run_dir.mkdir()
    table = run_dir / "records.parquet"
    started = time.perf_counter()
    write_table(table, records, base_url)
    log(
        f"{headers:,} headers: {records:,} records written in "
        f"{time.perf_counter() - started:.1f} s ({table.stat().st_size / 2**20:.1f} MiB Parquet)"
    )
    sources = run_dir / "sources.yaml"
    write_sources(sources, table)
    env = {
        "RASTERET_ASSETS_SOURCES": str(sources),
        "RASTERET_ASSETS_WORKSPACE": str(run_dir / "workspace"),
        "DAGSTER_HOME": str(run_dir / "dagster_home"),
    }
    (run_dir / "dagster_home").mkdir()
    (run_dir / "dagster_home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    server.send("stats")
    before = server.recv()
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    process = ctx.Process(
        target=materialize_child, args=(child, env, args.concurrency, args.per_host)
    )
    process.start()
    child.close()
    try:
        result = parent.recv()
    except EOFError:
        process.join()
        raise SystemExit(f"the measured process died (exit code {process.exitcode})") from None
    process.join()
    server.send("stats")
    after = server.recv()
    result |= {
        "headers": records * len(BANDS),
        "records": records,
        "concurrency": args.concurrency,
        "per_host": args.per_host,
        "server_requests": after["requests"] - before["requests"],
        "server_connections": after["connections"] - before["connections"],
        "peak_rss_mib": max(result["peak_rss_mib"], result["ru_maxrss_mib"]),
    }
    derive_rates(result)
    return result


def derive_rates(result: dict[str, Any]) -> None:
    """Add per-step rates (and the figures they come from) to ``result['steps']``."""
    steps = result["steps"]
    records = steps.get("records", {})
    meta = records.get("metadata", {})
    if records.get("seconds"):
        records["rows"] = meta.get("dagster/row_count", 0)
        records["rate"] = records["rows"] / records["seconds"]
    heads = steps.get("cog_headers", {})
    meta = heads.get("metadata", {})
    if heads.get("seconds"):
        heads["fetched"] = meta.get("fetched", meta.get("dagster/row_count", 0))
        heads["rate"] = heads["fetched"] / heads["seconds"]
        heads["cpu_ms_per_header"] = 1000 * heads["cpu_s"] / max(heads["fetched"], 1)
    coll = steps.get("collection", {})
    coverage = result["checks"].get("header_coverage", {})
    if coll.get("seconds"):
        coll["joined"] = coverage.get("covered", 0)
        coll["rate"] = coll["joined"] / coll["seconds"]
    result["cpu_ms_per_header"] = 1000 * result["cpu_s"] / max(result["headers"], 1)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISS"


def targets(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every target that the runs measured, with the figure and whether it was met."""
    out = []
    by_headers = {r["headers"]: r for r in results}
    base = by_headers.get(TARGET_RSS_AT)
    if base is not None:
        out.append(
            {
                "target": f"peak RSS <= {TARGET_RSS_MIB} MiB at {TARGET_RSS_AT:,} headers",
                "value": round(base["peak_rss_mib"], 1),
                "met": base["peak_rss_mib"] <= TARGET_RSS_MIB,
            }
        )
    top = by_headers.get(TARGET_GROWTH_TO)
    if base is not None and top is not None:
        growth = top["peak_rss_mib"] - base["peak_rss_mib"]
        out.append(
            {
                "target": f"peak RSS +<= {TARGET_GROWTH_MIB} MiB from {TARGET_RSS_AT:,} to "
                f"{TARGET_GROWTH_TO:,} headers",
                "value": round(growth, 1),
                "met": growth <= TARGET_GROWTH_MIB,
            }
        )
    for r in results:
        rate = r["steps"].get("collection", {}).get("rate")
        if rate is not None:
            out.append(
                {
                    "target": f"collection >= {TARGET_JOIN_PER_S:,} headers joined/s "
                    f"({r['headers']:,} headers)",
                    "value": round(rate),
                    "met": rate >= TARGET_JOIN_PER_S,
                }
            )
    return out


def print_run(r: dict[str, Any]) -> None:
    steps = r["steps"]
    status = "succeeded" if r["success"] else "FAILED"
    print(
        f"\n{r['headers']:,} headers ({r['records']:,} records x {len(BANDS)} bands, one month), "
        f"max_concurrent={r['concurrency']} max_per_host={r['per_host']}: run {status}"
    )
    rss_note = ""
    if r["headers"] == TARGET_RSS_AT:
        ok = r["peak_rss_mib"] <= TARGET_RSS_MIB
        rss_note = f"   [target <= {TARGET_RSS_MIB} MiB: {verdict(ok)}]"
    print(
        f"  wall {r['seconds']:.1f} s   peak RSS {r['peak_rss_mib']:,.0f} MiB "
        f"(ru_maxrss {r['ru_maxrss_mib']:,.0f}; {r['loaded_rss_mib']:,.0f} after loading the "
        f"definitions){rss_note}"
    )
    print(
        f"  CPU {r['cpu_s']:.1f} s = {r['cpu_ms_per_header']:.2f} ms/header   range server: "
        f"{r['server_requests']:,} requests over {r['server_connections']:,} connections"
    )
    print(f"  {'step':<12} {'status':>8} {'seconds':>8} {'rate':>26} {'peak RSS':>9} {'CPU s':>7}")
    units = {"records": "rows/s", "cog_headers": "headers/s", "collection": "joined/s"}
    for name in STEPS:
        step = steps.get(name)
        if not step or "seconds" not in step:
            print(f"  {name:<12} {'-':>8}")
            continue
        rate = f"{step['rate']:,.0f} {units[name]}" if "rate" in step else "-"
        print(
            f"  {name:<12} {step['status']:>8} {step['seconds']:>8.1f} {rate:>26} "
            f"{step['peak_rss_mib']:>9,.0f} {step['cpu_s']:>7.1f}"
        )
    rec = steps.get("records", {})
    if "rows" in rec:
        print(f"  records: {rec['rows']:,} rows")
    heads = steps.get("cog_headers", {})
    meta = heads.get("metadata", {})
    if meta:
        print(
            f"  cog_headers: fetched={meta.get('fetched')} reused={meta.get('reused')} "
            f"failed={meta.get('failed')} errors={meta.get('errors_by_class')} "
            f"requests={meta.get('requests')}; engine {meta.get('headers_per_s')} headers/s over "
            f"{meta.get('elapsed_s')} s; step CPU {heads.get('cpu_ms_per_header', 0):.2f} "
            "ms/header"
        )
    coll = steps.get("collection", {})
    if "joined" in coll:
        ok = coll["rate"] >= TARGET_JOIN_PER_S
        failed = [n for n, c in r["checks"].items() if not c["passed"]]
        published = coll.get("metadata", {}).get("published")
        print(
            f"  collection: {coll['joined']:,} headers joined, published={published}, "
            f"failed checks={failed or 'none'}   "
            f"[target >= {TARGET_JOIN_PER_S:,} joined/s: {verdict(ok)}]"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--headers",
        type=int,
        action="append",
        help="distinct header URLs (records x 3 bands) of the month; repeat to compare "
        "(default 60,000)",
    )
    parser.add_argument("--concurrency", type=int, default=64, help="max_concurrent (default 64)")
    parser.add_argument(
        "--per-host", type=int, default=None, help="max_per_host (default: --concurrency)"
    )
    parser.add_argument("--cogs", type=int, default=24, help="GDAL COGs behind the URLs")
    parser.add_argument("--quick", action="store_true", help="3,000-header smoke run")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    if args.quick:
        args.headers, args.cogs = [3_000], 6
    if args.cogs % 3:
        parser.error("--cogs must be a multiple of 3: a record's three bands share one CRS")
    args.headers = args.headers or [60_000]
    args.per_host = args.per_host or args.concurrency

    tmp = Path(tempfile.mkdtemp(prefix="month-materialize-bench-"))
    ctx = mp.get_context("spawn")
    server_parent, server_child = ctx.Pipe()
    server = None
    try:
        from record_table_build import write_cogs

        cogs = write_cogs(tmp, args.cogs)
        most = max(args.headers) // len(BANDS)
        server = ctx.Process(
            target=serve, args=(server_child, [str(c) for c in cogs], most), daemon=True
        )
        server.start()
        base_url = server_parent.recv()
        log(f"range server at {base_url}: {most * len(BANDS):,} URLs over {len(cogs)} COGs")
        results = []
        for headers in args.headers:
            results.append(run_one(tmp, headers, base_url, args, server_parent))
            if not args.json:
                print_run(results[-1])
        met = targets(results)
        if args.json:
            print(json.dumps({"runs": results, "targets": met}, indent=2, default=str))
        else:
            if len(results) > 1:
                print()
                for a, b in itertools.pairwise(results):
                    print(
                        f"peak RSS {a['headers']:,} -> {b['headers']:,} headers: "
                        f"{b['peak_rss_mib'] - a['peak_rss_mib']:+,.0f} MiB"
                    )
            print("\ntargets:")
            for t in met:
                print(f"  {t['target']}: {t['value']:,} -> {verdict(t['met'])}")
        server_parent.send("stop")
        server.join(10)
    finally:
        if server is not None and server.is_alive():
            server.terminate()
        if args.keep:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
