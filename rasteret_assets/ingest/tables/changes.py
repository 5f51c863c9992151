"""Which months of a record table changed: the record-table sensor's question.

A record table is one Parquet file or a directory of them. Each file is fingerprinted by
what its store reports without reading it (the ETag where there is one, else size and
modification time), and the months its rows fall in are remembered with the fingerprint.
A changed file affects its old months (rows may have left them) and its new months; a
removed file its old months; an added file its months. Only changed files are read, and
only their ``id``/``datetime``/``start_datetime`` columns.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from rasteret_assets.collection.store import is_hidden
from rasteret_assets.contract import DATETIME, ID
from rasteret_assets.ingest.normalize.table import START_DATETIME, acquisition_times, record_ids
from rasteret_assets.ingest.tables.scan import ColumnAliases


@dataclass(frozen=True)
class FileState:
    """A file's fingerprint and the months (``YYYY-MM-01``) of its rows."""

    stamp: str
    months: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"stamp": self.stamp, "months": list(self.months)}

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> FileState:
        return cls(str(value["stamp"]), tuple(value["months"]))


@dataclass
class TableChanges:
    """The table's current state and the months that differ from the previous one."""

    files: dict[str, FileState]
    months: set[str] = field(default_factory=set)
    changed_files: list[str] = field(default_factory=list)


def table_changes(
    path: str,
    previous: Mapping[str, FileState],
    *,
    filesystem: fsspec.AbstractFileSystem | None = None,
    column_map: Mapping[str, str] | None = None,
) -> TableChanges:
    """Compare the table at ``path`` with ``previous`` (``{file: state}``, empty at first)."""
    fs = filesystem or fsspec.core.url_to_fs(path)[0]
    aliases = ColumnAliases(column_map)
    current = file_stamps(fs, path)
    changes = TableChanges(files={})
    for name, stamp in current.items():
        before = previous.get(name)
        if before is not None and before.stamp == stamp:
            changes.files[name] = before
            continue
        months = file_months(fs, name, aliases)
        changes.files[name] = FileState(stamp, months)
        changes.months.update(months)
        changes.changed_files.append(name)
        if before is not None:
            changes.months.update(before.months)
    for name in previous.keys() - current.keys():
        changes.months.update(previous[name].months)
        changes.changed_files.append(name)
    return changes


def file_stamps(fs: fsspec.AbstractFileSystem, path: str) -> dict[str, str]:
    """``{file: fingerprint}`` of the table's data files (hidden/underscore files skipped)."""
    root = fs._strip_protocol(path)
    fs.invalidate_cache(root)
    if fs.isdir(root):
        entries = fs.find(root, detail=True).values()
        entries = [e for e in entries if not any(is_hidden(p) for p in _relative(e, root))]
    else:
        entries = [fs.info(root)]
    return {entry["name"]: _stamp(entry) for entry in entries if entry.get("type") == "file"}


def file_months(
    fs: fsspec.AbstractFileSystem, name: str, aliases: ColumnAliases
) -> tuple[str, ...]:
    """The distinct months its rows were acquired in, by the normaliser's datetime rules."""
    wanted = {c: aliases.source_of(c) for c in (ID, DATETIME, START_DATETIME)}
    with fs.open(name, "rb") as handle:
        parquet = pq.ParquetFile(handle)  # one footer read serves the schema and the columns
        present = {c: s for c, s in wanted.items() if s in parquet.schema_arrow.names}
        table = parquet.read(columns=list(dict.fromkeys(present.values())))
    if table.num_rows == 0:
        return ()
    columns = {c: table.column(s).combine_chunks() for c, s in present.items()}
    ids = record_ids(columns[ID]) if ID in columns else pa.array(range(table.num_rows)).cast("str")
    when = acquisition_times(columns, ids)
    keys = pc.strftime(when, format="%Y-%m-01")
    return tuple(np.unique(keys.to_numpy(zero_copy_only=False)).tolist())


def _relative(entry: Mapping[str, Any], root: str) -> list[str]:
    return entry["name"][len(root) :].strip("/").split("/")


def _stamp(entry: Mapping[str, Any]) -> str:
    etag = entry.get("ETag") or entry.get("etag")
    if etag:
        return "etag:" + str(etag).strip('"')
    modified = entry.get("mtime") or entry.get("LastModified") or entry.get("last_modified")
    return f"size:{entry.get('size')}/mtime:{modified}"
