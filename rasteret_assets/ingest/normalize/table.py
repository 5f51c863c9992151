"""The shared last step of every builder: record table → Collection contract → Collection.

Each contract column has one normaliser module (``timestamps``, ``geometry``, ``assets``,
``crs``); this module checks the table as a whole (columns present, ids unique), puts the
pieces together and optionally persists the result. Columns outside the contract
(``{band}_metadata``, STAC properties …) pass through unchanged.

Derived columns are recomputed, even when the input already has them: ``bbox`` and
``scene_bbox`` from ``geometry`` (so they follow the antimeridian rule a bbox query relies
on), ``year``/``month`` from ``datetime`` (so partitions can never disagree with the data) —
except that :func:`build_collection_from_table`, like the reference, keeps the ``year`` and
``month`` a caller already has.
A record whose ``datetime`` is null takes its ``start_datetime`` (STAC's rule for items
that describe a period, e.g. annual land-cover maps).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rasteret_assets.collection import (
    Collection,
    CollectionInfo,
    normalize_date_range,
    validate_partition_columns,
    write_collection,
)
from rasteret_assets.contract import (
    ASSETS,
    BBOX,
    BBOX_TYPE,
    CRS,
    DATETIME,
    DATETIME_TYPE,
    GEOMETRY,
    ID,
    MONTH,
    PARTITION_COLUMNS,
    PROJ_EPSG,
    SCENE_BBOX,
    SCENE_BBOX_TYPE,
    YEAR,
    ContractError,
    band_codes_of,
    describe_ids,
    require_columns,
    require_unique_ids,
)
from rasteret_assets.ingest.normalize.assets import normalize_assets
from rasteret_assets.ingest.normalize.bad_values import example
from rasteret_assets.ingest.normalize.crs import SOURCE_COLUMNS as CRS_SOURCE_COLUMNS
from rasteret_assets.ingest.normalize.crs import raster_crs
from rasteret_assets.ingest.normalize.footprints import fill_footprints
from rasteret_assets.ingest.normalize.geometry import (
    bbox_array,
    footprint_bounds,
    geometries_from_column,
    scene_bbox_array,
    to_wkb,
)
from rasteret_assets.ingest.normalize.reproject import declared_crs
from rasteret_assets.ingest.normalize.timestamps import normalize_datetime

logger = logging.getLogger(__name__)

START_DATETIME = "start_datetime"

#: Columns this module writes, in the order they lead the normalised schema.
_CONTRACT_FIELDS = (
    pa.field(ID, pa.string()),
    pa.field(DATETIME, DATETIME_TYPE),
    pa.field(GEOMETRY, pa.binary()),
    pa.field(BBOX, BBOX_TYPE),
    pa.field(SCENE_BBOX, SCENE_BBOX_TYPE),
    pa.field(PROJ_EPSG, pa.int32()),
    pa.field(CRS, pa.string()),
)


def normalize_table(table: pa.Table, *, keep_partition_columns: bool = False) -> pa.Table:
    """``table`` with every contract column in its contract type; raises :class:`ContractError`.

    Row order and row count are preserved: a record is either normalised or the whole call
    fails naming it, never dropped. ``keep_partition_columns`` keeps integer ``year`` and
    ``month`` columns the table already has instead of deriving them from ``datetime``.
    """
    require_columns(table.schema)
    _require_distinct_names(table.schema)
    if table.num_rows == 0:
        raise ContractError("table has no records: there is nothing to normalise")
    # Only the columns read here are made contiguous; the rest (band metadata can be large)
    # pass through as they are, without a copy.
    read = {ID, DATETIME, GEOMETRY, ASSETS, START_DATETIME, *CRS_SOURCE_COLUMNS}
    columns = {n: table.column(n).combine_chunks() for n in table.schema.names if n in read}
    ids = record_ids(columns[ID])
    require_unique_ids(ids)
    when = acquisition_times(columns, ids)
    geoms = geometries_from_column(
        columns[GEOMETRY], ids, GEOMETRY, declared_crs(table.schema, GEOMETRY)
    )
    bounds = footprint_bounds(geoms)
    epsg, crs = raster_crs(columns, ids)
    derived = {
        ID: ids,
        DATETIME: when,
        GEOMETRY: to_wkb(geoms),
        ASSETS: normalize_assets(columns[ASSETS], ids, ASSETS),
        BBOX: bbox_array(bounds),
        SCENE_BBOX: scene_bbox_array(bounds),
        PROJ_EPSG: epsg,
        CRS: crs,
        YEAR: _partition_column(table, YEAR, pc.year(when), keep_partition_columns),
        MONTH: _partition_column(table, MONTH, pc.month(when), keep_partition_columns),
    }
    fields = [*_CONTRACT_FIELDS[:3], pa.field(ASSETS, derived[ASSETS].type), *_CONTRACT_FIELDS[3:]]
    arrays = [derived[f.name] for f in fields]
    for source_field in table.schema:
        if source_field.name not in derived:
            fields.append(source_field)
            arrays.append(table.column(source_field.name))
    fields += [pa.field(YEAR, pa.int32()), pa.field(MONTH, pa.int32())]
    arrays += [derived[YEAR], derived[MONTH]]
    # Source schema metadata (an old ``geo`` blob, pandas index info) would describe the input,
    # not this table, so none is carried over.
    normalized = pa.Table.from_arrays(arrays, schema=pa.schema(fields))
    normalized, footprints = fill_footprints(normalized, band_codes_of(normalized.schema))
    if footprints.from_headers or footprints.missing:
        logger.info(
            "footprints: %d record(s) given one from their headers, %d left without one",
            footprints.from_headers,
            footprints.missing,
        )
    return normalized


def _partition_column(table: pa.Table, name: str, derived: pa.Array, keep: bool) -> pa.Array:
    if keep and name in table.column_names:
        given = table.column(name).combine_chunks()
        if not pa.types.is_integer(given.type):
            raise ContractError(
                f"column {name!r}: a partition column must hold integers, got {given.type}",
                column=name,
            )
        return given.cast(pa.int32())
    return derived.cast(pa.int32())


def _require_distinct_names(schema: pa.Schema) -> None:
    repeated = sorted(name for name, count in Counter(schema.names).items() if count > 1)
    if repeated:
        raise ContractError(
            f"column names must be unique, repeated: {repeated}", column=repeated[0]
        )


def record_ids(values: pa.Array) -> pa.Array:
    """Ids as strings; raises :class:`ContractError` for unusable types and null ids.

    Rows are named 0-based within ``values``.
    """
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    try:
        ids = values.cast(pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise ContractError(
            f"column {ID!r}: cannot use {values.type} as ids{example(values, None)}; ids must "
            "be strings (or integers)",
            column=ID,
        ) from exc
    if ids.null_count:
        rows = np.flatnonzero(ids.is_null().to_numpy(zero_copy_only=False))
        raise ContractError(
            f"column {ID!r}: {len(rows)} record(s) have no id (rows {rows[:5].tolist()}, 0-based)",
            column=ID,
        )
    return ids


def acquisition_times(columns: Mapping[str, pa.Array], ids: pa.Array) -> pa.Array:
    """``datetime`` as UTC instants, ``start_datetime`` where it is null; never null.

    ``columns`` maps column names to arrays (``datetime`` required, ``start_datetime``
    optional); raises :class:`ContractError` naming records with neither.
    """
    when = normalize_datetime(columns[DATETIME], ids, DATETIME)
    if when.null_count and START_DATETIME in columns:
        start = normalize_datetime(columns[START_DATETIME], ids, START_DATETIME)
        when = pc.coalesce(when, start)
    if when.null_count:
        missing = [str(i) for i in pc.filter(ids, when.is_null()).to_pylist()]
        raise ContractError(
            f"column {DATETIME!r}: null, with no {START_DATETIME!r} to fall back on, in "
            f"{describe_ids(missing)}",
            column=DATETIME,
            ids=missing[:5],
        )
    return when


def build_collection_from_table(
    table: pa.Table,
    *,
    name: str = "",
    description: str = "",
    data_source: str = "",
    date_range: tuple[str | date | datetime, str | date | datetime] | None = None,
    workspace_dir: str | Path | None = None,
    partition_cols: Sequence[str] = PARTITION_COLUMNS,
    filesystem: fsspec.AbstractFileSystem | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> Collection:
    """Normalise ``table`` into a Collection and, with ``workspace_dir``, persist it.

    ``date_range`` (inclusive ISO dates) is recorded as collection metadata; without it the
    data's own first and last ``datetime`` are recorded. ``workspace_dir`` is a local path or
    an fsspec URL such as ``s3://bucket/prefix`` (``storage_options`` or ``filesystem``
    configure the store). Only the partitions present in ``table`` are replaced, each
    atomically; the returned collection is the persisted one, other partitions included.
    """
    normalized = normalize_table(table, keep_partition_columns=True)
    partition_cols = list(partition_cols)
    validate_partition_columns(normalized, partition_cols)
    info = CollectionInfo(
        name=name,
        description=description,
        data_source=data_source,
        date_range=normalize_date_range(date_range) if date_range else _data_date_range(normalized),
    )
    if workspace_dir is None:
        info = replace(
            info,
            created=datetime.now(UTC).isoformat(),
            partitioning=tuple((c, str(normalized.schema.field(c).type)) for c in partition_cols),
        )
        return Collection.from_table(normalized, info)
    write_collection(
        normalized,
        workspace_dir,
        info=info,
        partition_cols=partition_cols,
        filesystem=filesystem,
        storage_options=storage_options,
    )
    return Collection.open(workspace_dir, filesystem=filesystem, storage_options=storage_options)


def _data_date_range(table: pa.Table) -> tuple[str, str]:
    bounds = pc.min_max(table.column(DATETIME))
    return bounds["min"].as_py().isoformat(), bounds["max"].as_py().isoformat()
