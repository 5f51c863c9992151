"""One month of a record table: the ``records`` step of a ``record_table`` source.

The month window is pushed into the Parquet scan, so row groups whose ``datetime``
statistics lie outside the month are never read; a final filter on the normalised
acquisition time keeps exactly the month (rows whose ``datetime`` is null fall back on
``start_datetime`` and are therefore let through the scan and decided afterwards). The
table is read a row group at a time and never wraps a whole :class:`RecordTableBuilder`:
a month needs no plan of the whole table.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from rasteret_assets.contract import ASSETS, DATETIME, ID, ContractError
from rasteret_assets.ingest.normalize.columns import with_column
from rasteret_assets.ingest.normalize.table import normalize_table, record_ids
from rasteret_assets.ingest.tables.assets import set_band_indexes
from rasteret_assets.ingest.tables.prepare import RecordPreparer
from rasteret_assets.ingest.tables.scan import ColumnAliases, RecordSource, month_predicate
from rasteret_assets.storage import redact_url

#: Rows per record batch of a month scan.
BATCH_ROWS = 16384


def month_tables(
    path: str,
    start: datetime,
    end: datetime,
    *,
    filesystem: Any | None = None,
    column_map: Mapping[str, str] | None = None,
    href_column: str | None = None,
    band_index_map: Mapping[str, int] | None = None,
    url_rewrite_patterns: Mapping[str, str] | None = None,
    band_map: Mapping[str, str] | None = None,
) -> Iterator[pa.Table]:
    """Normalised records acquired in ``[start, end)``, a batch at a time.

    ``band_map`` ``{band code: asset key}`` keeps those assets under their band codes, as a
    STAC source's records have them (``band_index_map`` then names band codes); without it
    the table gives ``href_column`` + ``band_index_map``. ``url_rewrite_patterns`` are
    applied here, once. Contract problems (missing columns, null ids, unusable datetimes,
    wrong types) raise typed errors naming the column and the records.
    """
    aliases = ColumnAliases(dict(column_map or {}))
    preparer = RecordPreparer(
        aliases,
        href_column=href_column,
        band_index_map=dict(band_index_map or {}) if href_column else None,
        url_rewrite_patterns=dict(url_rewrite_patterns or {}),
    )
    scan = RecordSource(path, filesystem=filesystem)
    preparer.check(scan.schema)
    column = aliases.source_of(DATETIME)
    window = (
        month_predicate(scan.schema.field(column).type, column, start, end)
        if column in scan.names
        else None
    )
    known_bands = preparer.bands_from_schema
    for batch in scan.batches(BATCH_ROWS, extra_filter=window):
        table = aliases.apply(pa.Table.from_batches([batch]))
        ids = record_ids(table.column(ID).combine_chunks())
        # A map or JSON assets column shows its keys batch by batch; the band map's keys
        # are always conformed in, so a batch that lacks one has nulls there.
        bands = known_bands
        if bands is None:
            bands = list(
                dict.fromkeys([*preparer.raw_assets(table, ids), *(band_map or {}).values()])
            )
        table = preparer.with_assets(table, ids, bands)
        if band_map:
            table = select_bands(table, band_map, path)
            if band_index_map:
                assets = set_band_indexes(table.column(ASSETS).combine_chunks(), band_index_map)
                table = with_column(table, ASSETS, assets)
        table = in_window(normalize_table(table), start, end)
        if table.num_rows:
            yield table


def in_window(table: pa.Table, start: datetime, end: datetime) -> pa.Table:
    """The rows of ``table`` whose ``datetime`` lies in ``[start, end)``."""
    when = table.column(DATETIME)
    return table.filter(pc.and_(pc.greater_equal(when, start), pc.less(when, end)))


def select_bands(table: pa.Table, band_map: Mapping[str, str], path: str) -> pa.Table:
    """``assets`` reduced to the mapped asset keys, renamed to their band codes."""
    assets = table.column(ASSETS).combine_chunks()
    keys = [f.name for f in assets.type]
    missing = sorted(set(band_map.values()) - set(keys))
    if missing:
        raise ContractError(
            f"record table {redact_url(path)}: band_map names asset key(s) {missing} that "
            f"the assets column does not have; it has {keys}",
            column=ASSETS,
        )
    selected = pa.StructArray.from_arrays(
        [assets.field(key) for key in band_map.values()],
        names=list(band_map),
        mask=assets.is_null(),
    )
    return with_column(table, ASSETS, selected)
