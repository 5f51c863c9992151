"""One partition's data file: staged beside the live file, written in pieces, swapped in.

Both writers use it: :func:`~.writer.write_collection` writes a whole partition in one
piece, :class:`~.streaming.PartitionedWriter` in many as rows stream in. Either way the live
file is replaced only by :meth:`PartitionFile.commit`, after the staged file is complete
(see :mod:`.store` for why that swap is atomic locally and on S3).

The footer metadata (``geo``, the collection info, and the same info under the keys rasteret
0.4.1 reads, see :mod:`.reference_footer`) describes the whole file, so it is
written when the file is closed, not when it is opened: the bbox and geometry types of a
streamed partition are only known once its last rows are in.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from contextlib import ExitStack
from typing import BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

from rasteret_assets.collection.geoparquet import GEO_KEY, GeoStats, encode
from rasteret_assets.collection.info import METADATA_KEY, CollectionInfo
from rasteret_assets.collection.reference_footer import reference_footer
from rasteret_assets.collection.store import STAGED_SUFFIX, Store
from rasteret_assets.contract import ContractError

DATA_FILE = "part-0.parquet"

#: The Arrow schema Parquet files carry for Arrow readers (base64 of the IPC schema message).
ARROW_SCHEMA_KEY = b"ARROW:schema"


class PartitionFile:
    """Stage ``<relative>/part-0.parquet`` piece by piece, then :meth:`commit` or :meth:`abort`.

    Every piece must have the schema of the first (partition files have one schema); the
    staged file is hidden (``.`` prefix, ``.tmp`` suffix) until it is swapped in.
    """

    def __init__(
        self,
        store: Store,
        relative: str,
        *,
        info: CollectionInfo,
        run_id: str,
        row_group_size: int,
    ) -> None:
        if row_group_size < 1:
            raise ValueError("row_group_size must be at least 1")
        self.store = store
        self.relative = relative
        self.info = info
        self.row_group_size = row_group_size
        self.final = store.path(f"{relative}/{DATA_FILE}" if relative else DATA_FILE)
        self.staged = f"{self.final.rsplit('/', 1)[0]}/.{DATA_FILE}.{run_id}{STAGED_SUFFIX}"
        self.rows = 0
        self.schema: pa.Schema | None = None
        self._geo = GeoStats()
        self._stack = ExitStack()
        self._writer: pq.ParquetWriter | None = None
        self._closed = False

    def write(self, table: pa.Table) -> None:
        """Append ``table``'s rows (already in the order they should be stored)."""
        if self._closed:
            raise RuntimeError(f"partition {self.relative!r} is already closed")
        table = table.replace_schema_metadata(None)
        if self._writer is None:
            sink: BinaryIO = self._stack.enter_context(self.store.open_output(self.staged))
            self.schema = table.schema
            self._writer = pq.ParquetWriter(
                sink,
                self.schema,
                compression="zstd",
                write_statistics=True,
                write_page_index=True,
            )
        elif not table.schema.equals(self.schema):
            raise ContractError(_schema_difference(self.relative, self.schema, table.schema))
        self._writer.write_table(table, row_group_size=self.row_group_size)
        self._geo.update(table)
        self.rows += table.num_rows

    def close(self) -> None:
        """Finish the staged file: footer metadata, then flush (and ``fsync`` locally)."""
        if self._closed:
            return
        if self._writer is None or self.schema is None:
            raise ValueError(f"partition {self.relative!r} has no rows; nothing to commit")
        metadata = {
            GEO_KEY: encode(self._geo.metadata()),
            METADATA_KEY: self.info.to_json(),
            **reference_footer(self.info),
        }
        # pyarrow takes schema metadata from the embedded Arrow schema, not from the footer's
        # key-value list, and that schema was stored when the file was opened — before the
        # bbox was known. Storing the final schema under the same key keeps both in step.
        final_schema = self.schema.with_metadata(metadata)
        arrow_schema = base64.b64encode(final_schema.serialize().to_pybytes())
        footer = {key.decode(): value.decode() for key, value in metadata.items()}
        footer[ARROW_SCHEMA_KEY.decode()] = arrow_schema.decode()
        self._writer.add_key_value_metadata(footer)
        self._writer.close()
        self._closed = True
        self._stack.close()

    def commit(self, before_commit: Callable[[str], None] | None = None) -> str:
        """Close, swap the staged file in for the live one, drop stale files; returns its URI.

        ``before_commit`` (a callable taking the relative path) runs after the file is
        complete and before it replaces the live one — the worst moment to crash.
        """
        try:
            self.close()
            if before_commit is not None:
                before_commit(self.relative)
            self.store.swap_in(self.staged, self.final)
        except BaseException:
            self.abort()
            raise
        self.store.remove_others(self.final)
        return self.store.uri(self.final)

    def abort(self) -> None:
        """Drop the staged file; the live partition (if any) stays exactly as it was."""
        try:
            if self._writer is not None and not self._closed:
                self._writer.close()
        finally:
            self._closed = True
            self._stack.close()
            self.store.discard(self.staged)


def _schema_difference(relative: str, expected: pa.Schema, got: pa.Schema) -> str:
    """Name the first column that differs, so a caller knows which normaliser to fix."""
    for field in expected:
        index = got.get_field_index(field.name)
        if index < 0:
            return f"partition {relative!r}: later rows lack column {field.name!r}"
        if not got.field(index).type.equals(field.type):
            return (
                f"partition {relative!r}: column {field.name!r} changed type from "
                f"{field.type} to {got.field(index).type} between pieces"
            )
    extra = [name for name in got.names if name not in expected.names]
    if extra:
        return f"partition {relative!r}: later rows add column(s) {extra}"
    return f"partition {relative!r}: columns are in a different order between pieces"
