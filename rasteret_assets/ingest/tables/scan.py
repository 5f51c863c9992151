"""Reading a Parquet record table: where it is, which columns, which rows, in record batches.

* ``filesystem``: a pyarrow file system (``pyarrow.fs.S3FileSystem(...)`` …) or an fsspec
  one, used as given; ``path`` may then be a URI (its scheme is dropped) or a plain path.
* Without one, ``s3://…`` (and other fsspec URLs) are opened through fsspec — s3fs for S3,
  with the default AWS credential chain and ``AWS_ENDPOINT_URL`` — and local paths directly.
* ``columns`` and ``filter_expr`` go to the scanner: only those columns are decoded and row
  groups whose statistics exclude the filter are never read. ``filter_expr`` may use columns
  outside ``columns``. Both name the *source* columns, before ``column_map`` aliases.
* The table is read one row group at a time (see :meth:`RecordSource.batches`), so the
  reader holds one decoded row group, never the file.

``column_map`` (``{source name: contract name}``) is applied as aliases, as in rasteret: the
source column stays and a column of the contract name is added, sharing its buffers.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs

from rasteret_assets.contract import ContractError
from rasteret_assets.storage import redact_url

#: Batches decoded ahead of the consumer within one row group (pyarrow's default is 16).
BATCH_READAHEAD = 1


class ColumnAliases:
    """``column_map`` checked once and applied to every batch the same way."""

    def __init__(self, column_map: Mapping[str, str] | None) -> None:
        mapping = dict(column_map or {})
        for source, target in mapping.items():
            if (
                not isinstance(source, str)
                or not isinstance(target, str)
                or not source
                or not target
            ):
                raise ValueError(
                    f"column_map entry {source!r}: {target!r} must map a non-empty source "
                    "column name to a non-empty target name"
                )
        targets = list(mapping.values())
        repeated = sorted({t for t in targets if targets.count(t) > 1})
        if repeated:
            raise ValueError(f"column_map maps several columns onto {repeated}")
        self.mapping = mapping

    def check(self, names: Sequence[str]) -> None:
        """Every source present, no target already taken (an alias must not shadow data)."""
        missing = [s for s in self.mapping if s not in names]
        if missing:
            raise ContractError(
                f"column_map names column(s) {missing} that the table (after `columns`) does "
                f"not have; columns: {list(names)}",
                column=missing[0],
            )
        clashing = [t for t in self.mapping.values() if t in names]
        if clashing:
            raise ContractError(
                f"column_map would alias onto column(s) {clashing} that the table already has; "
                "drop those entries or project the existing columns away with `columns`",
                column=clashing[0],
            )

    def source_of(self, name: str) -> str:
        """The source column that becomes ``name`` (``name`` itself when not aliased)."""
        for source, target in self.mapping.items():
            if target == name:
                return source
        return name

    def apply(self, table: pa.Table) -> pa.Table:
        for source, target in self.mapping.items():
            if source in table.column_names and target not in table.column_names:
                table = table.append_column(target, table.column(source))
        return table


class RecordSource:
    """The record table as a pyarrow dataset with the caller's projection and filter."""

    def __init__(
        self,
        path: str | Path,
        *,
        filesystem: Any | None = None,
        columns: Sequence[str] | None = None,
        filter_expr: ds.Expression | None = None,
    ) -> None:
        if filter_expr is not None and not isinstance(filter_expr, ds.Expression):
            kind = type(filter_expr).__name__
            raise TypeError(f"filter_expr must be a pyarrow.dataset.Expression, got {kind}")
        self.path = str(path)
        self.filter = filter_expr
        arrow_fs, location = resolve_source(path, filesystem)
        self.dataset = ds.dataset(
            location, filesystem=arrow_fs, format="parquet", partitioning="hive"
        )
        available = self.dataset.schema.names
        if columns is not None:
            columns = list(columns)
            unknown = [c for c in columns if c not in available]
            if unknown:
                raise ContractError(
                    f"columns {unknown} are not in the record table {self.display_path}; "
                    f"available: {available}",
                    column=unknown[0],
                )
        self.names: list[str] = columns if columns is not None else list(available)
        #: Row groups actually read (after statistics pruning), over all scans.
        self.row_groups_read = 0
        self.schema = pa.schema([self.dataset.schema.field(n) for n in self.names])
        if filter_expr is not None:
            try:  # binding the expression to the schema checks names and types, reads nothing
                self.dataset.scanner(columns=self.names[:1], filter=filter_expr)
            except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
                first_line = str(exc).splitlines()[0]
                raise ContractError(
                    f"filter_expr {filter_expr} does not fit the record table "
                    f"{self.display_path}: {first_line}"
                ) from exc

    @property
    def display_path(self) -> str:
        return redact_url(self.path)

    def batches(
        self,
        batch_size: int,
        *,
        columns: Sequence[str] | None = None,
        extra_filter: ds.Expression | None = None,
    ) -> Iterator[pa.RecordBatch]:
        """Record batches of at most ``batch_size`` rows, projected and filtered.

        ``columns`` narrows the projection further (it must be within the caller's);
        ``extra_filter`` is ANDed with ``filter_expr``.
        """
        projection = list(columns) if columns is not None else self.names
        outside = [c for c in projection if c not in self.names]
        if outside:
            raise ValueError(f"columns {outside} are outside the projection {self.names}")
        predicate = self.filter
        if extra_filter is not None:
            predicate = extra_filter if predicate is None else predicate & extra_filter
        schema = self.dataset.schema
        # One row group at a time: the dataset scanner reads ahead whole row groups of a file
        # while the consumer is busy (with a slow consumer, nearly the whole file), whatever
        # batch_readahead says. Splitting by row group keeps statistics pruning — groups
        # whose min/max exclude the predicate are never read — and bounds memory to one group.
        for fragment in self.dataset.get_fragments(filter=predicate):
            pieces = (
                fragment.split_by_row_group(filter=predicate, schema=schema)
                if isinstance(fragment, ds.ParquetFileFragment)
                else [fragment]
            )
            for piece in pieces:
                self.row_groups_read += 1
                yield from piece.to_batches(
                    schema=schema,
                    columns=projection,
                    filter=predicate,
                    batch_size=batch_size,
                    batch_readahead=BATCH_READAHEAD,
                )


def resolve_source(path: str | Path, filesystem: Any | None) -> tuple[pafs.FileSystem, str]:
    """``(pyarrow file system, path within it)`` for the record table."""
    text = str(path)
    if filesystem is not None:
        if isinstance(filesystem, pafs.FileSystem):
            return filesystem, _strip_scheme(text)
        if isinstance(filesystem, fsspec.AbstractFileSystem):
            return pafs.PyFileSystem(pafs.FSSpecHandler(filesystem)), filesystem._strip_protocol(
                text
            )
        raise TypeError(
            "filesystem must be a pyarrow.fs.FileSystem or an fsspec file system, got "
            f"{type(filesystem).__name__}"
        )
    if "://" not in text or text.startswith("file://"):
        return pafs.LocalFileSystem(), str(Path(_strip_scheme(text)).expanduser())
    fs, location = fsspec.core.url_to_fs(text)
    return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), location


def _strip_scheme(text: str) -> str:
    return text.split("://", 1)[1] if "://" in text else text


def month_predicate(
    kind: pa.DataType, column: str, start: datetime, end: datetime
) -> ds.Expression | None:
    """``start <= column < end`` (or null) for a timestamp column; ``None`` when it cannot prune.

    Naive timestamps are UTC by the normaliser's rule, so the bounds lose their zone to match.
    """
    if not pa.types.is_timestamp(kind):
        return None
    if kind.tz is None:
        start, end = start.replace(tzinfo=None), end.replace(tzinfo=None)
    ref = ds.field(column)
    inside = (ref >= pa.scalar(start, kind)) & (ref < pa.scalar(end, kind))
    return inside | ref.is_null()
