"""Hostile STAC data: broken pages, paging loops, huge pages and items missing their parts.

Every page comes over real HTTP from :class:`HostileStac` on 127.0.0.1, and every item is a
copy of the demo catalog's real item with one field changed, so the client, the converter
and the builder run exactly as they do against a real catalog. Each case ends in one of the
two outcomes the README ("What happens to bad records") promises: a typed error naming the
page (redacted URL), the item and the field — or a documented skip that is counted.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from servers.hostile_stac import HostileStac, Page

import rasteret_assets
from rasteret_assets.ingest.stac.band_map import BandMapError
from rasteret_assets.ingest.stac.builder import StacCollectionBuilder
from rasteret_assets.ingest.stac.http import JsonClient, ResponseTooLargeError, StacApiError
from rasteret_assets.ingest.stac.items import StacItemError
from rasteret_assets.ingest.stac.search import PagingLoopError
from rasteret_assets.ingest.stac.static_catalog import (
    ItemFilter,
    StaticCatalogError,
    walk_static_catalog,
)
from rasteret_assets.ingest.steps import stac_month
from rasteret_assets.storage import RetryPolicy

DEMO = Path(rasteret_assets.__file__).parent / "demo" / "catalog" / "items"
DEMO_ITEM = DEMO / "DEMO_T33UVP_20240108" / "DEMO_T33UVP_20240108.json"
FAST_RETRY = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.02)
BANDS = {"red": "red", "nir": "nir"}
JANUARY = (datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 2, 1, tzinfo=UTC))


async def collect(tables: AsyncIterator[pa.Table]) -> pa.Table | None:
    """One table of what a month scan yields (``None`` for none)."""
    parts = [t async for t in tables]
    return pa.concat_tables(parts) if parts else None


MB = 1024 * 1024


@pytest.fixture(scope="module")
def hostile_session() -> Iterator[HostileStac]:
    server = HostileStac().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def server(hostile_session: HostileStac) -> Iterator[HostileStac]:
    hostile_session.reset()
    yield hostile_session
    hostile_session.reset()


def item(n: int, change: Callable[[dict[str, Any]], object] | None = None) -> dict[str, Any]:
    """The demo item as item ``n`` (its own id and day in January), hrefs made absolute."""
    value = copy.deepcopy(json.loads(DEMO_ITEM.read_text()))
    value["id"] = f"HOSTILE_{n:03d}"
    value["properties"]["datetime"] = f"2024-01-{n % 28 + 1:02d}T10:20:00Z"
    for key, asset in value["assets"].items():
        asset["href"] = f"https://cogs.example.com/{value['id']}/{key}.tif"
    if change is not None:
        change(value)
    return value


def page(items: list[Any], next_href: str | None = None, **extra: Any) -> dict[str, Any]:
    links = [{"rel": "next", "href": next_href, "type": "application/geo+json"}]
    return {
        "type": "FeatureCollection",
        "features": items,
        "links": links if next_href else [],
        **extra,
    }


def builder(server: HostileStac, **kwargs: Any) -> StacCollectionBuilder:
    return StacCollectionBuilder(
        data_source="hostile",
        stac_api=server.url,
        stac_collection="demo-scenes",
        band_map=BANDS,
        retry=FAST_RETRY,
        **kwargs,
    )


def search(built: StacCollectionBuilder) -> Any:
    return asyncio.run(built.search_records(date_range=("2024-01-01", "2024-01-31")))


def two_pages(server: HostileStac, second: Any) -> None:
    """``/search`` holds items 1-3 and links to ``/search/2``, which answers ``second``."""
    server.route("/search", Page(body=page([item(1), item(2), item(3)], "/search/2?token=s3cr3t")))
    server.route("/search/2", Page(body=second) if not isinstance(second, Page) else second)


# -- malformed pages ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b'{"type": "FeatureCollection", "features": [{"id": "cut', "not JSON"),
        (b"<html><body>502 Bad Gateway</body></html>", "not JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b"\xff\xfe{}", "not JSON"),
        (json.dumps([item(4)]).encode(), "is not a JSON object"),
        (json.dumps({"type": "FeatureCollection", "features": {"a": 1}}).encode(), "'features'"),
        (json.dumps({"type": "FeatureCollection", "features": 5}).encode(), "'features'"),
        (json.dumps(page([item(4)]) | {"links": "next"}).encode(), "'links'"),
    ],
    ids=[
        "truncated",
        "html",
        "deep",
        "bad-utf8",
        "array",
        "features-object",
        "features-number",
        "links-string",
    ],
)
def test_malformed_page_is_an_error_naming_the_page(
    server: HostileStac, body: bytes, fragment: str
) -> None:
    two_pages(server, Page(body=body))
    with pytest.raises(StacApiError) as caught:
        search(builder(server))
    message = str(caught.value)
    assert fragment in message and "search page 2" in message
    assert caught.value.url == f"{server.url}/search/2"
    assert "s3cr3t" not in message  # the paging token is a query parameter: redacted
    assert server.hits("/search/2") == 1  # a malformed answer is not weather: no retry


@pytest.mark.parametrize(
    ("link", "fragment"),
    [
        ({"rel": "next", "href": "/search/2", "method": "DELETE"}, "method 'DELETE'"),
        ({"rel": "next", "href": "/search/2", "method": "POST", "body": [1]}, "'body'"),
        ({"rel": "next", "href": "/search/2", "headers": "x"}, "'headers'"),
        ({"rel": "next", "href": 7}, "'href'"),
    ],
    ids=["method", "body", "headers", "href"],
)
def test_malformed_next_link_is_an_error(
    server: HostileStac, link: dict[str, Any], fragment: str
) -> None:
    server.route("/search", Page(body=page([item(1)]) | {"links": [link]}))
    server.route("/search/2", Page(body=page([item(2)])))
    with pytest.raises(StacApiError, match="next link") as caught:
        search(builder(server))
    assert fragment in str(caught.value) and "search page 1" in str(caught.value)
    assert server.hits("/search/2") == 0


# -- paging loops ------------------------------------------------------------------------


def test_next_link_back_to_an_earlier_page_stops_with_an_error(server: HostileStac) -> None:
    server.route("/search", Page(body=page([item(1)], "/search/2")))
    server.route("/search/2", Page(body=page([item(2)], "/search/3")))
    server.route("/search/3", Page(body=page([item(3)], "/search/2")))
    with pytest.raises(PagingLoopError, match="repeats an earlier request") as caught:
        search(builder(server))
    assert "page 4" in str(caught.value)
    assert (server.hits("/search/2"), server.hits("/search/3")) == (1, 1)


def test_new_tokens_for_the_same_items_stop_with_an_error(server: HostileStac) -> None:
    """A server that mints a fresh token per page but serves the same items forever: no two
    requests repeat, yet no page brings anything new."""

    def endless(query: Mapping[str, str]) -> dict[str, Any]:
        token = int(query.get("token", "0"))
        return page([item(1), item(2)], f"/search?token={token + 1}")

    server.route("/search", Page(body=endless))
    with pytest.raises(PagingLoopError, match="no new item") as caught:
        search(builder(server))
    assert server.hits("/search") == 4  # page 1, then three pages of nothing new
    assert "token=" not in str(caught.value)  # the paging token is redacted


def test_duplicate_ids_across_pages_are_dropped_and_counted(
    server: HostileStac, caplog: pytest.LogCaptureFixture
) -> None:
    # A catalog updated while paging shifts its pages: item 3 comes again on page 2.
    two_pages(server, page([item(3), item(4)]))
    built = builder(server)
    with caplog.at_level(logging.INFO, logger="rasteret_assets.ingest"):
        records = search(built)
    assert records.column("id").to_pylist() == [f"HOSTILE_{n:03d}" for n in (1, 2, 3, 4)]
    counts = built.item_counts
    assert counts is not None
    assert (counts.items_read, counts.duplicates_dropped) == (4, 1)
    assert counts.as_metadata()["duplicate_items_dropped"] == 1
    assert any("HOSTILE_003" in r.getMessage() for r in caplog.records if r.levelname == "WARNING")


# -- enormous pages ----------------------------------------------------------------------


def huge_page(*, announce_length: bool) -> Page:
    """A valid 50 MB FeatureCollection: the same item, 20,000 times."""
    one = json.dumps(item(5)).encode()
    repeat = 50 * MB // (len(one) + 1)
    return Page(
        prefix=b'{"type": "FeatureCollection", "links": [], "features": [' + one,
        chunk=b"," + one,
        repeat=repeat,
        suffix=b"]}",
        announce_length=announce_length,
    )


@pytest.mark.parametrize("announce_length", [True, False], ids=["content-length", "chunked"])
def test_enormous_page_is_refused_at_the_size_limit(
    server: HostileStac, announce_length: bool
) -> None:
    two_pages(server, huge_page(announce_length=announce_length))
    with pytest.raises(ResponseTooLargeError) as caught:
        search(builder(server, max_response_bytes=2 * MB))
    message = str(caught.value)
    assert "search page 2" in message and "2097152 bytes" in message
    assert "max_response_bytes" in message
    # The client stopped reading: far less than the page went out (socket buffers aside).
    assert server.bytes_sent.get("/search/2", 0) < 20 * MB


def test_default_size_limit_bounds_a_50_mb_page(server: HostileStac) -> None:
    two_pages(server, huge_page(announce_length=True))
    with pytest.raises(ResponseTooLargeError, match="search page 2"):
        search(builder(server))


# -- items missing their parts -----------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field", "fragment"),
    [
        (lambda i: i.pop("geometry"), "geometry", "GeoJSON geometry"),
        (lambda i: i.update(geometry={"type": "Polygon"}), "geometry", "non-empty"),
        (lambda i: i["properties"].pop("datetime"), "properties.datetime", "datetime is null"),
        (
            lambda i: i["properties"].update(datetime={"value": "2024-01-05"}),
            "properties.datetime",
            "expected a string",
        ),
        (lambda i: i.update(assets=["red.tif"]), "assets", "must be an object"),
        (lambda i: i["assets"]["red"].update(href=["a.tif"]), "assets.red.href", "no href"),
    ],
    ids=["no-geometry", "bad-geometry", "no-datetime", "datetime-object", "assets-list", "href"],
)
def test_bad_item_is_an_error_naming_item_field_and_page(
    server: HostileStac, change: Callable[[dict[str, Any]], object], field: str, fragment: str
) -> None:
    two_pages(server, page([item(4), item(5, change)]))
    with pytest.raises(StacItemError) as caught:
        search(builder(server))
    error = caught.value
    assert (error.item_id, error.field) == ("HOSTILE_005", field)
    assert error.source == f"search page 2 at {server.url}/search/2"
    message = str(error)
    assert fragment in message and "HOSTILE_005" in message and "search page 2" in message
    assert "s3cr3t" not in message


@pytest.mark.parametrize(
    ("bad", "fragment"),
    [("not an item", "expected a JSON object"), ({"type": "Feature"}, "id must be")],
    ids=["string", "no-id"],
)
def test_item_without_id_is_named_by_its_position(
    server: HostileStac, bad: Any, fragment: str
) -> None:
    two_pages(server, page([item(4), bad]))
    with pytest.raises(StacItemError, match=fragment) as caught:
        search(builder(server))
    assert caught.value.item_id is None
    assert "item 2 of search page 2" in str(caught.value)


def test_items_without_band_assets_are_kept_and_counted(
    server: HostileStac, caplog: pytest.LogCaptureFixture
) -> None:
    no_assets = item(4, lambda i: i.pop("assets"))
    empty = item(5, lambda i: i.update(assets={}))
    only_thumbnail = item(6, lambda i: i.update(assets={"thumbnail": {"href": "t.png"}}))
    two_pages(server, page([no_assets, empty, only_thumbnail, item(7)]))
    built = builder(server)
    with caplog.at_level(logging.WARNING, logger="rasteret_assets.ingest"):
        table = asyncio.run(collect(stac_month(built, *JANUARY)))
    assert table is not None
    rows = {r["id"]: r["assets"] for r in table.select(["id", "assets"]).to_pylist()}
    assert len(rows) == 7
    assert all(rows[f"HOSTILE_{n:03d}"] == {"red": None, "nir": None} for n in (4, 5, 6))
    assert rows["HOSTILE_007"]["red"]["href"].endswith("HOSTILE_007/red.tif")
    counts = built.item_counts
    assert counts is not None
    assert counts.as_metadata() == {
        "items_read": 7,
        "duplicate_items_dropped": 0,
        "items_without_band_assets": 3,
    }
    warning = " ".join(r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    assert "3 item(s) without any of the band assets kept" in warning
    assert "HOSTILE_004" in warning


def test_a_search_where_no_item_has_the_bands_is_a_band_map_error(server: HostileStac) -> None:
    server.route("/search", Page(body=page([item(1, lambda i: i.update(assets={}))])))
    built = builder(server)
    with pytest.raises(BandMapError, match="Asset keys present: <none>"):
        search(built)
    assert built.item_counts is not None and built.item_counts.without_band_assets == 1


# -- static catalogs ---------------------------------------------------------------------


def catalog(links: list[tuple[str, str]]) -> dict[str, Any]:
    return {
        "type": "Catalog",
        "id": "c",
        "description": "d",
        "stac_version": "1.0.0",
        "links": [{"rel": rel, "href": href} for rel, href in links],
    }


async def walk(root: str, client_kwargs: Mapping[str, Any] | None = None, **kwargs: Any) -> list:
    async with JsonClient(retry=FAST_RETRY, **(client_kwargs or {})) as client:
        return [i async for i in walk_static_catalog(root, client, **kwargs)]


def test_static_child_loop_terminates_with_each_item_once(server: HostileStac) -> None:
    root = server.route("/root.json", Page(body=catalog([("child", "a.json")])))
    server.route("/a.json", Page(body=catalog([("child", "b.json"), ("item", "i1.json")])))
    server.route("/b.json", Page(body=catalog([("child", "root.json"), ("child", "a.json")])))
    server.route("/i1.json", Page(body=item(1)))
    items = asyncio.run(walk(root))
    assert [i["id"] for i in items] == ["HOSTILE_001"]
    assert all(server.hits(p) == 1 for p in ("/root.json", "/a.json", "/b.json"))


def test_static_malformed_document_names_it_and_its_parent(server: HostileStac) -> None:
    root = server.route("/root.json", Page(body=catalog([("item", "i1.json")])))
    server.route("/i1.json", Page(body=b'{"type": "Feature", "id": '))
    with pytest.raises(StaticCatalogError, match="not JSON") as caught:
        asyncio.run(walk(root))
    assert caught.value.href == f"{server.url}/i1.json"
    assert caught.value.linked_from == root


@pytest.mark.parametrize(
    ("document", "fragment"),
    [
        (catalog([]) | {"links": "i1.json"}, "'links'"),
        (catalog([]) | {"links": [{"rel": "item"}]}, "without an href"),
        ({"type": "FeatureCollection", "features": ["x"]}, "feature 1"),
    ],
    ids=["links-string", "link-without-href", "feature-string"],
)
def test_static_malformed_structure_is_an_error(
    server: HostileStac, document: dict[str, Any], fragment: str
) -> None:
    root = server.route("/root.json", Page(body=document))
    with pytest.raises(StaticCatalogError) as caught:
        asyncio.run(walk(root))
    assert fragment in str(caught.value) and caught.value.href == root


def test_static_item_without_geometry_is_an_error_under_a_bbox_filter(tmp_path: Path) -> None:
    (tmp_path / "catalog.json").write_text(json.dumps(catalog([("item", "i1.json")])))
    (tmp_path / "i1.json").write_text(json.dumps(item(1, lambda i: i.pop("geometry"))))
    area = ItemFilter.build(bbox=(13.0, 48.0, 14.0, 49.0))
    with pytest.raises(StacItemError) as caught:
        asyncio.run(walk(str(tmp_path / "catalog.json"), item_filter=area))
    assert (caught.value.item_id, caught.value.field) == ("HOSTILE_001", "geometry")
    assert caught.value.source == str(tmp_path / "i1.json")


def test_static_document_over_the_size_limit_is_refused(
    server: HostileStac, tmp_path: Path
) -> None:
    big = catalog([]) | {"description": "x" * 5000}
    remote = server.route("/big.json", Page(body=big))
    with pytest.raises(StaticCatalogError, match="larger than 4096 bytes"):
        asyncio.run(walk(remote, {"max_response_bytes": 4096}))
    local = tmp_path / "big.json"
    local.write_text(json.dumps(big))
    with pytest.raises(StaticCatalogError, match="larger than 4096 bytes"):
        asyncio.run(walk(str(local), {"max_response_bytes": 4096}))
