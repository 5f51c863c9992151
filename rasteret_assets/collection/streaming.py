"""Write a stream of normalised tables as hive partitions without holding the stream.

:func:`~.writer.write_collection` needs the whole table; a record table of millions of rows
arrives in record batches instead, and the rows of one month can be spread over all of them.
:class:`PartitionedWriter` routes each batch's rows to their partition, buffers a bounded
amount per partition, and appends full buffers to that partition's staged file
(:class:`~.partition_file.PartitionFile`). Only when the ``with`` block ends without an error
are the staged files swapped in, one atomic replacement per partition, exactly like
``write_collection``; on an error every staged file is discarded and the live collection is
untouched. Memory is bounded by ``buffer_bytes`` plus one incoming batch, however long the
stream is.

Rows are Z-ordered by bbox centre within each flushed buffer (``flush_rows`` rows), not across
the whole partition: each buffer becomes a run of spatially compact row groups, which is what
row-group ``bbox`` statistics need. A partition that fits in one buffer is ordered exactly as
``write_collection`` orders it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rasteret_assets.collection.info import CollectionInfo
from rasteret_assets.collection.partition_file import PartitionFile
from rasteret_assets.collection.store import Store, resolve_filesystem
from rasteret_assets.collection.writer import (
    DEFAULT_ROW_GROUP_SIZE,
    check_layout,
    spatially_sorted,
    validate_partition_columns,
)
from rasteret_assets.contract import PARTITION_COLUMNS, ContractError

DEFAULT_FLUSH_ROWS = 8 * DEFAULT_ROW_GROUP_SIZE
DEFAULT_BUFFER_BYTES = 256 * 1024 * 1024


@dataclass
class _Buffer:
    tables: list[pa.Table] = field(default_factory=list)
    rows: int = 0
    nbytes: int = 0

    def add(self, table: pa.Table) -> None:
        self.tables.append(table)
        self.rows += table.num_rows
        self.nbytes += table.nbytes

    def take(self) -> pa.Table:
        table = pa.concat_tables(self.tables)
        self.tables, self.rows, self.nbytes = [], 0, 0
        return table


class PartitionedWriter:
    """Context manager: ``write()`` normalised tables; partitions swap in when the block ends.

    ``flush_rows`` is how many rows of one partition are buffered (and Z-ordered together)
    before they are appended to its staged file; ``buffer_bytes`` caps the buffers of all
    partitions together (the largest is flushed first). ``before_commit`` is called with each
    partition's relative path after its file is complete and before it replaces the live one.
    After the block, :attr:`committed` lists the URIs of the files swapped in.
    """

    def __init__(
        self,
        uri: str | Path,
        *,
        info: CollectionInfo | None = None,
        partition_cols: Sequence[str] = PARTITION_COLUMNS,
        filesystem: fsspec.AbstractFileSystem | None = None,
        storage_options: Mapping[str, Any] | None = None,
        row_group_size: int = DEFAULT_ROW_GROUP_SIZE,
        flush_rows: int = DEFAULT_FLUSH_ROWS,
        buffer_bytes: int = DEFAULT_BUFFER_BYTES,
        before_commit: Callable[[str], None] | None = None,
    ) -> None:
        if row_group_size < 1 or flush_rows < 1 or buffer_bytes < 1:
            raise ValueError("row_group_size, flush_rows and buffer_bytes must be at least 1")
        self.store = Store(*resolve_filesystem(uri, filesystem, storage_options))
        self.partition_cols = list(partition_cols)
        self.info = info or CollectionInfo()
        self.row_group_size = row_group_size
        self.flush_rows = flush_rows
        self.buffer_bytes = buffer_bytes
        self.before_commit = before_commit
        self.committed: list[str] = []
        self.rows_written = 0
        self._run = uuid.uuid4().hex
        self._partition_schema: pa.Schema | None = None
        self._buffers: dict[str, _Buffer] = {}
        self._files: dict[str, PartitionFile] = {}
        self._entered = False

    # -- context manager

    def __enter__(self) -> PartitionedWriter:
        check_layout(self.store, self.partition_cols)
        self._entered = True
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._entered = False
        if exc_type is not None:
            self.abort()
            return
        self.commit()

    # -- writing

    @property
    def buffered_bytes(self) -> int:
        return sum(b.nbytes for b in self._buffers.values())

    @property
    def partitions(self) -> list[str]:
        """Relative paths of the partitions written so far."""
        return sorted(set(self._files) | set(self._buffers))

    def write(self, table: pa.Table) -> None:
        """Route ``table``'s rows to their partitions (partition columns required, non-null)."""
        if not self._entered:
            raise RuntimeError("use PartitionedWriter as a context manager: with ... as writer")
        if table.num_rows == 0:
            return
        schema = validate_partition_columns(table, self.partition_cols)
        if self._partition_schema is None:
            self._partition_schema = schema
            self.info = replace(
                self.info,
                created=datetime.now(UTC).isoformat(),
                partitioning=tuple((f.name, str(f.type)) for f in schema),
            )
        elif not schema.equals(self._partition_schema):
            raise ContractError(
                f"partition columns changed type: {self._partition_schema} then {schema}"
            )
        for relative, rows in partition_groups(table, self.partition_cols):
            buffer = self._buffers.setdefault(relative, _Buffer())
            buffer.add(rows)
            if buffer.rows >= self.flush_rows:
                self._flush(relative)
        while self._buffers and self.buffered_bytes > self.buffer_bytes:
            largest = max(self._buffers, key=lambda r: self._buffers[r].nbytes)
            self._flush(largest)

    def _flush(self, relative: str) -> None:
        buffer = self._buffers.get(relative)
        if buffer is None or buffer.rows == 0:
            return
        rows = spatially_sorted(buffer.take())
        partition = self._files.get(relative)
        if partition is None:
            partition = self._files[relative] = PartitionFile(
                self.store,
                relative,
                info=self.info,
                run_id=self._run,
                row_group_size=self.row_group_size,
            )
        partition.write(rows)
        self.rows_written += rows.num_rows

    # -- ending

    def commit(self) -> list[str]:
        """Flush every buffer, then swap each partition in (each atomic on its own)."""
        try:
            for relative in sorted(self._buffers):
                self._flush(relative)
            self._buffers.clear()
            for partition in self._files.values():
                partition.close()
        except BaseException:
            self.abort()
            raise
        pending = [self._files[r] for r in sorted(self._files)]
        for index, partition in enumerate(pending):
            try:
                self.committed.append(partition.commit(self.before_commit))
            except BaseException:
                for later in pending[index + 1 :]:
                    later.abort()
                raise
        self._files.clear()
        return self.committed

    def abort(self) -> None:
        """Discard every staged file; partitions already swapped in stay."""
        self._buffers.clear()
        errors: list[BaseException] = []
        for partition in self._files.values():
            try:
                partition.abort()
            except Exception as error:  # keep discarding the others, report the first
                errors.append(error)
        self._files.clear()
        if errors:
            raise errors[0]


def partition_groups(
    table: pa.Table, partition_cols: Sequence[str]
) -> Iterator[tuple[str, pa.Table]]:
    """``(relative dir, rows minus partition columns)`` per partition present in ``table``.

    One sort by the partition keys and a ``take`` per run of equal keys: linear in the rows
    whatever the number of partitions (a filter per partition would scan the table once per
    partition). Each group is a copy, so a buffered group never pins the whole input batch
    in memory. Rows keep their input order inside a partition.
    """
    cols = list(partition_cols)
    if not cols:
        yield "", table
        return
    order = pc.sort_indices(table.select(cols), [(c, "ascending") for c in cols])
    keys = table.select(cols).take(order)
    n = keys.num_rows
    starts_run = np.zeros(n, dtype=bool)
    starts_run[0] = True
    for name in cols:
        values = keys.column(name).combine_chunks()
        changed = pc.not_equal(values.slice(1), values.slice(0, n - 1))
        starts_run[1:] |= changed.to_numpy(zero_copy_only=False)
    starts = np.flatnonzero(starts_run)
    ends = np.append(starts[1:], n)
    for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
        key = keys.slice(start, 1).to_pylist()[0]
        relative = "/".join(f"{c}={quote(str(key[c]), safe='')}" for c in cols)
        yield relative, table.take(order.slice(start, end - start)).drop_columns(cols)
