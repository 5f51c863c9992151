"""Walk a static STAC catalog (a tree of JSON files, local or over HTTP) and stream its items.

Static catalogs have no ``/search``: the only way to the items is to read every catalog,
collection and item document, following relative ``child`` and ``item`` links. Over HTTP
that is one round trip per document, so documents are read by a fixed pool of concurrent
workers (siblings in parallel, not one after another), and items are yielded as soon as
they are read. Filters (bbox/intersects, date range, collection ids) are applied on the
client, item by item.

Relative hrefs — links and asset hrefs — are resolved against the document they appear in,
so a collection built from a catalog holds absolute asset URLs (or absolute local paths).
Each document is read once even if several links point to it, so links that go round in
circles (a child linking back to its parent) end the walk normally. A link to a missing or
unreadable document fails the walk with :class:`StaticCatalogError` naming both the document
and the one that linked it: silently skipping a subtree would silently drop a region. So do
documents that are not JSON objects, larger than the client's ``max_response_bytes`` (local
files too), ``links`` or ``features`` that are not lists, features that are not objects and
``child``/``item`` links without an href. An item the filters cannot judge (an undecodable
or, under a spatial filter, missing footprint; an unreadable time) raises
:class:`~.stac_items.StacItemError` with its document as ``source``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urljoin, urlparse

import shapely
from shapely.geometry.base import BaseGeometry

from rasteret_assets.collection import parse_instant
from rasteret_assets.ingest.stac.http import JsonClient, StacApiError
from rasteret_assets.ingest.stac.items import StacItemError
from rasteret_assets.storage import redact_url

logger = logging.getLogger(__name__)

DEFAULT_CONCURRENCY = 16
_FOLLOWED_RELS = frozenset({"child", "item"})
_DONE = object()


class StaticCatalogError(RuntimeError):
    """A catalog document could not be read or is not STAC; names who linked to it."""

    def __init__(self, message: str, *, href: str, linked_from: str | None) -> None:
        self.href = href
        self.linked_from = linked_from
        origin = f" (linked from {linked_from})" if linked_from else ""
        super().__init__(f"{href}{origin}: {message}")


@dataclass(frozen=True)
class ItemFilter:
    """Client-side item filters with the same meaning as the API search parameters."""

    area: BaseGeometry | None = None
    start: datetime | None = None
    end: datetime | None = None
    collections: frozenset[str] | None = None

    @classmethod
    def build(
        cls,
        *,
        bbox: Sequence[float] | None = None,
        intersects: Any | None = None,
        date_range: tuple[Any, Any] | None = None,
        collections: Sequence[str] | None = None,
    ) -> ItemFilter:
        """``date_range`` is inclusive (a bare end date covers the whole day); either bound
        may be ``None`` for an open interval."""
        if bbox is not None and intersects is not None:
            raise ValueError("pass bbox or intersects, not both")
        area = None
        if bbox is not None:
            area = _bbox_area(bbox)
        elif intersects is not None:
            area = shapely.geometry.shape(intersects)
        start = end = None
        if date_range is not None:
            if len(date_range) != 2:
                raise ValueError(f"date_range must be (start, end), got {date_range!r}")
            start = None if date_range[0] is None else parse_instant(date_range[0])
            end = None if date_range[1] is None else parse_instant(date_range[1], end_of_day=True)
        return cls(area, start, end, frozenset(collections) if collections else None)

    def matches(self, item: Mapping[str, Any], collection: str | None) -> bool:
        """Whether ``item`` (whose collection is ``collection``) passes every filter."""
        if self.collections is not None and collection not in self.collections:
            return False
        if self.area is not None and not self._in_area(item):
            return False
        if self.start is not None or self.end is not None:
            first, last = _item_interval(item)
            if self.start is not None and last < self.start:
                return False
            if self.end is not None and first > self.end:
                return False
        return True

    def _in_area(self, item: Mapping[str, Any]) -> bool:
        # The footprint, not the item bbox: real catalogs ship stale or degenerate bboxes.
        geometry = item.get("geometry")
        if isinstance(geometry, Mapping):
            try:
                footprint = shapely.geometry.shape(geometry)
            except (ValueError, TypeError, AttributeError) as exc:
                raise StacItemError(
                    f"undecodable GeoJSON geometry ({exc})",
                    item_id=item.get("id"),
                    field="geometry",
                ) from exc
        else:
            # The converter refuses such an item anyway; saying so here keeps a spatial filter
            # from dropping it silently instead.
            raise StacItemError(
                f"expected a GeoJSON geometry object, got {type(geometry).__name__}; an item "
                "without a footprint cannot be found by a spatial query",
                item_id=item.get("id"),
                field="geometry",
            )
        assert self.area is not None
        return bool(self.area.intersects(footprint))


def _bbox_area(bbox: Sequence[float]) -> BaseGeometry:
    """A box, split in two when it crosses the antimeridian (``xmin > xmax``, RFC 7946)."""
    if len(bbox) == 6:  # 3D bbox
        bbox = [bbox[0], bbox[1], bbox[3], bbox[4]]
    if len(bbox) != 4:
        raise ValueError(f"bbox must have 4 (or 6) numbers, got {bbox!r}")
    xmin, ymin, xmax, ymax = (float(v) for v in bbox)
    if xmin > xmax:
        return shapely.union(
            shapely.box(xmin, ymin, 180, ymax), shapely.box(-180, ymin, xmax, ymax)
        )
    return shapely.box(xmin, ymin, xmax, ymax)


def _item_interval(item: Mapping[str, Any]) -> tuple[datetime, datetime]:
    props = item.get("properties") or {}
    item_id = item.get("id")
    instant = _parse_time(props.get("datetime"), item_id, "datetime")
    if instant is not None:
        return instant, instant
    start = _parse_time(props.get("start_datetime"), item_id, "start_datetime")
    end = _parse_time(props.get("end_datetime"), item_id, "end_datetime")
    if start is None and end is None:
        raise StacItemError(
            "no datetime and no start_datetime/end_datetime", item_id=item_id, field="properties"
        )
    return start or end, end or start  # type: ignore[return-value]


def _parse_time(value: Any, item_id: Any, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError as exc:
        raise StacItemError(
            f"not an RFC 3339 timestamp: {value!r}", item_id=item_id, field=f"properties.{name}"
        ) from exc
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def is_url(href: str) -> bool:
    return urlparse(href).scheme in ("http", "https")


def resolve_href(base: str, href: str) -> str:
    """``href`` made absolute against the document ``base`` it appears in.

    URLs resolve like a browser would; local paths against the base file's directory;
    ``file://`` URLs become plain paths so local catalogs stay local.
    """
    parsed = urlparse(href)
    if parsed.scheme == "file":
        return unquote(parsed.path)
    if parsed.scheme and len(parsed.scheme) > 1:  # a URL (a Windows drive letter is 1 char)
        return href
    if is_url(base):
        return urljoin(base, href)
    return os.path.normpath(Path(base).parent / href)


def _read_local(path: str, max_bytes: int) -> Any:
    """A local JSON document, refused unread when larger than ``max_bytes``."""
    size = Path(path).stat().st_size
    if size > max_bytes:
        raise ValueError(
            f"the document is larger than {max_bytes} bytes ({size} bytes; max_response_bytes)"
        )
    return json.loads(Path(path).read_bytes())


def _list_member(
    document: Mapping[str, Any], name: str, href: str, linked_from: str | None
) -> list[Any]:
    value = document.get(name)
    if value is None:
        return []
    if not isinstance(value, list):
        raise StaticCatalogError(
            f"{name!r} is not a list (got {type(value).__name__})",
            href=href,
            linked_from=linked_from,
        )
    return value


def _resolve_assets(item: dict[str, Any], href: str) -> dict[str, Any]:
    assets = item.get("assets")
    if isinstance(assets, Mapping):
        resolved = {}
        for key, asset in assets.items():
            if isinstance(asset, Mapping) and isinstance(asset.get("href"), str):
                asset = {**asset, "href": resolve_href(href, asset["href"])}
            resolved[key] = asset
        item = {**item, "assets": resolved}
    return item


async def walk_static_catalog(
    root: str | Path,
    client: JsonClient,
    *,
    item_filter: ItemFilter | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    max_items: int | None = None,
) -> AsyncIterator[dict[str, Any]]:
    """Yield every item below ``root`` that passes ``item_filter``, asset hrefs absolute.

    Items come in completion order (siblings are read concurrently), not document order.
    """
    async for item, _ in walk_static_items(
        root, client, item_filter=item_filter, concurrency=concurrency, max_items=max_items
    ):
        yield item


async def walk_static_items(
    root: str | Path,
    client: JsonClient,
    *,
    item_filter: ItemFilter | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    max_items: int | None = None,
) -> AsyncIterator[tuple[dict[str, Any], str]]:
    """:func:`walk_static_catalog`, each item with the document it was read from
    (a local path or a redacted URL), so that an error about the item can name it."""
    if concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, got {concurrency}")
    root_href = str(root)
    if not is_url(root_href) and "://" not in root_href:
        root_href = os.path.normpath(Path(root_href).absolute())
    item_filter = item_filter or ItemFilter()
    todo: asyncio.Queue[tuple[str, str | None, str | None]] = asyncio.Queue()
    found: asyncio.Queue[Any] = asyncio.Queue(maxsize=max(256, concurrency * 4))
    visited = {root_href}
    todo.put_nowait((root_href, None, None))

    async def read(href: str, linked_from: str | None) -> Any:
        try:
            if is_url(href):
                return await client.get(href)
            if "://" in href:
                raise StaticCatalogError(
                    "only local paths and http(s) URLs are supported",
                    href=href,
                    linked_from=linked_from,
                )
            return await asyncio.to_thread(_read_local, href, client.max_response_bytes)
        except StaticCatalogError:
            raise
        except (OSError, ValueError, RecursionError, StacApiError) as exc:
            raise StaticCatalogError(str(exc), href=href, linked_from=linked_from) from exc

    async def visit(href: str, linked_from: str | None, collection: str | None) -> None:
        document = await read(href, linked_from)
        if not isinstance(document, Mapping):
            raise StaticCatalogError("not a JSON object", href=href, linked_from=linked_from)
        kind = document.get("type")
        if kind == "Feature":
            await emit(dict(document), href, collection)
            return
        if kind == "FeatureCollection":
            features = _list_member(document, "features", href, linked_from)
            for number, feature in enumerate(features, start=1):
                if not isinstance(feature, Mapping):
                    raise StaticCatalogError(
                        f"feature {number} is not a JSON object (got {type(feature).__name__})",
                        href=href,
                        linked_from=linked_from,
                    )
                await emit(dict(feature), href, collection)
            return
        if kind == "Collection":
            collection = str(document.get("id"))
        for link in _list_member(document, "links", href, linked_from):
            if not isinstance(link, Mapping) or link.get("rel") not in _FOLLOWED_RELS:
                continue
            if not isinstance(link.get("href"), str) or not link["href"]:
                raise StaticCatalogError(
                    f"a {link['rel']!r} link without an href string ({link.get('href')!r})",
                    href=href,
                    linked_from=linked_from,
                )
            target = resolve_href(href, link["href"])
            if target not in visited:
                visited.add(target)
                todo.put_nowait((target, href, collection))

    async def emit(item: dict[str, Any], href: str, collection: str | None) -> None:
        item_collection = item.get("collection") or collection
        try:
            wanted = item_filter.matches(item, item_collection)
        except StacItemError as exc:
            exc.source = redact_url(href)
            raise
        if wanted:
            if item_collection and not item.get("collection"):
                item["collection"] = item_collection
            await found.put((_resolve_assets(item, href), redact_url(href)))

    async def worker() -> None:
        while True:
            href, linked_from, collection = await todo.get()
            try:
                await visit(href, linked_from, collection)
            except Exception as exc:  # handed to the consumer, which re-raises it
                await found.put(exc)
            finally:
                todo.task_done()

    async def finish() -> None:
        await todo.join()
        await found.put(_DONE)

    tasks = [asyncio.create_task(worker()) for _ in range(concurrency)]
    tasks.append(asyncio.create_task(finish()))
    yielded = 0
    try:
        while True:
            entry = await found.get()
            if entry is _DONE:
                return
            if isinstance(entry, BaseException):
                raise entry
            yield entry
            yielded += 1
            if max_items is not None and yielded >= max_items:
                return
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
