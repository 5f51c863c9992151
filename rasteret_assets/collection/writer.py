"""Atomic partitioned GeoParquet writes: stage each partition's file, then swap it in.

Layout: hive directories named by ``partition_cols``, one file per partition::

    <root>/year=2024/month=1/part-0.parquet
    <root>/year=2024/month=1/.part-0.parquet.<run id>.tmp     (only while staging)

One file per partition because replacing one file is the update a POSIX file system and S3
both make atomic (see :mod:`.store`): a partition is never seen half-written and never mixes
old and new rows; row groups keep a large partition readable in parallel. Only partitions
present in the table are touched. Each partition is atomic on its own, not the set: a
multi-month write that dies midway leaves earlier months new and later ones old, each
consistent. Two writers of the *same* partition at once are not supported (Dagster runs one
run per partition); writers of different partitions never touch each other's files.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rasteret_assets.collection.info import CollectionInfo
from rasteret_assets.collection.partition_file import PartitionFile
from rasteret_assets.collection.store import Store, resolve_filesystem
from rasteret_assets.contract import BBOX, ID, PARTITION_COLUMNS, ContractError, describe_ids

DEFAULT_ROW_GROUP_SIZE = 10_000

#: Partition values end up in directory names; integers and strings round-trip exactly.
PARTITION_TYPES = {
    str(t): t
    for t in (
        pa.int8(),
        pa.int16(),
        pa.int32(),
        pa.int64(),
        pa.uint8(),
        pa.uint16(),
        pa.uint32(),
        pa.uint64(),
        pa.string(),
    )
}


def write_collection(
    table: pa.Table,
    uri: str | Path,
    *,
    info: CollectionInfo | None = None,
    partition_cols: Sequence[str] = PARTITION_COLUMNS,
    filesystem: fsspec.AbstractFileSystem | None = None,
    storage_options: Mapping[str, Any] | None = None,
    row_group_size: int = DEFAULT_ROW_GROUP_SIZE,
    before_commit: Callable[[str], None] | None = None,
) -> list[str]:
    """Write a normalised ``table`` as hive partitions; returns the committed file paths.

    ``before_commit`` is called with each partition's relative path (``"year=2024/month=1"``)
    after its file is fully staged and before it replaces the live one: a hook for progress
    logging, and where tests raise to simulate a crash at the worst moment.
    """
    if row_group_size < 1:
        raise ValueError("row_group_size must be at least 1")
    partition_cols = list(partition_cols)
    partition_schema = validate_partition_columns(table, partition_cols)
    info = replace(
        info or CollectionInfo(),
        created=datetime.now(UTC).isoformat(),
        partitioning=tuple((f.name, str(f.type)) for f in partition_schema),
    )
    store = Store(*resolve_filesystem(uri, filesystem, storage_options))
    check_layout(store, partition_cols)
    run = uuid.uuid4().hex
    committed = []
    for relative, part in split_partitions(table, partition_cols):
        partition = PartitionFile(
            store, relative, info=info, run_id=run, row_group_size=row_group_size
        )
        try:
            partition.write(part)
        except BaseException:
            partition.abort()
            raise
        committed.append(partition.commit(before_commit))
    return committed


def validate_partition_columns(table: pa.Table, partition_cols: Sequence[str]) -> pa.Schema:
    """The hive partition schema; each column must exist, be integer or string, never null."""
    fields = []
    for name in partition_cols:
        if name not in table.schema.names:
            raise ContractError(
                f"partition column {name!r} is not in the table (columns: {table.schema.names})",
                column=name,
            )
        kind = table.schema.field(name).type
        if str(kind) not in PARTITION_TYPES:
            raise ContractError(
                f"partition column {name!r} is {kind}; partition by integer or string columns",
                column=name,
            )
        nulls = table.column(name).is_null()
        if pc.any(nulls).as_py():
            bad = [str(i) for i in pc.filter(table.column(ID), nulls).to_pylist()]
            raise ContractError(
                f"partition column {name!r} is null in {describe_ids(bad)}",
                column=name,
                ids=bad[:5],
            )
        fields.append(pa.field(name, kind))
    return pa.schema(fields)


def check_layout(store: Store, partition_cols: Sequence[str]) -> None:
    """Refuse to mix partition layouts: readers infer one hive scheme from the paths."""
    for path in store.data_files():
        keys = [part.split("=", 1)[0] for part in store.relative_parts(path)[:-1]]
        if keys != list(partition_cols):
            raise ValueError(
                f"collection at {store.root} is partitioned by {keys} ({path}); "
                f"cannot add partitions by {list(partition_cols)}"
            )


def split_partitions(table: pa.Table, partition_cols: list[str]) -> Iterator[tuple[str, pa.Table]]:
    """``(relative dir, rows minus partition columns)`` per partition, spatially ordered.

    Partition values live in the path only, as hive readers expect (DuckDB and pyarrow
    would otherwise see the column twice).
    """
    if not partition_cols:
        yield "", spatially_sorted(table)
        return
    keys = table.select(partition_cols).group_by(partition_cols).aggregate([])
    for key in keys.sort_by([(c, "ascending") for c in partition_cols]).to_pylist():
        mask = pa.array(np.ones(table.num_rows, dtype=bool))
        for name in partition_cols:
            value = pa.scalar(key[name], table.schema.field(name).type)
            mask = pc.and_(mask, pc.equal(table.column(name), value))
        relative = "/".join(f"{c}={quote(str(key[c]), safe='')}" for c in partition_cols)
        yield relative, spatially_sorted(table.filter(mask).drop_columns(partition_cols))


def spatially_sorted(table: pa.Table) -> pa.Table:
    """Rows in Z-order of their bbox centre (then id), so a row group covers a compact area.

    Months already bound time; ordering rows spatially inside a month is what lets
    row-group ``bbox`` statistics skip data for a spatial query. Records without a footprint
    (null bbox) come last.
    """
    box = table.column(BBOX)

    def centre(low: str, high: str) -> np.ndarray:
        def side(name: str) -> np.ndarray:
            return pc.struct_field(box, name).to_numpy(zero_copy_only=False)

        return (side(low) + side(high)) / 2

    x, y = centre("xmin", "xmax"), centre("ymin", "ymax")
    missing = np.isnan(x) | np.isnan(y)
    qx = np.clip((np.nan_to_num(x) + 180) / 360 * 0xFFFF, 0, 0xFFFF).astype(np.uint32)
    qy = np.clip((np.nan_to_num(y) + 90) / 180 * 0xFFFF, 0, 0xFFFF).astype(np.uint32)
    z = np.where(missing, np.uint32(0xFFFFFFFF), _spread_bits(qx) | (_spread_bits(qy) << 1))
    keys = pa.table({"z": z, ID: table.column(ID)})
    return table.take(pc.sort_indices(keys, [("z", "ascending"), (ID, "ascending")]))


def _spread_bits(values: np.ndarray) -> np.ndarray:
    """Put a zero between each of the 16 low bits: half of a Morton (Z-order) key."""
    v = values.astype(np.uint32)
    v = (v | (v << 8)) & 0x00FF00FF
    v = (v | (v << 4)) & 0x0F0F0F0F
    v = (v | (v << 2)) & 0x33333333
    return (v | (v << 1)) & 0x55555555
