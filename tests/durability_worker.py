"""The writer process of the SIGKILL durability campaign: write one month, die on cue.

Run as ``python tests/durability_worker.py``; it imports pyarrow and the collection package
once, then serves commands from stdin, one JSON object a line::

    {"uri": ..., "storage_options": {...}, "version": 7, "rows": 40000, "writer": "table",
     "kill_after": 0.05, "kill_from": "start"}

For each command it forks a child that writes version ``version`` of month
:data:`TARGET_MONTH` (``write_collection`` or ``PartitionedWriter``): it replaces the month,
or creates it when the harness made it absent (a first write). It answers with one
JSON line: the child's progress events (seconds after it started writing), whether and when
it was SIGKILLed (``kill_after`` seconds after its ``kill_from`` event, ``start`` or
``commit``), and its exit status.

Why a fork server: a fresh interpreter spends about a second importing pyarrow, which would
dwarf a write of a tenth of a second; a fork is a few milliseconds. Why the parent kills:
the child cannot be reaped before ``waitpid``, so its pid is never reused by an unrelated
process between the child finishing and the kill landing.

The rows are a pure function of ``(month, version)`` (:func:`target_version`), so the test
knows exactly what the complete old and complete new month look like.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable
from functools import cache
from typing import Any

import numpy as np
import pyarrow as pa
import shapely

from rasteret_assets.collection import CollectionInfo, PartitionedWriter, write_collection
from rasteret_assets.ingest import normalize_table

YEAR = 2024
TARGET_MONTH = 3
#: Most rows a version of the replaced month has (a command may ask for fewer). Versions
#: differ in length as well as in content: see :func:`rows_of`.
TARGET_ROWS = 40_000
#: Small row groups and stream pieces: a write is many appends, so kills land between them.
ROW_GROUP_SIZE = 2_000
STREAM_BATCH_ROWS = 4_000
STREAM_FLUSH_ROWS = 6_000
VERSION_COLUMN = "version"
INFO = CollectionInfo(name="durability", data_source="synthetic")
WRITERS = ("table", "stream")

#: Progress events a child reports, in order.
STARTED, COMMITTING, DONE = "start", "commit", "done"


@cache
def base_table(month: int, rows: int) -> pa.Table:
    """Normalised records of ``month``: half-degree squares on a 1° grid, spread over the month."""
    index = np.arange(rows)
    x = (index % 360) - 180 + 0.25
    y = (index // 360) % 170 - 85 + 0.25
    footprints = shapely.box(x, y, x + 0.5, y + 0.5)
    days = (index % 28 + 1).tolist()
    hours = (index % 24).tolist()
    records = pa.table(
        {
            "id": [f"m{month}-{k}" for k in range(rows)],
            "datetime": [
                f"{YEAR}-{month:02d}-{d:02d}T{h:02d}:00:00Z"
                for d, h in zip(days, hours, strict=True)
            ],
            "geometry": shapely.to_wkb(footprints).tolist(),
            "assets": [{"B04": f"s3://bucket/{month}/{k}/B04.tif"} for k in range(rows)],
        }
    )
    return normalize_table(records)


def rows_of(version: int, rows: int) -> int:
    """Up to ``rows`` rows, 2.5 % fewer per step of ``version % 7``."""
    return rows - (version % 7) * (rows // 40)


def version_table(base: pa.Table, month: int, version: int) -> pa.Table:
    """Version ``version`` of a month's ``base`` rows: ids and a ``version`` column name it."""
    rows = base.num_rows
    ids = pa.array([f"m{month}-v{version}-{k:06d}" for k in range(rows)], pa.string())
    table = base.set_column(base.schema.get_field_index("id"), "id", ids)
    return table.append_column(VERSION_COLUMN, pa.array(np.full(rows, version, dtype=np.int64)))


def target_version(version: int, rows: int = TARGET_ROWS) -> pa.Table:
    """What the target month holds after version ``version`` was written completely."""
    if not 40 <= rows <= TARGET_ROWS:
        raise ValueError(f"rows must be between 40 and {TARGET_ROWS}, got {rows}")
    base = base_table(TARGET_MONTH, TARGET_ROWS).slice(0, rows_of(version, rows))
    return version_table(base, TARGET_MONTH, version)


def write_version(command: dict[str, Any], report: Callable[[str], None]) -> None:
    """Write version ``command["version"]`` of the target month (replacing or creating it),
    reporting progress."""
    table = target_version(command["version"], command["rows"])
    uri, options = command["uri"], command["storage_options"]

    def commit_hook(_relative: str) -> None:
        report(COMMITTING)

    report(STARTED)
    if command["writer"] == "table":
        write_collection(
            table,
            uri,
            info=INFO,
            storage_options=options,
            row_group_size=ROW_GROUP_SIZE,
            before_commit=commit_hook,
        )
    else:
        with PartitionedWriter(
            uri,
            info=INFO,
            storage_options=options,
            row_group_size=ROW_GROUP_SIZE,
            flush_rows=STREAM_FLUSH_ROWS,
            before_commit=commit_hook,
        ) as writer:
            for batch in table.to_batches(max_chunksize=STREAM_BATCH_ROWS):
                writer.write(pa.Table.from_batches([batch]))
    report(DONE)


def child_main(command: dict[str, Any], events_fd: int) -> int:
    """The forked writer: each event is one ``name monotonic-time`` line on ``events_fd``."""

    def report(event: str) -> None:
        os.write(events_fd, f"{event} {time.monotonic()}\n".encode())

    try:
        write_version(command, report)
    except BaseException:
        traceback.print_exc()
        sys.stderr.flush()
        return 1
    return 0


def run_command(command: dict[str, Any]) -> dict[str, Any]:
    """Fork a writer; SIGKILL it ``kill_after`` s after its ``kill_from`` event, if given.

    Anchoring a kill at the commit event, not at the start, lands it inside the swap and
    cleanup, a window of a millisecond or less that a delay from the start rarely hits.
    """
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        os._exit(child_main(command, write_fd))
    os.close(write_fd)
    kill_after, anchor = command.get("kill_after"), command.get("kill_from") or STARTED
    killed_at = None
    with os.fdopen(read_fd, "rb") as events:
        lines = [events.readline()]
        while lines[-1] and not lines[-1].startswith(anchor.encode()):
            lines.append(events.readline())
        if kill_after is not None and lines[-1]:
            anchored = float(lines[-1].split()[1])
            time.sleep(max(0.0, anchored + kill_after - time.monotonic()))
            killed_at = time.monotonic() - float(lines[0].split()[1])
            os.kill(pid, signal.SIGKILL)  # still our unreaped child: the pid cannot be reused
        lines += events.readlines()
    _, status = os.waitpid(pid, 0)
    stamps = [line.decode().split() for line in lines if line]
    started = float(stamps[0][1]) if stamps else 0.0
    return {
        "version": command["version"],
        "writer": command["writer"],
        "rows": command["rows"],
        "events": {name: float(at) - started for name, at in stamps},
        "killed_at": killed_at,
        "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
        "exit_code": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
    }


def serve() -> None:
    """Answer each command line on stdin with one JSON line on stdout."""
    target_version(0)  # build the shared rows once, before any fork
    print(json.dumps({"ready": os.getpid()}), flush=True)
    for line in sys.stdin:
        if line.strip():
            print(json.dumps(run_command(json.loads(line))), flush=True)


if __name__ == "__main__":
    serve()
