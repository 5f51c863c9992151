"""Set a column of an Arrow table whether or not it is there yet.

Enrichment re-run over an already enriched table must replace ``{band}_metadata``, not add a
second column of the same name, so every step that adds a column goes through here.
"""

from __future__ import annotations

import pyarrow as pa


def with_column(table: pa.Table, name: str, column: pa.Array | pa.ChunkedArray) -> pa.Table:
    """``table`` with ``name`` replaced in place, or appended when it is new."""
    if name in table.column_names:
        return table.set_column(table.column_names.index(name), name, column)
    return table.append_column(name, column)
