"""Soak: 100,000 URLs through the header engine with injected faults, RSS sampled throughout.

The range server (tests/servers/range_server.py) runs in a separate process, so its memory is
not counted, and serves every URL as an alias of one of the GDAL-written ``cog-`` files of
tests/tiff/cog_corpus.py (no copies). A deterministic plan, a hash of (seed, URL index), picks
about ``--transient`` of the URLs for a fault that clears after one or two requests (503 with
``Retry-After: 0``, 429, 500, a reset or a truncated body mid-body) and ``--permanent`` for a
fault that never clears (404, 403, an HTML page instead of a TIFF).

All URLs go through ``fetch_headers`` in one call, streamed into Parquet by ``write_outcomes``;
the driver keeps nothing per URL. RSS (``VmRSS``) is sampled every second and at each tenth of
the URLs. Afterwards the Parquet file is checked: exactly one outcome per URL, every transient
URL ``ok`` after exactly ``times + 1`` attempts, every permanent URL failed with its expected
error class after one attempt and an error naming the URL, every clean URL ``ok``. The exit
code is 1 when a check fails or RSS grew by more than ``--max-growth-mib`` over the second half
of the run: the first thousand or so URLs warm up allocator arenas, the connection pool and
Arrow's memory pool (about 30 MiB, once), so a --quick run's 10 % mark still sits inside that
warm-up, while memory that grew with the number of URLs would grow in the second half too.

    .venv/bin/python benchmarks/soak_engine.py            # 100,000 URLs (~2 min)
    .venv/bin/python benchmarks/soak_engine.py --quick    # 5,000 URLs
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import multiprocessing as mp
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import rasterio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from servers.range_server import Fault, RangeServer  # noqa: E402
from tiff.cog_corpus import COG_PREFIX, VARIANTS  # noqa: E402

from rasteret_assets.ingest.headers.engine import HeaderOutcome, fetch_headers  # noqa: E402
from rasteret_assets.ingest.headers.rows import write_outcomes  # noqa: E402
from rasteret_assets.storage import StorageOptions, StorageRouter  # noqa: E402

#: Faults that clear after ``times`` requests; default retry policy: 5 attempts.
TRANSIENT_FAULTS: tuple[Fault, ...] = (
    Fault("503", times=1, retry_after=0),
    Fault("503", times=2, retry_after=0),
    Fault("429", times=1),
    Fault("500", times=1),
    Fault("500", times=2),
    Fault("reset", times=1),
    Fault("reset", times=2),
    Fault("truncate", times=1),
    Fault("truncate", times=2),
)

#: Faults that never clear, with the error class each must end in.
PERMANENT_FAULTS: tuple[tuple[Fault, str], ...] = (
    (Fault("404"), "not_found"),
    (Fault("403"), "forbidden"),
    (Fault("html"), "not_tiff"),
)

CLEAN, TRANSIENT, PERMANENT = "clean", "transient", "permanent"


@dataclass(frozen=True)
class Expectation:
    """What one URL is planned to get and how it must end."""

    category: str
    fault: Fault | None
    status: str
    attempts: int | None  # exact attempts required; None: any

    @property
    def label(self) -> str:
        if self.fault is None:
            return CLEAN
        times = "" if self.fault.times is None else f" x{self.fault.times}"
        return f"{self.category} {self.fault.kind}{times}"


@dataclass(frozen=True)
class SoakPlan:
    """Which URL gets which fault: a pure function of (seed, index), identical in every process.

    Nothing is stored per URL, so the driver's memory does not grow with ``n_urls``.
    """

    n_urls: int
    transient: float
    permanent: float
    seed: int = 0
    prefix: str = "/soak"

    def __post_init__(self) -> None:
        if self.n_urls < 1:
            raise ValueError(f"n_urls must be >= 1, got {self.n_urls}")
        if self.transient < 0 or self.permanent < 0 or self.transient + self.permanent > 1:
            raise ValueError("transient and permanent must be >= 0 and add up to at most 1")

    def path(self, index: int) -> str:
        return f"{self.prefix}/{index}.tif"

    def blob_path(self, blob: int) -> str:
        return f"{self.prefix}-blobs/{blob}.tif"

    def index_of(self, url: str) -> int | None:
        """The index a URL of this plan was made from, or None for a URL it never made."""
        path = url.split("://", 1)[-1].partition("/")[2]
        stem = path.removeprefix(self.prefix.lstrip("/") + "/").removesuffix(".tif")
        if not stem.isdigit() or self.path(int(stem)).lstrip("/") != path:
            return None
        index = int(stem)
        return index if index < self.n_urls else None

    def expect(self, index: int) -> Expectation:
        digest = hashlib.blake2b(f"{self.seed}:{index}".encode(), digest_size=16).digest()
        draw = int.from_bytes(digest[:8]) / 2**64
        pick = int.from_bytes(digest[8:])
        if draw < self.permanent:
            fault, error_class = PERMANENT_FAULTS[pick % len(PERMANENT_FAULTS)]
            return Expectation(PERMANENT, fault, error_class, 1)
        if draw < self.permanent + self.transient:
            fault = TRANSIENT_FAULTS[pick % len(TRANSIENT_FAULTS)]
            assert fault.times is not None
            return Expectation(TRANSIENT, fault, "ok", fault.times + 1)
        return Expectation(CLEAN, None, "ok", None)


def write_soak_cogs(directory: Path, limit: int | None = None) -> list[Path]:
    """Write the corpus's GDAL ``cog-`` variants (the first ``limit`` of them)."""
    directory.mkdir(parents=True, exist_ok=True)
    variants = [v for v in VARIANTS if v.name.startswith(COG_PREFIX)][:limit]
    paths = []
    with rasterio.Env(CPL_LOG="/dev/null", GDAL_NUM_THREADS=1):
        for variant in variants:
            path = directory / f"{variant.name}.tif"
            variant.build(path)
            paths.append(path)
    return paths


def install(server: RangeServer, plan: SoakPlan, blobs: list[bytes]) -> None:
    """Register every URL of ``plan`` as an alias of a blob, and its planned fault."""
    for number, blob in enumerate(blobs):
        server.add_bytes(plan.blob_path(number), blob)
    for index in range(plan.n_urls):
        path = plan.path(index)
        server.add_alias(path, plan.blob_path(index % len(blobs)))
        fault = plan.expect(index).fault
        if fault is not None:
            server.set_fault(path, fault)


@dataclass
class SoakRun:
    counts: Counter[str]
    seconds: float


async def _observed(
    outcomes: AsyncIterator[HeaderOutcome], on_outcome: Callable[[int], None]
) -> AsyncIterator[HeaderOutcome]:
    done = 0
    async for outcome in outcomes:
        done += 1
        on_outcome(done)
        yield outcome


async def run_soak(
    base_url: str,
    plan: SoakPlan,
    out: Path,
    *,
    concurrency: int,
    on_outcome: Callable[[int], None] = lambda done: None,
) -> SoakRun:
    """Every URL of ``plan`` through the engine in one call, streamed into Parquet at ``out``."""
    backend = StorageRouter(
        StorageOptions(max_connections=concurrency, max_connections_per_host=concurrency)
    )
    urls = (base_url + plan.path(index) for index in range(plan.n_urls))
    started = time.perf_counter()
    try:
        outcomes = fetch_headers(urls, backend, max_concurrent=concurrency)
        counts = await write_outcomes(_observed(outcomes, on_outcome), out)
    finally:
        await backend.close()
    return SoakRun(counts, time.perf_counter() - started)


@dataclass
class Verdict:
    """What the written outcomes showed: per planned label counts, and every broken promise."""

    rows: int = 0
    by_label: Counter[str] = field(default_factory=Counter)
    clean_retried: int = 0
    problems: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)

    def fail(self, problem: str, example: str) -> None:
        self.problems[problem] += 1
        if len(self.examples) < 10:
            self.examples.append(f"{problem}: {example}")


def verify(out: Path, plan: SoakPlan) -> Verdict:
    """Check the outcome Parquet against the plan (see the module docstring for the rules)."""
    table = pq.read_table(out, columns=["url", "status", "error", "attempts"])
    verdict = Verdict(rows=table.num_rows)
    seen = np.zeros(plan.n_urls, dtype=np.int32)
    columns = [table.column(name).to_pylist() for name in ("url", "status", "error", "attempts")]
    for url, status, error, attempts in zip(*columns, strict=True):
        index = plan.index_of(url)
        if index is None:
            verdict.fail("unknown URL", url)
            continue
        seen[index] += 1
        expected = plan.expect(index)
        verdict.by_label[expected.label] += 1
        if status != expected.status:
            verdict.fail(f"{expected.label} ended {status}", f"{url} ({error})")
        elif expected.attempts is not None and attempts != expected.attempts:
            verdict.fail(f"{expected.label} took {attempts} attempts", url)
        elif expected.category == PERMANENT and plan.path(index) not in (error or ""):
            verdict.fail(f"{expected.label} error does not name the URL", f"{url}: {error}")
        if expected.category == CLEAN and attempts != 1:
            verdict.clean_retried += 1
    for index in np.flatnonzero(seen == 0)[:10].tolist():
        verdict.examples.append(f"no outcome: {plan.path(index)}")
    for index in np.flatnonzero(seen > 1)[:10].tolist():
        verdict.examples.append(f"{seen[index]} outcomes: {plan.path(index)}")
    if missing := int(np.count_nonzero(seen == 0)):
        verdict.problems["no outcome"] = missing
    if repeated := int(np.count_nonzero(seen > 1)):
        verdict.problems["more than one outcome"] = repeated
    return verdict


def rss_mib() -> float:
    """Resident set size of this process (``VmRSS``; psutil is not a dependency)."""
    with Path("/proc/self/status").open() as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS line in /proc/self/status")


class RssMonitor:
    """Peak RSS sampled every ``interval`` seconds, plus RSS at each tenth of the URLs."""

    def __init__(self, total: int, interval: float = 1.0) -> None:
        self.total = total
        self.interval = interval
        self.started = time.perf_counter()
        self.baseline = rss_mib()
        self.peak = self.baseline
        self.samples = 0
        self.at_tenth: dict[int, float] = {}
        self._next_tenth = 1
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="rss-sampler", daemon=True)

    def __enter__(self) -> RssMonitor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mib())

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, rss_mib())
            self.samples += 1

    def on_outcome(self, done: int) -> None:
        """Record RSS when ``done`` first reaches the next tenth of the URLs."""
        while self._next_tenth <= 10 and done * 10 >= self._next_tenth * self.total:
            rss = rss_mib()
            self.peak = max(self.peak, rss)
            self.at_tenth[self._next_tenth] = rss
            elapsed = time.perf_counter() - self.started
            print(
                f"  {self._next_tenth * 10:3d} %  {done:7d} URLs  {elapsed:6.1f} s  "
                f"{done / elapsed:6.0f} URL/s  RSS {rss:6.1f} MiB",
                flush=True,
            )
            self._next_tenth += 1


def serve(conn: Connection, files: list[Path], plan: SoakPlan) -> None:
    """Server process: serve the plan, then report request and connection counts on stop."""
    server = RangeServer().start()
    install(server, plan, [f.read_bytes() for f in files])
    conn.send(server.base_url)
    conn.recv()
    conn.send({"requests": server.total_requests, "connections": server.connections_accepted})
    server.stop()


def report(run: SoakRun, monitor: RssMonitor, verdict: Verdict, n_urls: int) -> float:
    """Print the figures; return the RSS growth from 50 % to 100 % of the URLs in MiB."""
    rss = {tenth: monitor.at_tenth.get(tenth, float("nan")) for tenth in (1, 5, 10)}
    print(f"throughput: {n_urls / run.seconds:.0f} URL/s ({n_urls} URLs in {run.seconds:.1f} s)")
    print(
        f"RSS MiB: before {monitor.baseline:.1f}, at 10 % {rss[1]:.1f}, 50 % {rss[5]:.1f}, "
        f"100 % {rss[10]:.1f}; peak {monitor.peak:.1f} ({monitor.samples} 1-s samples); "
        f"growth 10 %->100 % {rss[10] - rss[1]:+.1f}, 50 %->100 % {rss[10] - rss[5]:+.1f}"
    )
    print("outcomes by status: " + ", ".join(f"{k}={v}" for k, v in sorted(run.counts.items())))
    print(f"outcome rows: {verdict.rows}; by plan:")
    for label, count in sorted(verdict.by_label.items()):
        print(f"  {count:7d}  {label}")
    print(f"clean URLs that needed a retry anyway: {verdict.clean_retried}")
    return rss[10] - rss[5]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--urls", type=int, default=100_000)
    parser.add_argument("--transient", type=float, default=0.05)
    parser.add_argument("--permanent", type=float, default=0.01)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--files", type=int, default=24, help="distinct COGs behind the URLs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-growth-mib", type=float, default=16.0)
    parser.add_argument("--quick", action="store_true", help="5,000 URLs")
    args = parser.parse_args()
    if args.quick:
        args.urls = 5_000
    plan = SoakPlan(args.urls, args.transient, args.permanent, args.seed)

    with tempfile.TemporaryDirectory() as tmp:
        files = write_soak_cogs(Path(tmp) / "cogs", args.files)
        ctx = mp.get_context("spawn")
        conn, child = ctx.Pipe()
        server = ctx.Process(target=serve, args=(child, files, plan), daemon=True)
        server.start()
        base_url = conn.recv()
        print(
            f"{plan.n_urls} URLs over {len(files)} COGs, {plan.transient:.0%} transient and "
            f"{plan.permanent:.0%} permanent faults, concurrency {args.concurrency}",
            flush=True,
        )
        out = Path(tmp) / "outcomes.parquet"
        with RssMonitor(plan.n_urls) as monitor:
            run = asyncio.run(
                run_soak(
                    base_url, plan, out, concurrency=args.concurrency, on_outcome=monitor.on_outcome
                )
            )
        conn.send("stop")
        served = conn.recv()
        server.join(10)
        verdict = verify(out, plan)
        growth = report(run, monitor, verdict, plan.n_urls)
    print(f"server: {served['requests']} requests on {served['connections']} connections")
    failed = bool(verdict.problems)
    for problem, count in sorted(verdict.problems.items()):
        print(f"FAIL {count} x {problem}")
    for example in verdict.examples:
        print(f"  e.g. {example}")
    if growth > args.max_growth_mib:
        failed = True
        print(f"FAIL RSS grew {growth:.1f} MiB from 50 % to 100 % (limit {args.max_growth_mib})")
    print("FAILED" if failed else "PASSED")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
