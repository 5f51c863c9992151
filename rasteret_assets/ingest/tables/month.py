"""One month of a record table: the ``records`` step of a ``record_table`` source.

The month window is pushed into the Parquet scan, so row groups whose ``datetime``
statistics lie outside the month are never read; a final filter on the normalised
acquisition time keeps exactly the month (rows whose ``datetime`` is null fall back on
``start_datetime`` and are therefore let through the scan and decided afterwards).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from rasteret_assets.contract import ASSETS, DATETIME, ContractError
from rasteret_assets.ingest.normalize.columns import with_column
from rasteret_assets.ingest.tables.builder import RecordTableBuilder
from rasteret_assets.ingest.tables.plan import EmptyRecordTableError
from rasteret_assets.ingest.tables.scan import ColumnAliases, RecordSource, month_predicate
from rasteret_assets.storage import redact_url


def scan_record_table_month(
    path: str,
    start: datetime,
    end: datetime,
    *,
    filesystem: Any | None = None,
    data_source: str = "",
    column_map: Mapping[str, str] | None = None,
    href_column: str | None = None,
    band_index_map: Mapping[str, int] | None = None,
    url_rewrite_patterns: Mapping[str, str] | None = None,
    band_map: Mapping[str, str] | None = None,
) -> pa.Table | None:
    """Normalised records acquired in ``[start, end)``; ``None`` when the month has none.

    ``band_map`` ``{band code: asset key}`` keeps those assets under their band codes, as a
    STAC source's records have them. Contract problems of the table (missing columns,
    duplicate or null ids, unusable datetimes) raise the builder's typed errors naming the
    column and the records.
    """
    aliases = ColumnAliases(dict(column_map or {}))
    column = aliases.source_of(DATETIME)
    schema = RecordSource(path, filesystem=filesystem).schema
    predicate = (
        month_predicate(schema.field(column).type, column, start, end)
        if column in schema.names
        else None
    )
    builder = RecordTableBuilder(
        path,
        data_source=data_source,
        column_map=dict(column_map or {}),
        href_column=href_column,
        band_index_map=dict(band_index_map or {}) or None,
        url_rewrite_patterns=dict(url_rewrite_patterns or {}),
        filesystem=filesystem,
        filter_expr=predicate,
    )
    try:
        table = builder.build(workspace_dir=None).to_table()
    except EmptyRecordTableError:
        return None
    when = table.column(DATETIME)
    table = table.filter(pc.and_(pc.greater_equal(when, start), pc.less(when, end)))
    if not table.num_rows:
        return None
    return select_bands(table, band_map, path) if band_map else table


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
