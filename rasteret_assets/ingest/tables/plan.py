"""The first, cheap pass over a record table: what is in it, before anything is written.

Streaming the table into monthly partitions needs facts about the *whole* table up front:

* ids must be unique across all rows, not just within a batch — checked here with an
  8-byte hash per id (64 MB for eight million rows) and an exact re-check of the few
  colliding hashes, so a duplicate is named, never mistaken;
* which months occur (the partitions a build will replace) and the date range recorded in
  the collection metadata;
* for ``assets`` given as a map or JSON, the union of band keys (each batch only shows its
  own), and when enriching without band codes, which bands look like rasters.

Only the columns these facts need are read (``id``, ``datetime``, ``start_datetime`` and —
only when needed — the assets), so the pass costs a fraction of the real one, and a bad id
or datetime fails the build before a single partition is touched.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rasteret_assets.contract import ID, ContractError, DuplicateIdsError
from rasteret_assets.ingest.normalize.table import acquisition_times, record_ids


class EmptyRecordTableError(ContractError):
    """No records are left to build from (empty table, or ``filter_expr`` matched nothing)."""


class IdRegistry:
    """Exact uniqueness of ids over a stream of batches, 8 bytes per id.

    Python's 64-bit string hash is kept per id; two equal hashes are only *suspects*, and
    :meth:`confirm` re-reads the ids to tell real duplicates from (astronomically rare)
    collisions.
    """

    def __init__(self) -> None:
        self._chunks: list[np.ndarray] = []
        self.count = 0

    def add(self, ids: pa.Array) -> None:
        values = ids.to_pylist()
        self._chunks.append(np.fromiter(map(hash, values), dtype=np.int64, count=len(values)))
        self.count += len(values)

    def suspects(self) -> set[int]:
        """Hashes seen more than once."""
        if not self._chunks:
            return set()
        hashes = np.sort(np.concatenate(self._chunks))
        self._chunks = [hashes]
        repeated = hashes[1:][hashes[1:] == hashes[:-1]]
        return set(np.unique(repeated).tolist())

    @staticmethod
    def confirm(suspects: set[int], batches: Iterable[pa.Array]) -> list[tuple[str, int]]:
        """``(id, count)`` of the ids that really repeat, most frequent first."""
        counts: Counter[str] = Counter()
        for ids in batches:
            counts.update(v for v in ids.to_pylist() if hash(v) in suspects)
        return [(v, c) for v, c in counts.most_common() if c > 1]


@dataclass
class RecordPlan:
    """What the first pass learned about the rows a build will write."""

    rows: int = 0
    #: Rows per ``(year, month)`` of acquisition (UTC).
    months: Counter[tuple[int, int]] = field(default_factory=Counter)
    first: datetime | None = None
    last: datetime | None = None
    #: Rows whose ``datetime`` is null and that take ``start_datetime`` instead.
    from_start_datetime: int = 0
    #: Union of band keys, in first-seen order (only when the pass read the assets).
    asset_bands: list[str] = field(default_factory=list)
    #: Bands with at least one asset that looks like a raster (only when asked for).
    raster_bands: list[str] = field(default_factory=list)

    @property
    def date_range(self) -> tuple[str, str]:
        assert self.first is not None and self.last is not None
        return self.first.isoformat(), self.last.isoformat()

    def month_groups(self, size: int) -> list[list[tuple[int, int]]]:
        """The months in order, ``size`` at a time (one streaming pass per group)."""
        months = sorted(self.months)
        return [months[i : i + size] for i in range(0, len(months), size)]


#: Receives each batch (aliases applied) and its ids; used to survey the assets.
BatchObserver = Callable[[pa.Table, pa.Array], None]


def plan_records(
    batches: Iterator[pa.Table],
    *,
    id_column: str = ID,
    observe: BatchObserver | None = None,
    rescan_ids: Callable[[], Iterator[pa.Array]],
) -> RecordPlan:
    """Run the first pass over ``batches`` (contract column names, aliases applied).

    ``rescan_ids`` yields the id column again, batch by batch; it is only called when two
    ids share a hash. Raises :class:`ContractError` for null ids, unusable datetimes and
    duplicate ids, :class:`EmptyRecordTableError` when there are no rows.
    """
    plan = RecordPlan()
    registry = IdRegistry()
    low = high = None
    for table in batches:
        if table.num_rows == 0:
            continue
        ids = _ids_at(table, id_column, plan.rows)
        registry.add(ids)
        columns = {n: table.column(n).combine_chunks() for n in table.column_names}
        when = acquisition_times(columns, ids)
        datetimes = columns.get("datetime")
        if datetimes is not None:
            plan.from_start_datetime += datetimes.null_count
        keys = pc.add(
            pc.multiply(pc.year(when).cast(pa.int64()), 12), pc.month(when).cast(pa.int64())
        ).to_numpy()
        values, counts = np.unique(keys, return_counts=True)
        for key, count in zip(values.tolist(), counts.tolist(), strict=True):
            plan.months[((key - 1) // 12, (key - 1) % 12 + 1)] += count
        bounds = pc.min_max(when)
        low = bounds["min"] if low is None else min(low, bounds["min"], key=_as_py)
        high = bounds["max"] if high is None else max(high, bounds["max"], key=_as_py)
        if observe is not None:
            observe(table, ids)
        plan.rows += table.num_rows
    if plan.rows == 0:
        raise EmptyRecordTableError("the record table has no rows (after filter_expr)")
    suspects = registry.suspects()
    if suspects:
        repeated = IdRegistry.confirm(suspects, rescan_ids())
        if repeated:
            names = [v for v, _ in repeated[:5]]
            raise DuplicateIdsError(
                f"column {ID!r}: ids must be unique across the whole table, "
                f"{len(repeated)} repeat (e.g. {', '.join(repr(n) for n in names)}; "
                f"{names[0]!r} occurs {repeated[0][1]} times)",
                column=ID,
                ids=names,
            )
    plan.first = _as_py(low).astimezone(UTC)
    plan.last = _as_py(high).astimezone(UTC)
    return plan


def _as_py(scalar: pa.Scalar) -> datetime:
    return scalar.as_py()


def _ids_at(table: pa.Table, column: str, offset: int) -> pa.Array:
    """String ids of ``table``; null ids are reported by their row number in the table."""
    values = table.column(column).combine_chunks()
    if values.null_count:
        rows = np.flatnonzero(values.is_null().to_numpy(zero_copy_only=False)) + offset
        raise ContractError(
            f"column {ID!r}: {values.null_count} record(s) in this batch have no id "
            f"(rows {rows[:5].tolist()} of the filtered table, 0-based)",
            column=ID,
        )
    return record_ids(values)


def describe_months(months: Iterable[tuple[int, int]]) -> str:
    """``"2024-01 … 2024-12 (12 months)"``: partitions in log lines."""
    ordered = sorted(months)
    if not ordered:
        return "no months"
    first, last = ordered[0], ordered[-1]
    span = f"{first[0]}-{first[1]:02d}"
    if len(ordered) > 1:
        span += f" … {last[0]}-{last[1]:02d}"
    return f"{span} ({len(ordered)} month{'s' if len(ordered) != 1 else ''})"
