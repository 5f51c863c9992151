"""One Parquet file written piece by piece under a hidden name, then swapped in atomically.

Every file the Dagster steps write (a month's records, its header rows) is either the
complete new file or the old one, never a torn mix: pieces go to ``.<name>.<run>.tmp``
beside the target, and :meth:`StagedParquet.commit` swaps it in (see :class:`.store.Store`).
"""

from __future__ import annotations

import uuid
from contextlib import ExitStack
from types import TracebackType

import pyarrow as pa
import pyarrow.parquet as pq

from rasteret_assets.collection.store import STAGED_SUFFIX, Store
from rasteret_assets.contract import ContractError


class StagedParquet:
    """Context manager: :meth:`write` tables of one schema, :meth:`commit` to publish.

    Leaving the block with an error (or without a commit) discards the staged file.
    """

    def __init__(self, store: Store, name: str, *, schema: pa.Schema | None = None) -> None:
        self.store = store
        self.final = store.path(name)
        directory, _, base = self.final.rpartition("/")
        self.staged = f"{directory}/.{base}.{uuid.uuid4().hex}{STAGED_SUFFIX}"
        self.schema = schema
        self.rows = 0
        self._stack = ExitStack()
        self._writer: pq.ParquetWriter | None = None
        self._done = False

    def __enter__(self) -> StagedParquet:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if not self._done:
            self.abort()

    def write(self, table: pa.Table) -> None:
        table = table.replace_schema_metadata(None)
        if self.schema is None:
            self.schema = table.schema
        elif not table.schema.equals(self.schema):
            raise ContractError(
                f"{self.final}: a later batch has another schema ({table.schema} "
                f"instead of {self.schema})"
            )
        self._open().write_table(table)
        self.rows += table.num_rows

    def commit(self) -> str:
        """Finish the file and swap it in for the live one; returns its URI."""
        try:
            if self._writer is None:
                if self.schema is None:
                    raise ValueError(f"{self.final}: nothing written and no schema given")
                self._open()
            self._stack.close()
            self.store.swap_in(self.staged, self.final)
        except BaseException:
            self.abort()
            raise
        self._done = True
        return self.store.uri(self.final)

    def abort(self) -> None:
        """Drop the staged file; the live one (if any) stays as it was."""
        self._done = True
        try:
            self._stack.close()
        finally:
            self.store.discard(self.staged)

    def _open(self) -> pq.ParquetWriter:
        if self._writer is None:
            sink = self._stack.enter_context(self.store.open_output(self.staged))
            self._writer = self._stack.enter_context(
                pq.ParquetWriter(sink, self.schema, compression="zstd")
            )
        return self._writer
