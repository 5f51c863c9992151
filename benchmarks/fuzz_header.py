"""Sustained fuzzing of the TIFF header parser, across processes, with a report.

Seeds are the headers of the GDAL-written corpus (tests/tiff/cog_corpus.py) and of every TIFF
under ../shared/fixtures/tiff, each also re-laid out in the other byte order and TIFF flavour
(fuzz_seeds.py). Every input is a seed with a stack of structure-aware mutations
(fuzz_mutations.py), parsed three ways (fuzz_paths.py): the whole buffer, an incremental parse
fed exactly the ranges each NeedBytes asks for, and read_header from a small first read.

A crash is an exception that is not a TiffError (warnings count: they are turned into errors),
a broken driver promise, an input taking more than 1 s, or one that grows peak memory by more
than 64 MiB; its input is saved with the command that replays it, as is the slowest input.

Why a hand-rolled loop and not atheris (whose 3.0 wheel does install on Python 3.11 here):
libFuzzer's byte-level mutations know nothing of IFD entries, so the structure-aware part would
need a custom mutator anyway; its crash definition is "uncaught exception", not "anything but a
TiffError, plus driver promises"; and per-input time, error classes and inputs/s across two
processes come out of this loop directly, with no compiled, non-project dependency.

    .venv/bin/python benchmarks/fuzz_header.py --inputs 1000000 --workers 2 --seed 1
    .venv/bin/python benchmarks/fuzz_header.py --replay fuzz-crashes/exception-0123abcd.tif
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import hashlib
import json
import multiprocessing
import os
import queue
import random
import re
import resource
import signal
import sys
import tempfile
import time
import traceback
import warnings
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from fuzz_mutations import Mutator  # noqa: E402
from fuzz_paths import (  # noqa: E402
    SMALL_FIRST_READS,
    BrokenPromiseError,
    PathResults,
    message_template,
    run_paths,
)
from fuzz_seeds import Seed, make_seeds  # noqa: E402
from tiff.cog_corpus import generate_corpus  # noqa: E402

from rasteret_assets.tiff import TiffError, TiffHeader  # noqa: E402

DEFAULT_FIXTURES = ROOT.parent / "shared" / "fixtures" / "tiff"
PATH_NAMES = ("whole", "incremental", "small_first_read")
TIME_LIMIT_S = 1.0
#: An input still running after this long is interrupted and saved as a hang.
HANG_LIMIT_S = 20
MEMORY_LIMIT_MIB = 64
WARMUP_INPUTS = 2000
SAVED_PER_SIGNATURE = 3
PROGRESS_STRIDE = 256


class InputTimeout(BaseException):
    """Raised by SIGALRM inside a hanging parse; a BaseException so no handler swallows it."""


@dataclass
class Crash:
    kind: str  # exception | broken_promise | slow | memory | memory_growth | hang | worker_died
    signature: str
    detail: str
    seed: str
    mutations: list[str]
    known_size: bool
    first_read: int
    saved_as: str | None = None


@dataclass
class Slowest:
    seconds: float = 0.0
    seed: str = ""
    mutations: list[str] = field(default_factory=list)
    path_seconds: list[float] = field(default_factory=list)
    data: bytes = b""


@dataclass
class WorkerReport:
    worker: int
    inputs: int = 0
    seconds: float = 0.0
    path_seconds: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    outcomes: Counter[str] = field(default_factory=Counter)
    templates: Counter[str] = field(default_factory=Counter)
    mutations: Counter[str] = field(default_factory=Counter)
    crashes: list[Crash] = field(default_factory=list)
    slowest: Slowest = field(default_factory=Slowest)
    largest_request: int = 0
    rss_after_warmup_mib: float = 0.0
    rss_end_mib: float = 0.0
    peak_rss_mib: float = 0.0


def _current_rss_mib() -> float:
    """Resident memory after glibc returns its free pages: what is still in use, not what the
    allocator keeps after large transient parses."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc: report RSS untrimmed
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    with Path("/proc/self/statm").open() as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


_MUTATION_KIND = re.compile(r"[a-z_0-9]+")


def _signature(kind: str, error: BaseException | None) -> str:
    """Crash identity for de-duplication: kind, exception type and the parser line raising it."""
    if error is None:
        return kind
    frames = traceback.extract_tb(error.__traceback__)
    ours = [f for f in frames if "rasteret_assets" in f.filename] or frames
    where = f"{Path(ours[-1].filename).name}:{ours[-1].lineno}" if ours else "?"
    return f"{kind}:{type(error).__name__}@{where}"


class _Worker:
    """One fuzzing process: draws, runs and accounts inputs until its share or time is spent."""

    def __init__(self, worker: int, seeds: list[Seed], seed: int, crash_dir: Path) -> None:
        self.report = WorkerReport(worker)
        self.mutator = Mutator(seeds, random.Random(f"{seed}:{worker}"))
        self.crash_dir = crash_dir
        self.saved: Counter[str] = Counter()

    def run(self, inputs: int, deadline: float, progress: multiprocessing.Array) -> WorkerReport:
        signal.signal(signal.SIGALRM, self._on_alarm)
        warnings.simplefilter("error")
        report = self.report
        started = time.perf_counter()
        while report.inputs < inputs and time.time() < deadline:
            self.one_input()
            report.inputs += 1
            if report.inputs % PROGRESS_STRIDE == 0:
                progress[report.worker] = report.inputs
            if report.inputs == WARMUP_INPUTS:
                report.rss_after_warmup_mib = _current_rss_mib()
        progress[report.worker] = report.inputs
        report.seconds = time.perf_counter() - started
        report.rss_end_mib = _current_rss_mib()
        report.rss_after_warmup_mib = report.rss_after_warmup_mib or report.rss_end_mib
        report.peak_rss_mib = _peak_rss_mib()
        grown = report.rss_end_mib - report.rss_after_warmup_mib
        if grown > MEMORY_LIMIT_MIB:
            detail = f"resident memory grew by {grown:.0f} MiB after warm-up"
            report.crashes.append(Crash("memory_growth", "memory_growth", detail, "", [], False, 0))
        return report

    @staticmethod
    def _on_alarm(signum: int, frame: object) -> None:
        raise InputTimeout(f"input still running after {HANG_LIMIT_S} s")

    def one_input(self) -> None:
        report, rng = self.report, self.mutator.rng
        seed_name, data, log = self.mutator.mutate()
        known_size, first_read = rng.random() < 0.5, rng.choice(SMALL_FIRST_READS)
        report.mutations.update(_MUTATION_KIND.match(item).group() for item in log)
        peak_before = _peak_rss_mib()
        signal.alarm(HANG_LIMIT_S)
        try:
            results = run_paths(data, known_size=known_size, first_read=first_read)
        except InputTimeout as error:
            self._crash("hang", error, data, seed_name, log, known_size, first_read)
            return
        except BrokenPromiseError as error:
            self._crash("broken_promise", error, data, seed_name, log, known_size, first_read)
            return
        except Exception as error:  # the point of fuzzing: nothing but TiffError may escape
            self._crash("exception", error, data, seed_name, log, known_size, first_read)
            return
        finally:
            signal.alarm(0)
        elapsed = sum(results.seconds)  # the parse paths, not the harness's own checks
        self._account(results, elapsed, seed_name, data, log)
        grown = _peak_rss_mib() - peak_before
        if elapsed > TIME_LIMIT_S:
            self._crash("slow", None, data, seed_name, log, known_size, first_read, elapsed)
        if grown > MEMORY_LIMIT_MIB:
            self._crash("memory", None, data, seed_name, log, known_size, first_read, grown)

    def _account(
        self, results: PathResults, elapsed: float, seed: str, data: bytes, log: list[str]
    ) -> None:
        report = self.report
        for index, seconds in enumerate(results.seconds):
            report.path_seconds[index] += seconds
        whole = results.whole
        report.outcomes["header" if isinstance(whole, TiffHeader) else whole.error_class] += 1
        for outcome in (whole, results.incremental, results.small_first_read):
            if isinstance(outcome, TiffError):
                report.templates[message_template(outcome)] += 1
        report.largest_request = max(report.largest_request, results.largest_request)
        if elapsed > report.slowest.seconds:
            report.slowest = Slowest(elapsed, seed, log, list(results.seconds), data)

    def _crash(
        self,
        kind: str,
        error: BaseException | None,
        data: bytes,
        seed: str,
        log: list[str],
        known_size: bool,
        first_read: int,
        measured: float = 0.0,
    ) -> None:
        signature = _signature(kind, error)
        if error is not None:
            detail = "".join(traceback.format_exception(error))
        else:
            detail = f"{kind}: {measured:.3f} {'s' if kind == 'slow' else 'MiB'}"
        crash = Crash(kind, signature, detail, seed, log, known_size, first_read)
        if self.saved[signature] < SAVED_PER_SIGNATURE:
            self.saved[signature] += 1
            path = save_input(self.crash_dir, crash.kind, data)
            crash.saved_as = str(path)
            path.with_suffix(".json").write_text(json.dumps(asdict(crash), indent=2))
        self.report.crashes.append(crash)


def save_input(directory: Path, kind: str, data: bytes) -> Path:
    """Write an input as ``<kind>-<content hash>.tif`` for ``--replay``."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{kind}-{hashlib.sha1(data).hexdigest()[:12]}.tif"
    path.write_bytes(data)
    return path


def _run_worker(
    worker: int,
    seeds: list[Seed],
    inputs: int,
    deadline: float,
    seed: int,
    crash_dir: Path,
    progress: multiprocessing.Array,
    results: multiprocessing.Queue,
) -> None:
    results.put(_Worker(worker, seeds, seed, crash_dir).run(inputs, deadline, progress))


def fuzz(
    seeds: list[Seed],
    *,
    inputs: int,
    workers: int,
    seed: int,
    time_limit: float | None,
    crash_dir: Path,
    progress_every: float,
) -> list[WorkerReport]:
    """Run ``inputs`` inputs split over ``workers`` forked processes; one report per worker."""
    context = multiprocessing.get_context("fork")  # seeds are inherited, not pickled
    progress = context.Array("q", workers, lock=False)
    results = context.Queue()
    deadline = time.time() + time_limit if time_limit else float("inf")
    shares = [inputs // workers + (1 if i < inputs % workers else 0) for i in range(workers)]
    processes = [
        context.Process(
            target=_run_worker,
            args=(i, seeds, shares[i], deadline, seed, crash_dir, progress, results),
        )
        for i in range(workers)
    ]
    for process in processes:
        process.start()
    reports: list[WorkerReport] = []
    started = last_progress = time.perf_counter()
    while len(reports) < workers:
        try:
            reports.append(results.get(timeout=1.0))
        except queue.Empty:
            reported = {r.worker for r in reports}
            for index, process in enumerate(processes):
                if index not in reported and process.exitcode not in (None, 0):
                    reports.append(_died(index, process.exitcode, progress[index], seed))
        now = time.perf_counter()
        if progress_every and now - last_progress >= progress_every:
            last_progress = now
            done = sum(progress)
            print(
                f"[{now - started:7.0f} s] {done:>10,d} inputs, {done / (now - started):,.0f}/s",
                file=sys.stderr,
                flush=True,
            )
    for process in processes:
        process.join()
    return sorted(reports, key=lambda r: r.worker)


def _died(worker: int, exitcode: int, inputs: int, seed: int) -> WorkerReport:
    """A worker killed by a signal (segfault, OOM killer): a crash without a saved input."""
    report = WorkerReport(worker, inputs=inputs)
    detail = f"worker {worker} exited with code {exitcode} after about {inputs} inputs"
    report.crashes.append(Crash("worker_died", "worker_died", detail, f"seed {seed}", [], False, 0))
    return report


def _retime(data: bytes) -> float:
    """An input's slowest time over every driver setting, measured alone: tells a slow parse
    from a worker that was merely descheduled (the cores are shared)."""
    return max(
        sum(run_paths(data, known_size=known_size, first_read=first_read).seconds)
        for known_size in (False, True)
        for first_read in SMALL_FIRST_READS
    )


def summarize(
    reports: list[WorkerReport], *, seeds: list[Seed], wall_seconds: float, crash_dir: Path
) -> dict:
    """Every figure the report prints (and ``--json`` writes); saves the slowest input."""
    inputs = sum(r.inputs for r in reports)
    outcomes: Counter[str] = sum((r.outcomes for r in reports), Counter())
    templates: Counter[str] = sum((r.templates for r in reports), Counter())
    mutations: Counter[str] = sum((r.mutations for r in reports), Counter())
    crashes = [c for r in reports for c in r.crashes]
    slowest = max((r.slowest for r in reports), key=lambda s: s.seconds)
    slowest_file = save_input(crash_dir, "slowest", slowest.data) if slowest.data else None
    path_seconds = [sum(r.path_seconds[i] for r in reports) for i in range(3)]
    return {
        "inputs": inputs,
        "wall_seconds": round(wall_seconds, 1),
        "inputs_per_second": round(inputs / wall_seconds, 1) if wall_seconds else None,
        "workers": len(reports),
        "seeds": len(seeds),
        "seed_files": len({s.name.split("@")[0] for s in seeds}),
        "crashes": len(crashes),
        "crash_signatures": dict(Counter(c.signature for c in crashes)),
        "crash_files": [c.saved_as for c in crashes if c.saved_as],
        "slowest_input": {
            "seconds": slowest.seconds,
            "seed": slowest.seed,
            "mutations": slowest.mutations,
            "path_seconds": slowest.path_seconds,
            "saved_as": str(slowest_file) if slowest_file else None,
            "seconds_on_replay": _retime(slowest.data) if slowest.data else None,
        },
        "mean_microseconds_per_path": {
            name: round(1e6 * total / max(inputs, 1), 1)
            for name, total in zip(PATH_NAMES, path_seconds, strict=True)
        },
        "whole_buffer_outcomes": dict(outcomes.most_common()),
        "distinct_error_messages": len(templates),
        "error_messages": dict(templates.most_common()),
        "mutations": dict(mutations.most_common()),
        "largest_needbytes_range": max(r.largest_request for r in reports),
        "rss_mib_after_warmup": [round(r.rss_after_warmup_mib, 1) for r in reports],
        "rss_mib_at_end": [round(r.rss_end_mib, 1) for r in reports],
        "peak_rss_mib": [round(r.peak_rss_mib, 1) for r in reports],
        "crash_details": [asdict(c) for c in crashes[:20]],
    }


def print_summary(summary: dict, top: int) -> None:
    s = summary
    print(
        f"\ninputs tried: {s['inputs']:,} in {s['wall_seconds']:,} s "
        f"({s['inputs_per_second']:,} inputs/s) on {s['workers']} workers; "
        f"{s['seeds']} seeds from {s['seed_files']} files"
    )
    print(f"crashes: {s['crashes']}")
    for signature, count in s["crash_signatures"].items():
        print(f"  {count:>7,d}  {signature}")
    for path in s["crash_files"]:
        print(f"  reproduce: .venv/bin/python benchmarks/fuzz_header.py --replay {path}")
    slowest = s["slowest_input"]
    paths = ", ".join(
        f"{name} {1e3 * t:.1f} ms"
        for name, t in zip(PATH_NAMES, slowest["path_seconds"], strict=True)
    )
    print(
        f"slowest input: {1e3 * slowest['seconds']:.1f} ms ({paths}); "
        f"seed {slowest['seed']}, mutations {slowest['mutations']}; "
        f"{1e3 * (slowest['seconds_on_replay'] or 0):.1f} ms when re-timed alone\n"
        f"  replay: .venv/bin/python benchmarks/fuzz_header.py --replay {slowest['saved_as']}"
    )
    means = ", ".join(f"{k} {v} µs" for k, v in s["mean_microseconds_per_path"].items())
    print(f"mean time per input and path: {means}")
    total = max(s["inputs"], 1)
    outcomes = ", ".join(
        f"{k} {100 * v / total:.1f}%" for k, v in s["whole_buffer_outcomes"].items()
    )
    print(f"whole-buffer outcomes: {outcomes}")
    print(
        f"distinct error messages (numbers blanked): {s['distinct_error_messages']}; most common:"
    )
    for message, count in list(s["error_messages"].items())[:top]:
        print(f"  {count:>9,d}  {message[:110]}")
    print("mutations applied: " + ", ".join(f"{k} {v:,}" for k, v in s["mutations"].items()))
    print(f"largest range one NeedBytes asked for: {s['largest_needbytes_range']:,} bytes")
    print(
        f"RSS MiB per worker after warm-up / at end / peak: {s['rss_mib_after_warmup']} / "
        f"{s['rss_mib_at_end']} / {s['peak_rss_mib']}"
    )


def replay(paths: list[Path]) -> int:
    """Run saved inputs through every path and driver setting, printing any crash in full."""
    failures = 0
    for path in paths:
        data = path.read_bytes()
        for known_size in (False, True):
            for first_read in SMALL_FIRST_READS:
                try:
                    results = run_paths(data, known_size=known_size, first_read=first_read)
                except Exception:
                    failures += 1
                    print(f"{path} known_size={known_size} first_read={first_read}: CRASH")
                    traceback.print_exc()
                    continue
                elapsed = sum(results.seconds)
                verdict = results.whole if isinstance(results.whole, TiffError) else "header"
                slow = " SLOW" if elapsed > TIME_LIMIT_S else ""
                failures += bool(slow)
                print(
                    f"{path} known_size={known_size} first_read={first_read}: "
                    f"{verdict!r} in {1e3 * elapsed:.1f} ms{slow}"
                )
    return 1 if failures else 0


def load_seeds(fixtures: Path, *, corpus: bool, prefix_kib: int, scratch: Path) -> list[Seed]:
    files = [(str(p.relative_to(fixtures)), p) for p in sorted(fixtures.rglob("*.tif*"))]
    if corpus:
        files += [(f"gdal/{name}", path) for name, path in generate_corpus(scratch)]
    return make_seeds(files, prefix_kib)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--seed", type=int, default=0, help="random seed (reproducible runs)")
    parser.add_argument("--time-limit", type=float, help="stop after this many seconds")
    parser.add_argument("--seed-kib", type=int, default=64, help="header prefix kept per file")
    parser.add_argument("--fixtures", type=Path, default=DEFAULT_FIXTURES)
    parser.add_argument("--no-corpus", action="store_true", help="skip the GDAL-written corpus")
    parser.add_argument("--crash-dir", type=Path, default=Path("fuzz-crashes"))
    parser.add_argument("--json", type=Path, help="also write the summary as JSON here")
    parser.add_argument("--progress-every", type=float, default=30.0, help="seconds; 0 = off")
    parser.add_argument("--top", type=int, default=15, help="error messages to list")
    parser.add_argument("--replay", type=Path, nargs="+", help="re-run saved inputs and stop")
    args = parser.parse_args(argv)
    if args.replay:
        return replay(args.replay)

    with tempfile.TemporaryDirectory() as scratch:
        seeds = load_seeds(
            args.fixtures,
            corpus=not args.no_corpus,
            prefix_kib=args.seed_kib,
            scratch=Path(scratch),
        )
    if not seeds:
        parser.error(f"no TIFF seeds: {args.fixtures} has none and the corpus is off")
    started = time.perf_counter()
    reports = fuzz(
        seeds,
        inputs=args.inputs,
        workers=args.workers,
        seed=args.seed,
        time_limit=args.time_limit,
        crash_dir=args.crash_dir,
        progress_every=args.progress_every,
    )
    summary = summarize(
        reports, seeds=seeds, wall_seconds=time.perf_counter() - started, crash_dir=args.crash_dir
    )
    summary["seed"] = args.seed
    print_summary(summary, args.top)
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    return 1 if summary["crashes"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
