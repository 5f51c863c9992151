"""SIGKILL a month's writer at random moments and prove the collection never tears.

A campaign sets up a collection of three months, then repeatedly asks the fork server of
``durability_worker.py`` to replace the target month with a new version and SIGKILLs the
writer after a seeded random delay. After every kill the collection is opened with the
normal reader (:meth:`Collection.open`) and must hold, for the target month, exactly the
complete previous version or exactly the complete new one, and the other months byte for
byte as they were. Staged files left by a kill are tolerated only while they stay hidden
from the reader and only until the next write that runs to the end, which must remove them.

A *first-write* campaign kills the write that creates the month instead: the collection
starts with the other two months only, and before every write the harness deletes the
target month's data file (and, locally, its directory once empty), so "old" is the month
being absent: zero rows and no visible file. Hidden staged files of an earlier killed write
are kept, so the next first write starts beside them and must remove them, as a retry after
a crash would.

Kill moments come from the write's own measured timing (a few uninterrupted calibration
writes): half are uniform over the whole write, half fall between the writer's commit event
and its end (swap, then cleanup), the narrowest and most dangerous window. Any breach raises
:class:`DurabilityError`.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from durability_worker import (
    COMMITTING,
    DONE,
    INFO,
    STARTED,
    TARGET_MONTH,
    TARGET_ROWS,
    VERSION_COLUMN,
    WRITERS,
    YEAR,
    base_table,
    target_version,
    version_table,
)
from fsspec.implementations.local import LocalFileSystem

from rasteret_assets.collection import Collection, write_collection
from rasteret_assets.collection.store import resolve_filesystem

WORKER = Path(__file__).with_name("durability_worker.py")
OTHER_MONTHS = {1: 400, 2: 400}
COMPARED = ["id", "datetime", "geometry", "bbox", VERSION_COLUMN]
DATA_FILES = {f"year={YEAR}/month={m}/part-0.parquet" for m in (*OTHER_MONTHS, TARGET_MONTH)}
TARGET_FILE = f"year={YEAR}/month={TARGET_MONTH}/part-0.parquet"
STAGED = re.compile(rf"year={YEAR}/month={TARGET_MONTH}/\.part-0\.parquet\.[0-9a-f]{{32}}\.tmp")
CALIBRATION_WRITES = 2
#: Where a kill landed, from the last progress event the writer reported before dying.
PHASES = {None: "staging", COMMITTING: "committing", DONE: "finished"}


class DurabilityError(AssertionError):
    """A kill left the collection unreadable, torn, mixed, or with debris that was not cleaned."""


@dataclass(frozen=True)
class Target:
    """Where the collection lives: a local directory or an ``s3://`` prefix."""

    name: str
    uri: str
    storage_options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Timing:
    """Median seconds from the start of an uninterrupted write to its commit and its end."""

    commit: float
    done: float


@dataclass
class CampaignReport:
    """What a campaign did: kills, what survived, and where the kills landed."""

    target: str
    #: ``"replace"``: each write replaces a live month; ``"first write"``: it creates it.
    mode: str = "replace"
    kills: int = 0
    #: Kills that landed before the write finished (the rest hit a writer already done).
    killed: int = 0
    #: ``(phase, "old" | "absent" | "new")`` → count, over every write with a kill scheduled.
    outcomes: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: Kill time as a fraction of the calibrated write duration, in tenths (10 = after it).
    kill_points: Counter[int] = field(default_factory=Counter)
    timings: dict[str, Timing] = field(default_factory=dict)
    debris_seen: int = 0
    debris_cleaned: int = 0
    #: First writes into a month with no file at all, and beside a killed write's staged files.
    first_writes_fresh: int = 0
    first_writes_beside_debris: int = 0
    seconds: float = 0.0
    _debris: set[str] = field(default_factory=set, repr=False)

    def note_debris(self, debris: set[str]) -> None:
        """Count staged files that appeared and those a later write removed."""
        self.debris_seen += len(debris - self._debris)
        self.debris_cleaned += len(self._debris - debris)
        self._debris = debris

    def count(self, *, phase: str | None = None, outcome: str | None = None) -> int:
        return sum(
            n for (p, o), n in self.outcomes.items() if phase in (None, p) and outcome in (None, o)
        )

    def summary(self) -> str:
        timing = ", ".join(
            f"{w}: commit {t.commit * 1e3:.0f} ms, done {t.done * 1e3:.0f} ms"
            for w, t in self.timings.items()
        )
        outcomes = ", ".join(f"{p}/{o} {n}" for (p, o), n in sorted(self.outcomes.items()))
        deciles = " ".join(f"{self.kill_points.get(d, 0)}" for d in range(11))
        before = "absent" if self.mode == "first write" else "old"
        lines = [
            f"[{self.target}, {self.mode}] {self.kills} kills scheduled, {self.killed} "
            f"SIGKILLed mid-write, all {self.kills} survived ({before} "
            f"{self.count(outcome=before)}, new {self.count(outcome='new')}) "
            f"in {self.seconds:.1f} s",
            f"  write timing: {timing}",
            f"  phase/outcome: {outcomes}",
            f"  kill point by tenth of write duration (0..9, then after): {deciles}",
            f"  staged debris seen after kills: {self.debris_seen}, "
            f"removed by a later write: {self.debris_cleaned}",
        ]
        if self.mode == "first write":
            lines.append(
                f"  first writes into a month with no file: {self.first_writes_fresh}, "
                f"beside staged debris: {self.first_writes_beside_debris}"
            )
        return "\n".join(lines)


class WriterServer:
    """The worker process: one JSON command in, one JSON result out."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(WORKER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        ready = self._read()
        if "ready" not in ready:
            raise RuntimeError(f"durability worker did not start: {ready}")

    def _read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"durability worker exited with {self.process.wait()}")
        return json.loads(line)

    def write(
        self,
        target: Target,
        version: int,
        rows: int,
        writer: str,
        kill: tuple[str, float] | None = None,
    ) -> dict[str, Any]:
        """Write ``version``; ``kill`` is ``(event, seconds)``: SIGKILL that long after it."""
        assert self.process.stdin is not None
        command = {
            "uri": target.uri,
            "storage_options": dict(target.storage_options),
            "version": version,
            "rows": rows,
            "writer": writer,
            "kill_from": kill[0] if kill else None,
            "kill_after": kill[1] if kill else None,
        }
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        result = self._read()
        if result["exit_code"] not in (None, 0):
            raise RuntimeError(f"writer of version {version} failed (traceback on stderr)")
        return result

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise


@contextmanager
def writer_server() -> Iterator[WriterServer]:
    server = WriterServer()
    try:
        yield server
    finally:
        server.close()


def run_campaign(
    target: Target,
    *,
    kills: int,
    seed: int,
    rows: int = TARGET_ROWS,
    first_write: bool = False,
) -> CampaignReport:
    """Set up ``target``, calibrate, then ``kills`` killed writes, each followed by a check.

    ``first_write``: every write (calibration ones too) creates the target month instead of
    replacing it; see the module docstring.
    """
    started = time.perf_counter()
    rng = random.Random(seed)
    campaign = Campaign(target, rows, first_write=first_write)
    report = campaign.report

    def write(writer: str, kill: tuple[str, float] | None = None) -> dict[str, Any]:
        if first_write:
            campaign.make_target_absent()
        result = server.write(target, campaign.next_version(), rows, writer, kill)
        campaign.check(result)
        return result

    with writer_server() as server:
        samples: dict[str, list[dict[str, float]]] = {w: [] for w in WRITERS}
        for _ in range(CALIBRATION_WRITES):
            for writer in WRITERS:
                samples[writer].append(write(writer)["events"])
        report.timings = {w: _median_timing(s) for w, s in samples.items()}
        for index in range(kills):
            writer = WRITERS[index % len(WRITERS)]
            timing = report.timings[writer]
            result = write(writer, _kill_plan(rng, timing))
            report.kills += 1
            report.killed += result["signal"] is not None and DONE not in result["events"]
            report.kill_points[min(10, int(result["killed_at"] / timing.done * 10))] += 1
        write(WRITERS[0])
    report.seconds = time.perf_counter() - started
    return report


def _median_timing(samples: list[dict[str, float]]) -> Timing:
    return Timing(
        commit=statistics.median(s[COMMITTING] for s in samples),
        done=statistics.median(s[DONE] for s in samples),
    )


def _kill_plan(rng: random.Random, timing: Timing) -> tuple[str, float]:
    """``(anchor event, delay)``: half over the whole write, half inside swap and cleanup."""
    if rng.random() < 0.5:
        return STARTED, rng.uniform(0.0, timing.done * 1.1)
    return COMMITTING, rng.uniform(0.0, timing.done - timing.commit)


class Campaign:
    """A collection under test and what it must hold: the oracle every write is checked by."""

    def __init__(self, target: Target, rows: int, *, first_write: bool = False) -> None:
        """Write the other months and, unless ``first_write``, version 0 of the target month
        (``rows`` rows at most)."""
        self.target = target
        self.rows = rows
        self.last_version = 0
        #: The complete version the target month holds; ``None`` while it is absent.
        self.live_version: int | None = None if first_write else 0
        mode = "first write" if first_write else "replace"
        self.report = CampaignReport(target=target.name, mode=mode)
        others = pa.concat_tables(
            version_table(base_table(month, n), month, 0) for month, n in OTHER_MONTHS.items()
        )
        initial = [others] if first_write else [others, target_version(0, rows)]
        write_collection(
            pa.concat_tables(initial),
            target.uri,
            info=INFO,
            storage_options=target.storage_options,
        )
        self.others = others.select(COMPARED).sort_by("id")
        # One client for every listing: creating an S3 client costs more than the listing.
        self._fs, self._root = resolve_filesystem(
            target.uri, storage_options=target.storage_options
        )
        self.fingerprint = self._other_month_digests()

    def next_version(self) -> int:
        """A version never written before, so old and new are always told apart."""
        self.last_version += 1
        return self.last_version

    def make_target_absent(self) -> None:
        """Delete the target month's data file, keeping hidden staged files of killed writes.

        Locally the month's directory goes too once nothing is left in it, so a first write
        after a clean state also has to create the directory.
        """
        files = self._files()
        if TARGET_FILE in files:
            self._fs.rm(files[TARGET_FILE])
        if any(STAGED.fullmatch(relative) for relative in files):
            self.report.first_writes_beside_debris += 1
        else:
            self.report.first_writes_fresh += 1
            month_dir = f"{self._root}/year={YEAR}/month={TARGET_MONTH}"
            if isinstance(self._fs, LocalFileSystem) and self._fs.exists(month_dir):
                self._fs.rmdir(month_dir)
        self.live_version = None

    def check(self, result: dict[str, Any]) -> None:
        """Verify the collection after one (possibly killed) write of ``result["version"]``."""
        events = result["events"]
        phase = PHASES[DONE if DONE in events else COMMITTING if COMMITTING in events else None]
        context = (
            f"[{self.target.name}] writing version {result['version']} with "
            f"{result['writer']!r}, killed at {result['killed_at']} s in phase {phase!r} "
            f"(events {events})"
        )
        if result["signal"] is None and phase != "finished":
            raise DurabilityError(f"{context}: the writer exited without finishing")
        try:
            collection = Collection.open(
                self.target.uri, storage_options=self.target.storage_options
            )
            month = _month(collection, TARGET_MONTH)
            other = _month(collection, *OTHER_MONTHS)
        except Exception as error:
            raise DurabilityError(f"{context}: the collection does not open: {error!r}") from error
        if not other.equals(self.others) or self._other_month_digests() != self.fingerprint:
            raise DurabilityError(f"{context}: another month changed")
        outcome = self._outcome(month, result["version"], context)
        if phase == "staging" and outcome == "new":
            raise DurabilityError(f"{context}: the new version is live before its commit")
        if phase == "finished" and outcome != "new":
            raise DurabilityError(f"{context}: a finished write is not live")
        debris = self._debris(context, target_live=outcome != "absent")
        if phase == "finished" and debris:
            raise DurabilityError(f"{context}: a finished write left staged files {debris}")
        if result["killed_at"] is not None:
            self.report.outcomes[phase, outcome] += 1
        self.report.note_debris(debris)
        if outcome == "new":
            self.live_version = result["version"]

    def _outcome(self, month: pa.Table, new: int, context: str) -> str:
        """``"old"``, ``"absent"`` (no rows where the month was absent) or ``"new"`` when
        ``month`` is exactly that; else a violation."""
        old = self.live_version
        if old is None and month.num_rows == 0:
            return "absent"
        candidates = [("new", new)] if old is None else [("old", old), ("new", new)]
        for name, version in candidates:
            expected = target_version(version, self.rows).select(COMPARED).sort_by("id")
            if month.equals(expected):
                return name
        versions = pc.value_counts(month.column(VERSION_COLUMN)).to_pylist()
        duplicates = month.num_rows - len(pc.unique(month.column("id")))
        before = "absent" if old is None else f"complete version {old}"
        raise DurabilityError(
            f"{context}: month {TARGET_MONTH} is neither {before} nor complete version {new}: "
            f"{month.num_rows} rows, versions {versions}, {duplicates} duplicate ids"
        )

    def _files(self) -> dict[str, str]:
        """Every object under the collection (hidden ones too): relative path → full path."""
        self._fs.invalidate_cache()
        return {path[len(self._root) :].lstrip("/"): path for path in self._fs.find(self._root)}

    def _other_month_digests(self) -> dict[str, str]:
        return {
            relative: hashlib.sha256(self._fs.cat_file(path)).hexdigest()
            for relative, path in self._files().items()
            if relative in DATA_FILES and f"month={TARGET_MONTH}/" not in relative
        }

    def _debris(self, context: str, *, target_live: bool) -> set[str]:
        """Staged files left behind; any other unexpected file, or a missing one, is a violation.

        While the target month is absent its data file is unexpected: a visible file there,
        even one the reader skipped or could not see rows in, is a partial month.
        """
        files = set(self._files())
        expected = DATA_FILES if target_live else DATA_FILES - {TARGET_FILE}
        missing = expected - files
        if missing:
            raise DurabilityError(f"{context}: data files missing: {sorted(missing)}")
        unexpected = sorted(p for p in files - expected if not STAGED.fullmatch(p))
        if unexpected:
            raise DurabilityError(f"{context}: unexpected files {unexpected}")
        return files - expected


def _month(collection: Collection, *months: int) -> pa.Table:
    expression = (ds.field("year") == YEAR) & ds.field("month").isin(list(months))
    return collection.filter(expression=expression).to_table(columns=COMPARED).sort_by("id")
