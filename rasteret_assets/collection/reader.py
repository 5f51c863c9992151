"""``Collection``: the records of one collection as an Arrow dataset, plus what it is.

Queries build pyarrow dataset expressions and scan lazily, so a bbox or date filter is
pushed down: hive partitions are pruned from their paths, row groups by the statistics of
``bbox`` and ``datetime``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from rasteret_assets.collection.geoparquet import GEO_KEY, encode, geoparquet_metadata, merge_geo
from rasteret_assets.collection.info import (
    METADATA_KEY,
    CollectionInfo,
    DateLike,
    merge_infos,
    parse_date_range,
)
from rasteret_assets.collection.reference_footer import (
    has_reference_footer,
    info_from_reference,
    reference_footer,
)
from rasteret_assets.collection.store import Store, resolve_filesystem
from rasteret_assets.collection.writer import PARTITION_TYPES
from rasteret_assets.contract import BBOX, DATETIME, DATETIME_TYPE, MONTH, YEAR, band_codes_of


class Collection:
    """Records as an Arrow dataset with name, description, data source and date range.

    Built in memory by ``build_collection_from_table`` (:meth:`from_table`) or opened from a
    directory or ``s3://`` prefix (:meth:`open`). :meth:`filter` returns a new collection
    whose dataset carries the predicate; nothing is read until it is scanned.
    """

    def __init__(
        self,
        dataset: ds.Dataset,
        *,
        info: CollectionInfo | None = None,
        uri: str | None = None,
        predicate: ds.Expression | None = None,
    ) -> None:
        self._source = dataset
        self._predicate = predicate
        self.info = info or CollectionInfo()
        self.uri = uri

    @classmethod
    def from_table(cls, table: pa.Table, info: CollectionInfo | None = None) -> Collection:
        """An in-memory collection; its schema carries ``geo`` and collection metadata."""
        info = info or CollectionInfo()
        metadata = {
            GEO_KEY: encode(geoparquet_metadata(table)),
            METADATA_KEY: info.to_json(),
            **reference_footer(info),
        }
        return cls(ds.dataset(table.replace_schema_metadata(metadata)), info=info)

    @classmethod
    def open(
        cls,
        uri: str | Path,
        *,
        filesystem: fsspec.AbstractFileSystem | None = None,
        storage_options: Mapping[str, Any] | None = None,
    ) -> Collection:
        """Open a persisted collection (local path or ``s3://…``).

        Every footer is read (in parallel) so that partitions written at different times,
        with different band sets or extra columns, unify into one schema; staged and other
        hidden files are never part of the dataset. Collections rasteret 0.4.1 wrote open
        too: their footer keys give name, source and dates, and their naive timestamps are
        read as UTC (rasteret stores UTC instants without a zone).
        """
        store = Store(*resolve_filesystem(uri, filesystem, storage_options))
        files = store.data_files()
        if not files:
            raise FileNotFoundError(f"no collection data under {uri!s}")
        arrow_fs = store.arrow_filesystem()
        with ThreadPoolExecutor(max_workers=min(16, len(files))) as pool:
            schemas = list(pool.map(lambda f: pq.read_schema(f, filesystem=arrow_fs), files))
        footers = [s.metadata or {} for s in schemas]
        info = merge_infos([i for i in map(_file_info, footers) if i is not None])
        partition_schema = _partition_schema(store, files, info)
        if not info.partitioning:
            levels = tuple((f.name, str(f.type)) for f in partition_schema)
            info = replace(info, partitioning=levels)
        try:
            schema = pa.unify_schemas(
                [_utc_timestamps(s.remove_metadata()) for s in schemas] + [partition_schema],
                promote_options="permissive",
            )
        except (pa.ArrowTypeError, pa.ArrowInvalid) as exc:
            raise ValueError(f"partitions of {uri!s} have incompatible schemas: {exc}") from exc
        metadata = {METADATA_KEY: info.to_json(), **reference_footer(info)}
        geo = merge_geo([json.loads(m[GEO_KEY]) for m in footers if GEO_KEY in m])
        if geo is not None:
            metadata[GEO_KEY] = encode(geo)
        dataset = ds.dataset(
            files,
            schema=schema.with_metadata(metadata),
            format="parquet",
            filesystem=arrow_fs,
            partitioning=ds.partitioning(partition_schema, flavor="hive")
            if len(partition_schema)
            else None,
            partition_base_dir=store.root,
        )
        return cls(dataset, info=info, uri=str(uri))

    # -- what it is

    @property
    def dataset(self) -> ds.Dataset:
        """The Arrow dataset, with this collection's filter applied (lazily)."""
        if self._predicate is None:
            return self._source
        return self._source.filter(self._predicate)

    @property
    def schema(self) -> pa.Schema:
        return self._source.schema

    @property
    def predicate(self) -> ds.Expression | None:
        """The combined filter of :meth:`filter` calls, ``None`` when unfiltered."""
        return self._predicate

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def description(self) -> str:
        return self.info.description

    @property
    def data_source(self) -> str:
        return self.info.data_source

    @property
    def date_range(self) -> tuple[datetime, datetime] | None:
        """``(start, end)`` recorded when the collection was built, as the builder's caller
        gave them (``"2024-01-31"`` is midnight), or the data's first and last ``datetime``.

        :meth:`filter` reads a bare end date as the whole day; this keeps the caller's value.
        """
        if not self.info.date_range:
            return None
        start, end = self.info.date_range
        return datetime.fromisoformat(start), datetime.fromisoformat(end)

    @property
    def start_date(self) -> datetime | None:
        return self.date_range[0] if self.date_range else None

    @property
    def end_date(self) -> datetime | None:
        return self.date_range[1] if self.date_range else None

    @property
    def partition_cols(self) -> list[str]:
        return [name for name, _ in self.info.partitioning]

    @property
    def band_codes(self) -> list[str]:
        """Bands with a ``{band}_metadata`` column."""
        return band_codes_of(self.schema)

    def __repr__(self) -> str:
        where = f"at {self.uri}" if self.uri else "in memory"
        return f"<Collection {self.name!r} ({self.data_source or 'no data source'}) {where}>"

    # -- querying

    def filter(
        self,
        *,
        bbox: Sequence[float] | None = None,
        date_range: tuple[DateLike, DateLike] | None = None,
        expression: ds.Expression | None = None,
    ) -> Collection:
        """Records whose bbox intersects ``bbox`` and whose datetime is in ``date_range``.

        ``bbox`` is ``(xmin, ymin, xmax, ymax)`` in lon/lat; ``xmin > xmax`` is a query box
        crossing the antimeridian. ``date_range`` is inclusive and a bare end date covers
        that whole day. Footprints that cross the antimeridian carry a full-longitude bbox,
        so they are always found (see ``rasteret_assets/ingest/geometry.py``).
        """
        new = []
        if bbox is not None:
            new.append(bbox_expression(bbox))
        if date_range is not None:
            new.append(self._date_expression(date_range))
        if expression is not None:
            new.append(expression)
        if not new:
            return self
        combined = self._predicate
        for part in new:
            combined = part if combined is None else combined & part
        return Collection(self._source, info=self.info, uri=self.uri, predicate=combined)

    def _date_expression(self, date_range: tuple[DateLike, DateLike]) -> ds.Expression:
        start, end = parse_date_range(date_range)
        column = ds.field(DATETIME)
        expr = (column >= pa.scalar(start, DATETIME_TYPE)) & (
            column <= pa.scalar(end, DATETIME_TYPE)
        )
        if self.partition_cols[:2] == [YEAR, MONTH]:
            # The same bound on the partition keys prunes whole months from their paths.
            expr = expr & month_expression(start, end)
        return expr

    def fragments(self) -> list[ds.Fragment]:
        """The files (or in-memory batches) a scan would read after partition pruning."""
        return list(self._source.get_fragments(filter=self._predicate))

    def to_table(self, columns: Sequence[str] | None = None) -> pa.Table:
        return self.dataset.to_table(columns=list(columns) if columns is not None else None)

    def count_rows(self) -> int:
        return self.dataset.count_rows()


def bbox_expression(bbox: Sequence[float]) -> ds.Expression:
    """Rows whose ``bbox`` covering intersects ``bbox``: plain range predicates, pushdown-able."""
    if len(bbox) != 4 or not all(np.isfinite(float(v)) for v in bbox):
        raise ValueError(f"bbox must be 4 finite numbers (xmin, ymin, xmax, ymax), got {bbox!r}")
    xmin, ymin, xmax, ymax = (float(v) for v in bbox)
    if ymin > ymax:
        raise ValueError(f"bbox has ymin > ymax: {bbox!r}")
    in_y = (ds.field(BBOX, "ymin") <= ymax) & (ds.field(BBOX, "ymax") >= ymin)
    if xmin > xmax:  # the query crosses the antimeridian: [xmin, 180] or [-180, xmax]
        return in_y & (_x_overlaps(xmin, 180.0) | _x_overlaps(-180.0, xmax))
    return in_y & _x_overlaps(xmin, xmax)


def _x_overlaps(xmin: float, xmax: float) -> ds.Expression:
    return (ds.field(BBOX, "xmin") <= xmax) & (ds.field(BBOX, "xmax") >= xmin)


def month_expression(start: datetime, end: datetime) -> ds.Expression:
    """``(year, month)`` between the months of ``start`` and ``end`` (UTC), inclusive."""
    year, month = ds.field(YEAR), ds.field(MONTH)
    after_start = (year > start.year) | ((year == start.year) & (month >= start.month))
    before_end = (year < end.year) | ((year == end.year) & (month <= end.month))
    return after_start & before_end


def _file_info(footer: Mapping[bytes, bytes]) -> CollectionInfo | None:
    """The collection info of one file: the project's key, else rasteret's keys, else none."""
    if METADATA_KEY in footer:
        return CollectionInfo.from_json(footer[METADATA_KEY])
    if has_reference_footer(footer):
        return info_from_reference(footer)
    return None


def _utc_timestamps(schema: pa.Schema) -> pa.Schema:
    """Zone-less timestamp columns declared UTC, so the scan casts them and filters compare.

    rasteret 0.4.1 writes ``datetime`` as ``timestamp[us]`` holding UTC wall-clock values;
    a filter with an aware bound would otherwise fail on the type mismatch.
    """
    for index, field in enumerate(schema):
        if pa.types.is_timestamp(field.type) and field.type.tz is None:
            schema = schema.set(index, field.with_type(pa.timestamp(field.type.unit, "UTC")))
    return schema


def _partition_schema(store: Store, files: list[str], info: CollectionInfo) -> pa.Schema:
    """Partition levels from the paths, typed by the footer metadata (int32 if unknown)."""
    layouts = {tuple(store.relative_parts(f)[:-1]) for f in files}
    if any("=" not in part for layout in layouts for part in layout):
        raise ValueError(f"collection at {store.root} has files outside hive partitions")
    names = {tuple(part.split("=", 1)[0] for part in layout) for layout in layouts}
    if len(names) != 1:
        raise ValueError(f"collection at {store.root} mixes partition layouts: {sorted(names)}")
    types = dict(info.partitioning)
    return pa.schema(
        [
            pa.field(name, PARTITION_TYPES.get(types.get(name, "int32"), pa.int32()))
            for name in names.pop()
        ]
    )
