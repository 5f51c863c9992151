"""Which months of a STAC source changed since a point in time.

Sensors need "items added or updated after my cursor", grouped by the month they belong to.
Where the API offers CQL2 filtering the question is asked exactly (``updated > since``);
otherwise only newly acquired items can be seen (``datetime >= since``), which the caller
is told through :attr:`ChangedMonths.exact`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from rasteret_assets.collection import parse_instant
from rasteret_assets.ingest.stac.http import JsonClient
from rasteret_assets.ingest.stac.search import iter_search_pages, open_api, search_parameters

#: Items read per evaluation at most, so a sensor tick stays well inside its time limit.
MAX_ITEMS_PER_TICK = 10_000


@dataclass
class ChangedMonths:
    """Months (first day, UTC) with changed items, and the newest change stamp seen."""

    months: set[datetime] = field(default_factory=set)
    newest: datetime | None = None
    items: int = 0
    exact: bool = True
    truncated: bool = False


def _stamp(item: Mapping[str, Any]) -> datetime | None:
    props = item.get("properties") or {}
    for name in ("updated", "created", "datetime", "start_datetime"):
        if props.get(name):
            return parse_instant(props[name])
    return None


def _acquired(item: Mapping[str, Any]) -> datetime | None:
    props = item.get("properties") or {}
    value = props.get("datetime") or props.get("start_datetime")
    return parse_instant(value) if value else None


def _and(*filters: Mapping[str, Any] | None) -> dict[str, Any]:
    parts = [dict(f) for f in filters if f]
    return parts[0] if len(parts) == 1 else {"op": "and", "args": parts}


async def changed_months(
    api_url: str,
    since: datetime,
    *,
    collections: Sequence[str] | None = None,
    bbox: Sequence[float] | None = None,
    query: Mapping[str, Any] | None = None,
    filter: Mapping[str, Any] | None = None,
    page_size: int = 250,
    max_items: int = MAX_ITEMS_PER_TICK,
) -> ChangedMonths:
    """Months of the items changed after ``since`` (newest change stamp included)."""
    result = ChangedMonths()
    async with JsonClient() as client:
        api = await open_api(client, api_url)
        result.exact = api.supports("filter")
        # Compared as text: pgstac and others type undeclared properties as strings (a typed
        # timestamp literal there is an error). A second of slack keeps fractional seconds
        # and "Z"/"+00:00" spellings from sorting before the cursor; exact times are compared
        # below.
        slack = (since - timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        newer = {"op": ">", "args": [{"property": "updated"}, slack]}
        parameters = search_parameters(
            api,
            collections=collections,
            bbox=tuple(bbox) if bbox else None,  # type: ignore[arg-type]
            query=query,
            filter=_and(filter, newer) if result.exact else filter,
            date_range=None if result.exact else (since, None),
            limit=page_size,
        )
        async for page in iter_search_pages(client, api, parameters, max_items=max_items):
            for item in page.items:
                acquired = _acquired(item)
                # Without CQL2 the cursor can only follow acquisition time.
                stamp = _stamp(item) if result.exact else acquired
                if acquired is None or stamp is None or (stamp <= since and result.exact):
                    continue
                result.items += 1
                result.months.add(
                    acquired.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
                )
                if result.newest is None or stamp > result.newest:
                    result.newest = stamp
    result.truncated = result.items >= max_items
    return result
