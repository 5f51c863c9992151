"""The example in a contract error: which record shows the problem, and what it holds.

A column of the wrong *type* (a list where an href belongs, epoch seconds where a timestamp
belongs) is wrong in every row, so naming the type alone leaves the user guessing whether
the table, a join or one writer produced it. The first record that holds such a value, and
the value itself (shortened), is what they need to find it.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_MAX_CHARS = 80


def example(values: pa.Array, ids: pa.Array | None, where: pa.Array | None = None) -> str:
    """``"e.g. record 'a' holds ['x']"`` for the first non-null value (among ``where``).

    Without ``ids`` (the ids themselves are unusable) the record is named by its 0-based
    row. Returns ``""`` when no row qualifies, so it can always be appended to a message.
    """
    rows = values.is_valid()
    if where is not None:
        rows = pc.and_(rows, pc.fill_null(where, False))
    found = np.flatnonzero(rows.to_numpy(zero_copy_only=False))
    if len(found) == 0:
        return ""
    row = int(found[0])
    who = f"record {ids[row].as_py()!r}" if ids is not None else f"row {row}"
    return f" (e.g. {who} holds {shorten(values[row].as_py())})"


def shorten(value: object) -> str:
    """``repr(value)``, cut to a length an error message can carry."""
    text = repr(value)
    return text if len(text) <= _MAX_CHARS else text[: _MAX_CHARS - 3] + "..."
