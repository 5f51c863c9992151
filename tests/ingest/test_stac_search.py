"""Item search against a real STAC API (``rustac serve``) on 127.0.0.1.

Expected results are computed independently from the same stac-geoparquet file rustac
serves (shapely + pyarrow), so a test fails if the client drops, repeats or mis-filters a
single item. Transient failures come from :class:`StacProxy`, a real HTTP hop in front of
rustac that answers chosen requests with an error status.

rustac's memory backend advertises neither ``query`` nor ``filter`` (see
``tests/servers/rustac_server.py``): those tests check that the client refuses to send them
to such an API, and, with the check switched off, what goes over the wire.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import shapely
from servers.rustac_server import RustacServer
from servers.stac_proxy import Failure, StacProxy

from rasteret_assets.ingest.stac.band_map import BandMap
from rasteret_assets.ingest.stac.http import JsonClient, StacApiError
from rasteret_assets.ingest.stac.items import StacItemConverter, record_schema
from rasteret_assets.ingest.stac.search import (
    SearchPage,
    UnsupportedSearchError,
    iter_search_pages,
    next_request,
    open_api,
    search_parameters,
)
from rasteret_assets.storage import RetryPolicy

GEOPARQUET = (Path(__file__).parents[2] / ".." / "shared" / "fixtures" / "geoparquet").resolve()
FAST_RETRY = RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=0.05)
DENVER = (-105.5, 39.5, -105.0, 40.0)
SUMMER = ("2024-06-01", "2024-08-31")


def expected_ids(
    name: str,
    *,
    area: shapely.Geometry | None = None,
    start: str | None = None,
    end: str | None = None,
) -> set[str]:
    """Ids of the fixture file's items matching the filters (inclusive whole-day end)."""
    table = pq.read_table(GEOPARQUET / name, columns=["id", "datetime", "geometry"])
    ids = set()
    for row in table.to_pylist():
        if area is not None and not shapely.from_wkb(row["geometry"]).intersects(area):
            continue
        when = row["datetime"]
        if start and when < datetime.fromisoformat(start).replace(tzinfo=UTC):
            continue
        if end and when > datetime.fromisoformat(end + "T23:59:59.999999").replace(tzinfo=UTC):
            continue
        ids.add(row["id"])
    return ids


async def collect(url: str, *, max_items: int | None = None, **params: Any) -> list[SearchPage]:
    async with JsonClient(retry=FAST_RETRY) as client:
        api = await open_api(client, url)
        body = search_parameters(api, **params)
        return [p async for p in iter_search_pages(client, api, body, max_items=max_items)]


def ids_of(pages: Sequence[SearchPage]) -> list[str]:
    return [item["id"] for page in pages for item in page.items]


def search_bodies(proxy: StacProxy) -> list[tuple[Any, int]]:
    return [(r.body, r.status) for r in proxy.requests("/search") if r.method == "POST"]


def test_bbox_and_date_range_stream_several_pages(stac_proxy: StacProxy) -> None:
    want = expected_ids(
        "pc_sentinel-2-l2a_100.parquet", area=shapely.box(*DENVER), start=SUMMER[0], end=SUMMER[1]
    )
    pages = asyncio.run(
        collect(
            stac_proxy.url,
            collections=["sentinel-2-l2a"],
            bbox=DENVER,
            date_range=SUMMER,
            limit=10,
        )
    )
    got = ids_of(pages)
    assert len(got) == len(set(got)) and set(got) == want
    assert len(pages) == -(-len(want) // 10) >= 3
    assert [p.number for p in pages] == list(range(1, len(pages) + 1))
    assert all(len(p.items) <= 10 for p in pages)
    bodies = search_bodies(stac_proxy)
    assert len(bodies) == len(pages) and all(status == 200 for _, status in bodies)
    first = bodies[0][0]
    assert first["bbox"] == list(DENVER)
    assert first["datetime"] == "2024-06-01T00:00:00Z/2024-08-31T23:59:59Z"
    assert first["collections"] == ["sentinel-2-l2a"] and first["limit"] == 10


def test_pages_are_yielded_before_the_next_one_is_requested(stac_proxy: StacProxy) -> None:
    async def first_page_then_count() -> tuple[int, int]:
        async with JsonClient(retry=FAST_RETRY) as client:
            api = await open_api(client, stac_proxy.url)
            body = search_parameters(api, collections=["sentinel-2-l2a"], limit=5)
            pages = iter_search_pages(client, api, body)
            page = await anext(pages)
            sent = len(search_bodies(stac_proxy))
            await pages.aclose()
            return len(page.items), sent

    items, requests_so_far = asyncio.run(first_page_then_count())
    assert (items, requests_so_far) == (5, 1)


def test_intersects_point(rustac_server: RustacServer) -> None:
    point = {"type": "Point", "coordinates": [-105.2, 39.8]}
    want = expected_ids("pc_sentinel-2-l2a_100.parquet", area=shapely.geometry.shape(point))
    pages = asyncio.run(
        collect(rustac_server.url, collections=["sentinel-2-l2a"], intersects=point, limit=40)
    )
    assert set(ids_of(pages)) == want and len(ids_of(pages)) == len(want)
    assert 0 < len(want) < 100  # the point misses some footprints: the filter really filters


def test_intersects_accepts_geo_interface(rustac_server: RustacServer) -> None:
    area = shapely.box(-104.9, 40.3, -104.5, 40.6)
    want = expected_ids("pc_landsat-c2-l2_100.parquet", area=area)
    pages = asyncio.run(
        collect(rustac_server.url, collections=["landsat-c2-l2"], intersects=area, limit=100)
    )
    assert set(ids_of(pages)) == want


def test_date_range_end_day_is_inclusive(rustac_server: RustacServer) -> None:
    want = expected_ids("pc_sentinel-2-l2a_100.parquet", start="2024-07-01", end="2024-07-31")
    pages = asyncio.run(
        collect(
            rustac_server.url,
            collections=["sentinel-2-l2a"],
            date_range=("2024-07-01", "2024-07-31"),
        )
    )
    got = ids_of(pages)
    assert set(got) == want
    assert any("20240731" in i for i in got)  # an item of the last day is in


def test_max_items_stops_paging(stac_proxy: StacProxy) -> None:
    pages = asyncio.run(
        collect(stac_proxy.url, collections=["sentinel-2-l2a"], limit=10, max_items=15)
    )
    assert len(ids_of(pages)) == 15 and len(search_bodies(stac_proxy)) == 2


def test_transient_503_retries_only_that_page(stac_proxy: StacProxy) -> None:
    baseline = asyncio.run(collect(stac_proxy.url, collections=["sentinel-2-l2a"], limit=30))
    stac_proxy.reset()
    stac_proxy.fail(Failure(path="/search", nth=2, status=503, method="POST"))
    pages = asyncio.run(collect(stac_proxy.url, collections=["sentinel-2-l2a"], limit=30))
    assert ids_of(pages) == ids_of(baseline) and len(pages) == 4
    bodies = search_bodies(stac_proxy)
    assert [status for _, status in bodies] == [200, 503, 200, 200, 200]
    assert bodies[1][0] == bodies[2][0]  # the same page-2 request, sent again
    assert bodies[2][0].get("skip") == 30
    assert sum(1 for body, _ in bodies if "skip" not in body) == 1  # page 1 only once


def test_retries_exhausted_name_the_page(stac_proxy: StacProxy) -> None:
    stac_proxy.fail(Failure(path="/search", nth=3, status=502, times=100, method="POST"))
    with pytest.raises(StacApiError, match="search page 3") as info:
        asyncio.run(collect(stac_proxy.url, collections=["sentinel-2-l2a"], limit=10))
    assert info.value.attempts == FAST_RETRY.max_attempts and info.value.status == 502
    assert len(search_bodies(stac_proxy)) == 2 + FAST_RETRY.max_attempts


def test_server_rejection_is_not_retried_and_quotes_the_server(stac_proxy: StacProxy) -> None:
    with pytest.raises(StacApiError, match="HTTP 400") as info:
        asyncio.run(collect(stac_proxy.url, collections=["sentinel-2-l2a"], bbox=[1, 2, 3]))
    assert "Bbox" in str(info.value)  # rustac's own explanation
    assert info.value.attempts == 1 and len(search_bodies(stac_proxy)) == 1


@pytest.mark.parametrize(
    "params",
    [
        {"query": {"eo:cloud_cover": {"lt": 10}}},
        {"filter": {"op": "<", "args": [{"property": "eo:cloud_cover"}, 10]}},
        {"filter": "eo:cloud_cover < 10"},
    ],
)
def test_query_and_filter_refused_when_the_api_does_not_advertise_them(
    stac_proxy: StacProxy, params: dict[str, Any]
) -> None:
    with pytest.raises(UnsupportedSearchError, match="does not advertise"):
        asyncio.run(collect(stac_proxy.url, collections=["sentinel-2-l2a"], **params))
    assert search_bodies(stac_proxy) == []  # refused before any search request


def test_filter_and_query_go_over_the_wire_as_cql2_and_query(stac_proxy: StacProxy) -> None:
    cql2 = {"op": "<", "args": [{"property": "eo:cloud_cover"}, 10]}
    all_items = asyncio.run(collect(stac_proxy.url, collections=["sentinel-2-l2a"]))
    stac_proxy.reset()
    filtered = asyncio.run(
        collect(
            stac_proxy.url,
            collections=["sentinel-2-l2a"],
            filter=cql2,
            require_conformance=False,
        )
    )
    asyncio.run(
        collect(
            stac_proxy.url,
            collections=["sentinel-2-l2a"],
            filter="eo:cloud_cover < 10",
            query={"platform": {"eq": "Sentinel-2A"}},
            require_conformance=False,
        )
    )
    bodies = [body for body, _ in search_bodies(stac_proxy)]
    assert bodies[0]["filter"] == cql2 and bodies[0]["filter-lang"] == "cql2-json"
    # POST bodies carry CQL2 JSON: the text filter is parsed before it is sent.
    assert bodies[-1]["filter"] == {"op": "<", "args": [{"property": "eo:cloud_cover"}, 10.0]}
    assert bodies[-1]["filter-lang"] == "cql2-json"
    assert bodies[-1]["query"] == {"platform": {"eq": "Sentinel-2A"}}
    # Why the conformance check exists: the right answer is the clear scenes, but this
    # server does not evaluate the filter (it matches the unknown body fields instead).
    table = pq.read_table(
        GEOPARQUET / "pc_sentinel-2-l2a_100.parquet", columns=["id", "eo:cloud_cover"]
    )
    clear = {r["id"] for r in table.to_pylist() if r["eo:cloud_cover"] < 10}
    assert len(ids_of(all_items)) == 100 and 0 < len(clear) < 100
    assert set(ids_of(filtered)) != clear


def test_bbox_and_intersects_together_are_refused(rustac_server: RustacServer) -> None:
    with pytest.raises(UnsupportedSearchError, match="bbox or intersects"):
        asyncio.run(
            collect(
                rustac_server.url,
                bbox=DENVER,
                intersects={"type": "Point", "coordinates": [-105.2, 39.8]},
            )
        )


def test_a_static_catalog_url_is_not_an_api(range_server, stac_fixtures: Path) -> None:
    range_server.add_directory("/catalog/", stac_fixtures / "static-catalog" / "test-case-1")
    with pytest.raises(StacApiError, match="static_catalog=True"):
        asyncio.run(collect(range_server.url("/catalog/catalog.json")))


def test_mixed_collections_across_pages_keep_one_schema(
    rustac_mixed_server: RustacServer,
) -> None:
    """Real Earth Search pages (S1 GRD, S2 L1C/L2A/C1-L2A) and PC land cover in one search:
    properties appear, vanish and change type from page to page."""
    bands = BandMap({"B04": "red", "lulc": "data", "HH": "hh"})

    async def batches() -> list[pa.RecordBatch]:
        converter = StacItemConverter(bands)
        async with JsonClient(retry=FAST_RETRY) as client:
            api = await open_api(client, rustac_mixed_server.url)
            body = search_parameters(api, limit=3)
            return [
                converter.to_record_batch(page.items)
                async for page in iter_search_pages(client, api, body)
            ]

    result = asyncio.run(batches())
    assert len(result) == 8  # 24 items, 3 per page
    assert all(b.schema == record_schema(bands.codes) for b in result)
    table = pa.Table.from_batches(result)
    rows = {r["id"]: r for r in table.to_pylist()}
    assert len(rows) == 24
    assert rows["S2B_20EPT_20250731_0_L1C"]["eo:cloud_cover"] == 0.0  # an int in the JSON
    lulc = [r for r in rows.values() if r["collection"] == "io-lulc-annual-v02"]
    assert len(lulc) == 4 and all(r["datetime"] == r["start_datetime"] for r in lulc)
    assert all(r["assets"]["lulc"] is not None for r in lulc)
    grd = [r for r in rows.values() if r["collection"] == "sentinel-1-grd"]
    assert grd and all(r["assets"]["HH"] and r["eo:cloud_cover"] is None for r in grd)


def next_link(stac_fixtures: Path, name: str) -> dict[str, Any]:
    page = json.loads((stac_fixtures / name).read_text())
    return next(link for link in page["links"] if link["rel"] == "next")


def test_next_links_of_real_apis(stac_fixtures: Path) -> None:
    # Planetary Computer: POST, the body repeats the search and adds a token.
    link = next_link(stac_fixtures, "planetary-computer/search-page-1.json")
    method, url, body, _ = next_request(
        link, "https://planetarycomputer.microsoft.com/api/stac/v1/search", {"limit": 1}, {}
    )
    assert (method, url) == ("POST", "https://planetarycomputer.microsoft.com/api/stac/v1/search")
    assert body == link["body"] and body["token"].startswith("next:")
    # Planetary Computer collection items: GET, everything in the href.
    link = next_link(stac_fixtures, "planetary-computer/landsat-c2-l2_items_page_10.json")
    method, url, body, _ = next_request(link, "https://x/collections/landsat-c2-l2/items", None, {})
    assert (method, body) == ("GET", None) and "token=" in url
    # Earth Search: POST with merge false, so its body replaces ours.
    link = next_link(stac_fixtures, "earth-search/search_landsat-c2-l2_sentinel-2-l2a.json")
    _, _, body, _ = next_request(link, link["href"], {"limit": 2, "ids": ["x"]}, {})
    assert body == link["body"] and "ids" not in body


def test_merge_true_merges_body_and_headers() -> None:
    link = {
        "rel": "next",
        "href": "search",
        "method": "POST",
        "merge": True,
        "body": {"token": "t2"},
        "headers": {"X-Page": "2"},
    }
    method, url, body, headers = next_request(
        link, "http://api/v1/search", {"limit": 5, "token": "t1"}, {"Authorization": "a"}
    )
    assert (method, url) == ("POST", "http://api/v1/search")
    assert body == {"limit": 5, "token": "t2"}
    assert headers == {"Authorization": "a", "X-Page": "2"}


def test_get_only_api_is_searched_with_get(stac_proxy: StacProxy) -> None:
    """An API that only offers GET /search gets query parameters and follows GET next links.

    (rustac 0.9.18 answers GET searches with ``collections=`` or ``bbox=`` with a 500, so this
    searches by date alone: every collection of the server.)
    """

    async def run() -> list[SearchPage]:
        async with JsonClient(retry=FAST_RETRY) as client:
            api = replace(await open_api(client, stac_proxy.url), search_methods=frozenset({"GET"}))
            params = search_parameters(api, date_range=SUMMER, limit=25)
            return [p async for p in iter_search_pages(client, api, params)]

    pages = asyncio.run(run())
    want = expected_ids("pc_sentinel-2-l2a_100.parquet", start=SUMMER[0], end=SUMMER[1])
    want |= expected_ids("pc_landsat-c2-l2_100.parquet", start=SUMMER[0], end=SUMMER[1])
    assert set(ids_of(pages)) == want and len(ids_of(pages)) == len(want)
    requests = stac_proxy.requests("/search")
    assert {r.method for r in requests} == {"GET"} and len(requests) == len(pages) > 1
