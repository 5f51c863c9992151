"""Static catalog walks: pystac-client's test-case-1 tree, from disk and over real HTTP.

test-case-1 is root catalog → 2 country catalogs → 4 collections → 8 items (4 imagery with
``ortho``/``dsm`` assets, 4 label items), every link relative.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from servers.range_server import RangeServer

from rasteret_assets.ingest.stac.http import JsonClient
from rasteret_assets.ingest.stac.static_catalog import (
    ItemFilter,
    StaticCatalogError,
    resolve_href,
    walk_static_catalog,
)
from rasteret_assets.storage import RetryPolicy

FAST_RETRY = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05)
ALL_ITEMS = {
    f"area-{c}-{a}-{kind}" for c in (1, 2) for a in (1, 2) for kind in ("imagery", "labels")
}


@pytest.fixture
def catalog_dir(stac_fixtures: Path) -> Path:
    return stac_fixtures / "static-catalog" / "test-case-1"


def walk(root: str | Path, **kwargs: Any) -> list[dict[str, Any]]:
    async def run() -> list[dict[str, Any]]:
        async with JsonClient(retry=FAST_RETRY) as client:
            return [item async for item in walk_static_catalog(root, client, **kwargs)]

    return asyncio.run(run())


def test_local_walk_finds_every_item_once_with_its_collection(catalog_dir: Path) -> None:
    items = walk(catalog_dir / "catalog.json")
    assert sorted(i["id"] for i in items) == sorted(ALL_ITEMS)
    for item in items:
        assert item["collection"] == item["id"].rsplit("-", 1)[0]
    imagery = next(i for i in items if i["id"] == "area-2-1-imagery")
    assert imagery["assets"]["ortho"]["href"] == "http://example.com/area-2-1_ortho.tif"


def test_http_walk_reads_siblings_concurrently(
    range_server: RangeServer, catalog_dir: Path
) -> None:
    range_server.add_directory("/catalog/", catalog_dir)
    range_server.latency = 0.05  # every document costs a round trip
    items = walk(range_server.url("/catalog/catalog.json"), concurrency=8)
    assert sorted(i["id"] for i in items) == sorted(ALL_ITEMS)
    assert range_server.max_in_flight >= 4  # 4 collections / 8 items were read in parallel
    # 15 documents, each requested exactly once.
    paths = [p.relative_to(catalog_dir).as_posix() for p in catalog_dir.rglob("*.json")]
    assert len(paths) == 15
    assert all(range_server.stats(f"/catalog/{p}").requests == 1 for p in paths)


def test_relative_asset_hrefs_are_resolved_against_the_item(
    range_server: RangeServer, catalog_dir: Path, tmp_path: Path
) -> None:
    tree = tmp_path / "catalog"
    shutil.copytree(catalog_dir, tree)
    item_path = tree / "country-1" / "area-1-2" / "area-1-2-imagery" / "area-1-2-imagery.json"
    item = json.loads(item_path.read_text())
    item["assets"]["ortho"]["href"] = "./ortho.tif"
    item["assets"]["dsm"]["href"] = "../../shared/dsm.tif"
    item_path.write_text(json.dumps(item))

    local = {i["id"]: i for i in walk(tree / "catalog.json")}["area-1-2-imagery"]
    assert local["assets"]["ortho"]["href"] == str(item_path.parent / "ortho.tif")
    assert local["assets"]["dsm"]["href"] == str(tree / "country-1" / "shared" / "dsm.tif")

    range_server.add_directory("/copy/", tree)
    remote = {i["id"]: i for i in walk(range_server.url("/copy/catalog.json"))}
    assets = remote["area-1-2-imagery"]["assets"]
    base = range_server.url("/copy/country-1/")
    assert assets["ortho"]["href"] == base + "area-1-2/area-1-2-imagery/ortho.tif"
    assert assets["dsm"]["href"] == base + "shared/dsm.tif"


def test_filters_by_area_date_and_collection(catalog_dir: Path) -> None:
    root = catalog_dir / "catalog.json"
    # Every footprint is the same box around (-2.2, 4.1); the item bboxes are degenerate
    # (ymin == ymax), so only a footprint test finds the items from a box north of ymin.
    north = ItemFilter.build(bbox=[-2.4, 4.0, -2.0, 4.2])
    assert len(walk(root, item_filter=north)) == 8
    elsewhere = ItemFilter.build(bbox=[10, 10, 11, 11])
    assert walk(root, item_filter=elsewhere) == []
    point = ItemFilter.build(intersects={"type": "Point", "coordinates": [-2.2, 4.1]})
    assert len(walk(root, item_filter=point)) == 8
    # All items are from 2019-10-04: the end day counts in full.
    assert (
        len(walk(root, item_filter=ItemFilter.build(date_range=("2019-10-01", "2019-10-04")))) == 8
    )
    assert walk(root, item_filter=ItemFilter.build(date_range=("2019-10-05", None))) == []
    one = ItemFilter.build(collections=["area-2-2"])
    assert sorted(i["id"] for i in walk(root, item_filter=one)) == [
        "area-2-2-imagery",
        "area-2-2-labels",
    ]


def test_max_items_stops_the_walk(catalog_dir: Path) -> None:
    assert len(walk(catalog_dir / "catalog.json", max_items=3)) == 3


def test_broken_link_names_the_document_that_links_to_it(catalog_dir: Path, tmp_path: Path) -> None:
    tree = tmp_path / "catalog"
    shutil.copytree(catalog_dir, tree)
    (tree / "country-2" / "area-2-1" / "collection.json").unlink()
    with pytest.raises(StaticCatalogError) as info:
        walk(tree / "catalog.json")
    assert info.value.href == str(tree / "country-2" / "area-2-1" / "collection.json")
    assert info.value.linked_from == str(tree / "country-2" / "catalog.json")


def test_missing_document_over_http_is_not_retried(
    range_server: RangeServer, catalog_dir: Path
) -> None:
    with pytest.raises(StaticCatalogError, match="HTTP 404"):
        walk(range_server.url("/nowhere/catalog.json"))
    assert range_server.stats("/nowhere/catalog.json").requests == 1


def test_resolve_href_rules() -> None:
    assert resolve_href("http://h/a/b/c.json", "../d.json") == "http://h/a/d.json"
    assert resolve_href("http://h/a/c.json", "s3://bucket/x.tif") == "s3://bucket/x.tif"
    assert resolve_href("/data/cat/c.json", "./x/y.json") == "/data/cat/x/y.json"
    assert resolve_href("/data/cat/c.json", "file:///elsewhere/z.json") == "/elsewhere/z.json"
