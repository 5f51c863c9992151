"""STAC API item search, streamed page by page.

Parameters are formatted by pystac-client's ``ItemSearch`` (offline, no request sent), so
``bbox``, ``datetime`` ranges (``"2024-01"`` → the whole month), ``intersects`` (GeoJSON or
any ``__geo_interface__``), ``query`` and CQL2 ``filter`` mean exactly what they mean for
pystac-client users. The paging itself is ours, on aiohttp, because pystac-client's pager is
synchronous and retries a failed page only for connection errors, never for a 503: here
each page is one :class:`~rasteret_assets.ingest.stac_http.JsonClient` request, retried on
its own, and pages are yielded as they arrive so a caller can convert and drop them.

``next`` links are followed as the STAC API spec says: ``method`` (GET by default),
``body`` (replacing the previous body, or merged into it when ``merge`` is true) and
``headers``. Paging always terminates, with :class:`PagingLoopError` when the server's
paging is broken:

* a ``next`` link that repeats an earlier request (same method, URL and body) — a link back
  to an earlier page;
* :data:`MAX_STALLED_PAGES` pages in a row that bring no item id not seen before — a server
  minting a fresh token for the same page forever, which no request comparison can catch.
  One such page alone is legitimate (a catalog updated while paging shifts its pages; the
  repeated items are dropped and counted by :mod:`.stac_items`).

A page that is not a JSON object, whose ``features`` or ``links`` are not lists, or whose
``next`` link is malformed (a method other than GET/POST, a ``body`` or ``headers`` that are
not objects, an ``href`` that is not a string) is a :class:`StacApiError` naming the page:
guessing would silently end the search early or send a request the server never described.

Conformance is checked before searching: an API that does not advertise the ``query`` or
``filter`` extension may ignore the parameter and return *unfiltered* results (rustac's
in-memory server does exactly that), so such a search is refused with
:class:`UnsupportedSearchError` instead of quietly indexing the wrong items.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from urllib.parse import urlencode, urljoin

import cql2
from pystac_client.conformance import ConformanceClasses
from pystac_client.item_search import ItemSearch

from rasteret_assets.ingest.stac.http import JsonClient, StacApiError
from rasteret_assets.storage import redact_url

logger = logging.getLogger(__name__)

DEFAULT_PAGE_SIZE = 100
#: Consecutive non-empty pages without a new item id after which paging is a loop.
MAX_STALLED_PAGES = 3
_NEXT_METHODS = ("GET", "POST")

#: OGC API Features Part 3 names filtering without the STAC prefix.
_OGC_FILTER = re.compile(r"^http://www\.opengis\.net/spec/ogcapi-features-3/1\.0/conf/filter$")

BBox = Sequence[float]
DateBound = str | date | datetime


class UnsupportedSearchError(StacApiError, ValueError):
    """The search uses an extension the API does not advertise, or bad parameters."""


class PagingLoopError(StacApiError):
    """The server's ``next`` links go round in circles; the search stopped instead."""


@dataclass(frozen=True)
class StacApi:
    """What a STAC API's landing page says about searching it."""

    url: str
    search_url: str
    search_methods: frozenset[str]
    conforms_to: tuple[str, ...]

    def supports(self, extension: str) -> bool:
        """Whether the API advertises ``"query"`` or ``"filter"`` for item search."""
        if extension == "filter":
            patterns = [ConformanceClasses.FILTER.pattern, _OGC_FILTER]
        elif extension == "query":
            patterns = [ConformanceClasses.QUERY.pattern]
        else:
            raise ValueError(f"unknown search extension {extension!r}")
        return any(p.fullmatch(uri) for uri in self.conforms_to for p in patterns)

    @property
    def method(self) -> str:
        """POST when offered: bodies carry CQL2 JSON and long geometries that URLs cannot."""
        return "POST" if "POST" in self.search_methods or not self.search_methods else "GET"


@dataclass(frozen=True)
class SearchPage:
    """One page of results: its 1-based ``number``, the item dicts, ``numberMatched``."""

    number: int
    items: list[dict[str, Any]]
    matched: int | None
    url: str


async def open_api(client: JsonClient, url: str) -> StacApi:
    """Read the landing page (and ``/conformance`` when the page lacks ``conformsTo``)."""
    root = await client.get(url)
    if not isinstance(root, Mapping):
        raise StacApiError(f"{url} is not a STAC API landing page (not a JSON object)", url=url)
    links = [link for link in root.get("links", []) if isinstance(link, Mapping)]
    search_links = [link for link in links if link.get("rel") == "search"]
    if not search_links:
        raise StacApiError(
            f"{url} has no rel='search' link: it is not a STAC API with item search "
            "(for a static catalog pass static_catalog=True)",
            url=url,
        )
    search_url = urljoin(url, str(search_links[0]["href"]))
    methods = frozenset(str(link.get("method", "GET")).upper() for link in search_links)
    conforms = root.get("conformsTo")
    if conforms is None:
        conformance = next((lk for lk in links if lk.get("rel") == "conformance"), None)
        href = (
            urljoin(url, str(conformance["href"])) if conformance else urljoin(url, "conformance")
        )
        document = await client.get(href)
        conforms = document.get("conformsTo", []) if isinstance(document, Mapping) else []
    return StacApi(url, search_url, methods, tuple(str(c) for c in conforms))


def search_parameters(
    api: StacApi,
    *,
    collections: Sequence[str] | None = None,
    bbox: BBox | None = None,
    date_range: tuple[DateBound | None, DateBound | None] | None = None,
    query: Mapping[str, Any] | None = None,
    filter: Mapping[str, Any] | str | None = None,
    intersects: Any | None = None,
    ids: Sequence[str] | None = None,
    limit: int = DEFAULT_PAGE_SIZE,
    require_conformance: bool = True,
) -> dict[str, Any]:
    """The first request's parameters (a POST body, or GET query parameters).

    ``date_range`` is inclusive: a bare end date covers that whole day. A string ``filter``
    is sent as ``cql2-text``, a mapping as ``cql2-json``.
    """
    if bbox is not None and intersects is not None:
        raise UnsupportedSearchError(
            "pass bbox or intersects, not both (STAC API item search forbids the combination)",
            url=api.search_url,
        )
    if require_conformance:
        for name, value in (("query", query), ("filter", filter)):
            if value and not api.supports(name):
                raise UnsupportedSearchError(
                    f"the STAC API at {api.url} does not advertise the item-search {name!r} "
                    f"extension, so it may ignore {name}= and return unfiltered items. "
                    f"It conforms to: {', '.join(api.conforms_to) or '<nothing>'}",
                    url=api.url,
                )
    try:
        search = ItemSearch(
            api.search_url,
            method=api.method,
            limit=limit,
            collections=list(collections) if collections else None,
            bbox=list(bbox) if bbox is not None else None,
            datetime=_datetime_param(date_range),
            query=dict(query) if query else None,
            filter=_filter_for(api, filter),
            filter_lang=_filter_lang(_filter_for(api, filter)),
            intersects=intersects,
            ids=list(ids) if ids else None,
        )
    except Exception as exc:  # pystac-client raises bare Exception for bad input
        raise UnsupportedSearchError(
            f"invalid search parameters: {exc}", url=api.search_url
        ) from exc
    return dict(search.get_parameters())


def _datetime_param(
    date_range: tuple[DateBound | None, DateBound | None] | None,
) -> list[str | datetime | None] | None:
    if date_range is None:
        return None
    if len(date_range) != 2:
        raise ValueError(f"date_range must be (start, end), got {date_range!r}")
    bounds: list[str | datetime | None] = []
    for bound in date_range:
        if isinstance(bound, datetime) or bound is None:
            bounds.append(bound)
        elif isinstance(bound, date):
            bounds.append(bound.isoformat())
        else:
            bounds.append(str(bound))
    return bounds


def _filter_for(api: StacApi, value: Mapping[str, Any] | str | None) -> dict[str, Any] | str | None:
    """The filter as sent: POST bodies carry CQL2 JSON (servers such as stac-fastapi-pgstac
    reject ``cql2-text`` there), so a text filter is parsed into JSON for POST."""
    if not value:
        return None
    if isinstance(value, Mapping):
        return dict(value)
    if api.method != "POST":
        return value
    try:
        return cql2.parse_text(value).to_json()
    except (ValueError, cql2.ParseError) as exc:
        raise UnsupportedSearchError(
            f"invalid CQL2 text filter {value!r}: {exc}", url=api.url
        ) from exc


def _filter_lang(value: Mapping[str, Any] | str | None) -> str | None:
    if not value:
        return None
    return "cql2-text" if isinstance(value, str) else "cql2-json"


async def iter_search_pages(
    client: JsonClient,
    api: StacApi,
    parameters: Mapping[str, Any],
    *,
    max_items: int | None = None,
) -> AsyncIterator[SearchPage]:
    """Yield pages until the last one, an empty one, or ``max_items`` items."""
    method, url = api.method, api.search_url
    body: dict[str, Any] | None = dict(parameters) if method == "POST" else None
    if method == "GET":
        url = _with_query(url, parameters)
    headers: dict[str, str] = {}
    requests_sent: set[str] = set()
    loop = _LoopGuard()
    returned = 0
    number = 0
    while True:
        number += 1
        key = json.dumps([method, url, body], sort_keys=True, default=str)
        if key in requests_sent:
            raise PagingLoopError(
                f"page {number}: the server's next link repeats an earlier request "
                f"({method} {redact_url(url)}); its paging is broken, stopping instead of looping",
                url=url,
            )
        requests_sent.add(key)
        document = await _fetch_page(client, method, url, body, headers, number)
        items = _list_member(document, "features", number, url)
        logger.debug("search page %d: %d items", number, len(items))
        if max_items is not None and returned + len(items) > max_items:
            items = items[: max_items - returned]
        returned += len(items)
        loop.check(items, number, url)
        matched = document.get("numberMatched")
        if matched is None:  # STAC API < 1.0 used the context extension
            context = document.get("context")
            matched = context.get("matched") if isinstance(context, Mapping) else None
        if items:
            yield SearchPage(number, items, matched, url)
        if not items or (max_items is not None and returned >= max_items):
            return
        link = _next_link(document, number, url)
        if link is None:
            return
        try:
            method, url, body, headers = next_request(link, url, body, headers)
        except ValueError as exc:
            raise StacApiError(f"search page {number}: {exc}", url=url) from None


class _LoopGuard:
    """Counts consecutive pages that bring no new item id (see the module docstring).

    Ids are kept as 64-bit hashes, 8 bytes of payload each: a page of ids that merely
    collide with earlier ones would have to do so :data:`MAX_STALLED_PAGES` times in a row.
    """

    def __init__(self) -> None:
        self.seen: set[int] = set()
        self.stalled = 0

    def check(self, items: Sequence[Any], number: int, url: str) -> None:
        if not items:
            return
        ids = {
            hash(i["id"]) for i in items if isinstance(i, Mapping) and isinstance(i.get("id"), str)
        }
        new = ids - self.seen
        self.seen |= new
        self.stalled = 0 if new else self.stalled + 1
        if self.stalled >= MAX_STALLED_PAGES:
            raise PagingLoopError(
                f"pages {number - self.stalled + 1}-{number} brought no new item (every id "
                f"was on an earlier page): the server's paging loops, e.g. by minting new "
                f"tokens for the same page; stopping at {redact_url(url)}",
                url=url,
            )


async def _fetch_page(
    client: JsonClient,
    method: str,
    url: str,
    body: Mapping[str, Any] | None,
    headers: Mapping[str, str],
    number: int,
) -> Mapping[str, Any]:
    try:
        document = await client.request(method, url, body=body, headers=headers)
    except StacApiError as exc:
        # The same class (a too-large page stays ResponseTooLargeError), with the page number.
        raise type(exc)(
            f"search page {number}: {exc}", url=url, status=exc.status, attempts=exc.attempts
        ) from exc
    if not isinstance(document, Mapping):
        raise StacApiError(
            f"search page {number} is not a JSON object (got {type(document).__name__})",
            url=url,
        )
    return document


def _list_member(document: Mapping[str, Any], name: str, number: int, url: str) -> list[Any]:
    value = document.get(name)
    if value is None:
        return []
    if not isinstance(value, list):
        raise StacApiError(
            f"search page {number}: {name!r} is not a list (got {type(value).__name__})",
            url=url,
        )
    return value


def _next_link(document: Mapping[str, Any], number: int, url: str) -> Mapping[str, Any] | None:
    for link in _list_member(document, "links", number, url):
        if isinstance(link, Mapping) and link.get("rel") == "next":
            return link
    return None


def next_request(
    link: Mapping[str, Any],
    current_url: str,
    current_body: dict[str, Any] | None,
    current_headers: dict[str, str],
) -> tuple[str, str, dict[str, Any] | None, dict[str, str]]:
    """``(method, url, body, headers)`` of the request a ``next`` link describes.

    STAC API paging: ``method`` defaults to GET (the href then carries everything); a POST
    link's ``body`` and ``headers`` replace the current ones, or with ``merge: true`` are
    merged over them (servers that only send a token rely on the merge). Raises
    ``ValueError`` for a link that describes no such request.
    """
    method = str(link.get("method", "GET")).upper()
    if method not in _NEXT_METHODS:
        raise ValueError(f"next link has method {method!r}; paging uses GET or POST")
    href = link.get("href")
    if not isinstance(href, str) or not href:
        raise ValueError(f"next link 'href' is not a URL string (got {href!r})")
    url = urljoin(current_url, href)
    merge = bool(link.get("merge", False))
    link_headers = {str(k): str(v) for k, v in _object_member(link, "headers").items()}
    headers = {**current_headers, **link_headers} if merge else link_headers
    if method == "POST":
        link_body = _object_member(link, "body")
        body = {**(current_body or {}), **link_body} if merge else link_body
        return method, url, body, headers
    return method, url, None, headers


def _object_member(link: Mapping[str, Any], name: str) -> dict[str, Any]:
    value = link.get(name)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"next link {name!r} is not an object (got {type(value).__name__})")
    return dict(value)


def _with_query(url: str, parameters: Mapping[str, Any]) -> str:
    query = urlencode({k: v for k, v in parameters.items() if v is not None})
    return f"{url}{'&' if '?' in url else '?'}{query}" if query else url
