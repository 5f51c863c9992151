"""Item search against stac-fastapi-pgstac, the server behind most production STAC APIs.

rustac's test server ignores ``query`` and ``filter`` (see ``test_stac_search.py``); pgstac
evaluates both in SQL and pages with opaque ``token`` values carried in a POST ``next``
link body, which is what Planetary Computer and Earth Search do. Every expected id set is
computed here, independently, from the same fixture JSON the server was loaded from
(:data:`servers.pgstac_server.FIXTURE_SETS`), with plain Python and shapely, so a dropped,
repeated or mis-filtered item fails the test.

The last tests add items through the transactions extension between two searches: the
pattern the Dagster sensors rely on to notice new acquisitions.
"""

from __future__ import annotations

import asyncio
import json
import math
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import shapely
from servers.pgstac_server import (
    FIXTURE_SETS,
    PgstacApi,
    collection_from_items,
    unique_collection_id,
)

from rasteret_assets.ingest.stac.builder import StacCollectionBuilder
from rasteret_assets.ingest.stac.http import JsonClient
from rasteret_assets.ingest.stac.search import (
    SearchPage,
    iter_search_pages,
    open_api,
    search_parameters,
)
from rasteret_assets.storage import RetryPolicy

STAC = (Path(__file__).parents[2] / ".." / "shared" / "fixtures" / "stac").resolve()
FAST_RETRY = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05)
#: Searches name the fixture collections so that items other tests add elsewhere never leak in.
FIXTURE_COLLECTIONS = [collection_id for collection_id, _, _ in FIXTURE_SETS]
#: Around Denver: the Earth Search Sentinel-2 tile 13TDE.
DENVER = (-105.5, 39.5, -105.0, 40.0)
TRANSACTION_ITEMS = STAC / "planetary-computer" / "sentinel-2-l2a_item-collection_2.json"

Item = dict[str, Any]
Predicate = Callable[[Item], bool]


def fixture_items() -> list[Item]:
    """Every item the server was loaded with, read straight from the fixture files."""
    items: list[Item] = []
    for collection_id, items_file, _ in FIXTURE_SETS:
        document = json.loads((STAC / items_file).read_text())
        members = document["features"] if isinstance(document, dict) else document
        items += [{**item, "collection": collection_id} for item in members]
    return items


def expected(predicate: Predicate) -> set[str]:
    """Ids of the fixture items ``predicate`` accepts; never empty, never everything, so
    each search really has something to filter."""
    items = fixture_items()
    ids = {item["id"] for item in items if predicate(item)}
    assert 0 < len(ids) < len(items), "the expectation must select a proper subset"
    return ids


def when(item: Mapping[str, Any]) -> datetime:
    return datetime.fromisoformat(item["properties"]["datetime"])


def footprint(item: Mapping[str, Any]) -> shapely.Geometry:
    return shapely.geometry.shape(item["geometry"])


def cloud(item: Mapping[str, Any]) -> float:
    return float(item["properties"]["eo:cloud_cover"])


async def collect(url: str, **params: Any) -> list[SearchPage]:
    """All pages of one search, through the project's own search client."""
    async with JsonClient(retry=FAST_RETRY) as client:
        api = await open_api(client, url)
        parameters = search_parameters(api, **params)
        return [page async for page in iter_search_pages(client, api, parameters)]


def search_ids(url: str, **params: Any) -> list[str]:
    return [item["id"] for page in asyncio.run(collect(url, **params)) for item in page.items]


def assert_once(ids: Sequence[str], want: set[str]) -> None:
    """``ids`` is exactly ``want``, with no item repeated."""
    assert len(ids) == len(set(ids)), f"repeated: {sorted(i for i in set(ids) if ids.count(i) > 1)}"
    assert set(ids) == want, f"missing {sorted(want - set(ids))}, extra {sorted(set(ids) - want)}"


def test_api_advertises_query_filter_and_transactions(pgstac_api: PgstacApi) -> None:
    async def conformance() -> tuple[bool, bool, tuple[str, ...]]:
        async with JsonClient(retry=FAST_RETRY) as client:
            api = await open_api(client, pgstac_api.url)
            return api.supports("query"), api.supports("filter"), api.conforms_to

    query, cql2, classes = asyncio.run(conformance())
    assert query and cql2
    assert any(c.endswith("/ogcapi-features/extensions/transaction") for c in classes)
    assert pgstac_api.pgstac_version.startswith("0.")


@pytest.mark.parametrize(
    ("query", "predicate"),
    [
        ({"eo:cloud_cover": {"lt": 20}}, lambda item: cloud(item) < 20),
        ({"eo:cloud_cover": {"gte": 20, "lte": 50}}, lambda item: 20 <= cloud(item) <= 50),
        # Earth Search writes "sentinel-2b", Planetary Computer "Sentinel-2B": eq is exact.
        (
            {"platform": {"eq": "sentinel-2b"}},
            lambda item: item["properties"]["platform"] == "sentinel-2b",
        ),
        # Two properties are ANDed. (stac-fastapi's query model has no "in" operator.)
        (
            {"platform": {"neq": "landsat-9"}, "eo:cloud_cover": {"gt": 30}},
            lambda item: item["properties"]["platform"] != "landsat-9" and cloud(item) > 30,
        ),
    ],
    ids=["cloud-lt", "cloud-range", "platform-eq", "platform-neq-and-cloud"],
)
def test_query_extension(
    pgstac_api: PgstacApi, query: dict[str, Any], predicate: Predicate
) -> None:
    ids = search_ids(pgstac_api.url, collections=FIXTURE_COLLECTIONS, query=query, limit=100)
    assert_once(ids, expected(predicate))


def _prop(name: str) -> dict[str, str]:
    return {"property": name}


#: Part of the Denver tile that only the wider (-106.18 west edge) footprints reach.
WEST_DENVER = shapely.box(-105.9, 39.8, -105.6, 40.0)


@pytest.mark.parametrize(
    ("cql2", "predicate"),
    [
        (
            {
                "op": "and",
                "args": [
                    {"op": ">=", "args": [_prop("eo:cloud_cover"), 10]},
                    {"op": "<", "args": [_prop("eo:cloud_cover"), 50]},
                ],
            },
            lambda item: 10 <= cloud(item) < 50,
        ),
        (
            {
                "op": "or",
                "args": [
                    {"op": "=", "args": [_prop("platform"), "Sentinel-2B"]},
                    {"op": ">", "args": [_prop("eo:cloud_cover"), 90]},
                ],
            },
            lambda item: item["properties"]["platform"] == "Sentinel-2B" or cloud(item) > 90,
        ),
        (
            {"op": "in", "args": [_prop("platform"), ["sentinel-2a", "landsat-9"]]},
            lambda item: item["properties"]["platform"] in ("sentinel-2a", "landsat-9"),
        ),
        (
            {"op": ">=", "args": [_prop("datetime"), {"timestamp": "2024-04-17T23:46:00Z"}]},
            lambda item: when(item) >= datetime(2024, 4, 17, 23, 46, tzinfo=UTC),
        ),
        (
            {"op": "s_intersects", "args": [_prop("geometry"), WEST_DENVER.__geo_interface__]},
            lambda item: footprint(item).intersects(WEST_DENVER),
        ),
        (
            {
                "op": "and",
                "args": [
                    {"op": "=", "args": [_prop("collection"), "landsat-c2-l2"]},
                    {"op": "<", "args": [_prop("eo:cloud_cover"), 30]},
                ],
            },
            lambda item: item["collection"] == "landsat-c2-l2" and cloud(item) < 30,
        ),
    ],
    ids=["cloud-between", "or", "in", "datetime-gte", "s_intersects", "collection-and-cloud"],
)
def test_cql2_json_filter(
    pgstac_api: PgstacApi, cql2: dict[str, Any], predicate: Predicate
) -> None:
    ids = search_ids(pgstac_api.url, collections=FIXTURE_COLLECTIONS, filter=cql2, limit=100)
    assert_once(ids, expected(predicate))


def test_cql2_text_filter(pgstac_api: PgstacApi) -> None:
    ids = search_ids(
        pgstac_api.url, collections=FIXTURE_COLLECTIONS, filter="eo:cloud_cover < 1", limit=100
    )
    assert_once(ids, expected(lambda item: cloud(item) < 1))


@pytest.mark.parametrize(
    "geometry",
    [
        {"type": "Point", "coordinates": [-105.9, 40.0]},
        shapely.box(149.0, -42.0, 149.5, -41.5),  # Tasmania: two of the Landsat rows
    ],
    ids=["geojson-point", "shapely-box"],
)
def test_intersects(pgstac_api: PgstacApi, geometry: Any) -> None:
    area = shapely.geometry.shape(geometry)
    ids = search_ids(
        pgstac_api.url, collections=FIXTURE_COLLECTIONS, intersects=geometry, limit=100
    )
    assert_once(ids, expected(lambda item: footprint(item).intersects(area)))


def test_bbox_and_inclusive_date_range(pgstac_api: PgstacApi) -> None:
    start = datetime(2024, 4, 10, tzinfo=UTC)
    end = datetime(2024, 4, 17, 23, 59, 59, 999999, tzinfo=UTC)  # a bare end date is inclusive
    box = shapely.box(*DENVER)
    ids = search_ids(
        pgstac_api.url,
        collections=FIXTURE_COLLECTIONS,
        bbox=DENVER,
        date_range=("2024-04-10", "2024-04-17"),
        limit=100,
    )
    assert_once(
        ids, expected(lambda item: footprint(item).intersects(box) and start <= when(item) <= end)
    )


@pytest.mark.parametrize("limit", [1, 4, 7])
def test_token_paging_returns_every_item_once(pgstac_api: PgstacApi, limit: int) -> None:
    everything = {item["id"] for item in fixture_items()}
    pages = asyncio.run(collect(pgstac_api.url, collections=FIXTURE_COLLECTIONS, limit=limit))
    assert_once([item["id"] for page in pages for item in page.items], everything)
    assert len(pages) == math.ceil(len(everything) / limit) > 1
    assert [page.number for page in pages] == list(range(1, len(pages) + 1))
    assert all(len(page.items) == limit for page in pages[:-1])


def test_next_link_is_a_post_with_a_token(pgstac_api: PgstacApi) -> None:
    """What the paging tests exercise: pgstac's POST ``next`` link carries the original
    search plus an opaque ``token``, not an offset the client could compute itself."""
    body = {"collections": FIXTURE_COLLECTIONS, "limit": 2, "query": {"eo:cloud_cover": {"lt": 50}}}
    request = urllib.request.Request(
        f"{pgstac_api.url}/search",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        page = json.loads(resp.read())
    (link,) = [link for link in page["links"] if link["rel"] == "next"]
    assert link["method"] == "POST"
    assert str(link["body"]["token"]).startswith("next:")
    assert {k: v for k, v in link["body"].items() if k != "token"} == body


def test_filtered_search_pages_with_tokens(pgstac_api: PgstacApi) -> None:
    want = expected(lambda item: cloud(item) < 50)
    pages = asyncio.run(
        collect(
            pgstac_api.url,
            collections=FIXTURE_COLLECTIONS,
            filter={"op": "<", "args": [_prop("eo:cloud_cover"), 50]},
            limit=3,
        )
    )
    assert_once([item["id"] for page in pages for item in page.items], want)
    assert len(pages) == math.ceil(len(want) / 3) > 1


def test_builder_records_from_pgstac(pgstac_api: PgstacApi) -> None:
    """The records step of a ``sentinel-2-c1-l2a`` source pointed at pgstac: ``query`` is
    evaluated by the server, pages of 2 become record batches, nothing is fetched yet."""
    builder = StacCollectionBuilder(
        "sentinel-2-c1-l2a", pgstac_api.url, page_size=2, retry=FAST_RETRY
    )
    records = asyncio.run(builder.search_records(query={"eo:cloud_cover": {"lt": 20}}))
    want = expected(lambda item: item["collection"] == "sentinel-2-c1-l2a" and cloud(item) < 20)
    assert_once(records.column("id").to_pylist(), want)
    assert records.num_rows == len(want) > 2  # more than one page


# -- transactions: items appearing between searches (what the sensors watch for) ----------


def _transaction_items() -> list[Item]:
    """Two Planetary Computer items that are *not* among the loaded fixtures."""
    document = json.loads(TRANSACTION_ITEMS.read_text())
    items = [dict(item) for item in document["features"]]
    loaded = {item["id"] for item in fixture_items()}
    assert len(items) == 2 and not loaded & {item["id"] for item in items}
    return sorted(items, key=when)


def test_items_added_between_searches_are_found(pgstac_api: PgstacApi) -> None:
    older, newer = _transaction_items()
    collection_id = unique_collection_id("sensor-test")
    pgstac_api.add_collection(
        collection_from_items(collection_id, [older, newer], "items added by a test")
    )
    assert search_ids(pgstac_api.url, collections=[collection_id]) == []

    stored = pgstac_api.add_item(older, collection_id)
    assert stored["id"] == older["id"] and stored["collection"] == collection_id
    assert search_ids(pgstac_api.url, collections=[collection_id]) == [older["id"]]

    pgstac_api.add_item(newer, collection_id)
    assert_once(
        search_ids(pgstac_api.url, collections=[collection_id], limit=1),
        {older["id"], newer["id"]},
    )
    # A sensor asks for what is new since its last tick: only the newer day matches.
    day = when(newer).date().isoformat()
    assert search_ids(pgstac_api.url, collections=[collection_id], date_range=(day, day)) == [
        newer["id"]
    ]
    # The fixture collections did not change.
    assert newer["id"] not in search_ids(pgstac_api.url, collections=FIXTURE_COLLECTIONS)

    pgstac_api.delete_item(collection_id, older["id"])
    assert search_ids(pgstac_api.url, collections=[collection_id]) == [newer["id"]]


def test_added_item_matches_query_and_filter(pgstac_api: PgstacApi) -> None:
    """New items are evaluated by ``query`` and ``filter`` like loaded ones: a sensor that
    watches for cloud-free scenes sees only those."""
    items = _transaction_items()
    collection_id = unique_collection_id("sensor-filter")
    pgstac_api.add_collection(collection_from_items(collection_id, items, "filtered additions"))
    for item in items:
        pgstac_api.add_item(item, collection_id)
    threshold = 50.0
    clear = {item["id"] for item in items if cloud(item) < threshold}
    assert 0 < len(clear) < len(items)
    by_query = search_ids(
        pgstac_api.url, collections=[collection_id], query={"eo:cloud_cover": {"lt": threshold}}
    )
    by_filter = search_ids(
        pgstac_api.url,
        collections=[collection_id],
        filter={"op": "<", "args": [_prop("eo:cloud_cover"), threshold]},
    )
    assert_once(by_query, clear)
    assert_once(by_filter, clear)
