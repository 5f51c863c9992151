"""What a collection is (name, source, date range …) and how user-given dates are read."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta

from rasteret_assets.contract import CONTRACT_VERSION

#: Schema-metadata key under which every file footer carries a :class:`CollectionInfo`.
METADATA_KEY = b"rasteret_assets"

DateLike = str | date | datetime


@dataclass(frozen=True, slots=True)
class CollectionInfo:
    """Collection metadata, stored as JSON under ``rasteret_assets`` in every file footer.

    Every file carries it, so no shared root file has to be rewritten (two months written by
    two concurrent runs never race); :meth:`Collection.open` merges the footers.
    """

    name: str = ""
    description: str = ""
    data_source: str = ""
    #: ``(start, end)`` as ISO 8601 UTC instants, as the builder's caller gave them (a bare
    #: end date is that day's midnight; filters still include the whole day).
    date_range: tuple[str, str] | None = None
    #: When the file was written, ISO 8601 UTC.
    created: str | None = None
    contract_version: str = CONTRACT_VERSION
    #: ``(column, Arrow type name)`` of each hive partition level, outermost first.
    partitioning: tuple[tuple[str, str], ...] = field(default=())

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> CollectionInfo:
        data = json.loads(raw)
        date_range = data.get("date_range")
        return cls(
            name=data.get("name", ""),
            description=data.get("description", ""),
            data_source=data.get("data_source", ""),
            date_range=(str(date_range[0]), str(date_range[1])) if date_range else None,
            created=data.get("created"),
            contract_version=data.get("contract_version", ""),
            partitioning=tuple((str(n), str(t)) for n, t in data.get("partitioning", ())),
        )


def merge_infos(infos: Sequence[CollectionInfo]) -> CollectionInfo:
    """One view of many footers: names from the newest file, a date range spanning all."""
    if not infos:
        return CollectionInfo()
    newest = max(infos, key=lambda i: i.created or "")
    ranges = [i.date_range for i in infos if i.date_range]
    if not ranges:
        return newest
    return replace(newest, date_range=(min(r[0] for r in ranges), max(r[1] for r in ranges)))


def parse_instant(value: DateLike, *, end_of_day: bool = False) -> datetime:
    """A user-supplied bound as an aware UTC datetime (naive values are taken as UTC).

    A bare date means the start of that day, or with ``end_of_day`` its last microsecond,
    so ``("2024-01-01", "2024-01-31")`` covers all of January.
    """
    if isinstance(value, str):
        text = value.strip()
        try:
            parsed: date | datetime = (
                date.fromisoformat(text) if len(text) == 10 else datetime.fromisoformat(text)
            )
        except ValueError as exc:
            raise ValueError(f"{value!r} is not an ISO 8601 date or datetime") from exc
        return parse_instant(parsed, end_of_day=end_of_day)
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, date):
        start = datetime.combine(value, time(), tzinfo=UTC)
        return start + timedelta(days=1, microseconds=-1) if end_of_day else start
    raise TypeError(f"expected a date, datetime or ISO string, got {type(value).__name__}")


def parse_date_range(date_range: tuple[DateLike, DateLike]) -> tuple[datetime, datetime]:
    """Inclusive ``(start, end)`` in UTC; a bare end date includes that whole day."""
    if len(date_range) != 2:
        raise ValueError(f"date_range must be (start, end), got {date_range!r}")
    start = parse_instant(date_range[0])
    end = parse_instant(date_range[1], end_of_day=True)
    if start > end:
        raise ValueError(f"date_range starts after it ends: {date_range!r}")
    return start, end


def normalize_date_range(date_range: tuple[DateLike, DateLike]) -> tuple[str, str]:
    """The caller's ``(start, end)`` as UTC ISO strings, the form :class:`CollectionInfo` stores.

    Checked like :func:`parse_date_range`, but a bare end date stays that day's midnight (as
    rasteret records it): the range says what was asked for, filters widen it to the day.
    """
    parse_date_range(date_range)
    return parse_instant(date_range[0]).isoformat(), parse_instant(date_range[1]).isoformat()
