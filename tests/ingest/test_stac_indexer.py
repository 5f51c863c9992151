"""``StacCollectionBuilder`` end to end, every hop real and on loopback.

Records come from ``rustac serve`` (real Earth Search items) or the real static catalog; the
items' asset hrefs point at AWS, so ``url_rewrite_patterns`` sends them to the range server
(or moto S3), which serves real COG fixtures under the items' own object paths. Headers are
parsed, joined back, normalised and written as a collection, then read back.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from servers.moto_s3 import MotoS3
from servers.range_server import RangeServer
from servers.rustac_server import RustacServer
from servers.stac_proxy import StacProxy

from rasteret_assets.collection import Collection
from rasteret_assets.contract import BandHeader, band_metadata_array
from rasteret_assets.ingest.stac.band_map import BandMapError
from rasteret_assets.ingest.stac.builder import (
    EnrichmentFailedError,
    NoItemsError,
    StacCollectionBuilder,
)
from rasteret_assets.sources import CloudConfig, UnknownDataSourceError, get_source
from rasteret_assets.storage import RetryPolicy, StorageOptions, StorageRouter
from rasteret_assets.tiff import parse_tiff_bytes

FAST_RETRY = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05)
E84 = "https://e84-earth-search-sentinel-data.s3.us-west-2.amazonaws.com/"
#: Which real COG stands in for which Sentinel-2 band.
BAND_FILES = {
    "blue": "rio-tiler/cog.tif",
    "red": "rio-tiler/cog_int16.tif",
    "nir": "cogeotiff/cog.tiff",
}
S2_BANDS = {"B02": "blue", "B04": "red", "B08": "nir"}
APRIL = ("2024-04-01", "2024-04-30")  # 9 of the 10 items; the 10th is from March 31st
SPRING = ("2024-03-01", "2024-04-30")


def expected_metadata(tiff_fixtures: Path, name: str) -> dict[str, Any]:
    header = parse_tiff_bytes((tiff_fixtures / name).read_bytes())
    value = band_metadata_array([BandHeader(header)])[0].as_py()
    return {k: v for k, v in value.items() if k not in ("source_etag", "source_size")}


def without_source(value: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in value.items() if k not in ("source_etag", "source_size")}


@pytest.fixture
def c1_items(stac_fixtures: Path) -> list[dict[str, Any]]:
    path = stac_fixtures / "earth-search" / "sentinel-2-c1-l2a_item-collection_10.json"
    return json.loads(path.read_text())["features"]


@pytest.fixture
def served_s2(
    range_server: RangeServer, tiff_fixtures: Path, c1_items: list[dict[str, Any]]
) -> Iterator[dict[str, str]]:
    """Every item's blue/red/nir object path served by the range server under ``/e84/``."""
    paths = {}
    for item in c1_items:
        for key, name in BAND_FILES.items():
            path = "/e84/" + item["assets"][key]["href"].removeprefix(E84)
            range_server.add_bytes(path, (tiff_fixtures / name).read_bytes())
            paths[item["assets"][key]["href"]] = path
    yield paths
    for path in paths.values():
        range_server.remove(path)


def s2_builder(
    api: str, range_server: RangeServer, tmp_path: Path, **kwargs: Any
) -> StacCollectionBuilder:
    kwargs.setdefault("band_map", S2_BANDS)
    return StacCollectionBuilder(
        "sentinel-2-c1-l2a",
        api,
        workspace_dir=tmp_path / "collection",
        cloud_config=CloudConfig(url_rewrite_patterns={E84: range_server.url("/e84/")}),
        page_size=4,
        retry=FAST_RETRY,
        max_concurrent=16,
        **kwargs,
    )


def test_api_build_writes_a_collection_with_parsed_headers(
    rustac_server: RustacServer,
    range_server: RangeServer,
    served_s2: dict[str, str],
    tiff_fixtures: Path,
    c1_items: list[dict[str, Any]],
    tmp_path: Path,
) -> None:
    builder = s2_builder(rustac_server.url, range_server, tmp_path)
    collection = builder.build(bbox=[-106, 39, -104, 41], date_range=SPRING)

    reopened = Collection.open(tmp_path / "collection")
    table = reopened.to_table()
    assert table.num_rows == collection.count_rows() == len(c1_items) == 10
    assert sorted(table.column("id").to_pylist()) == sorted(i["id"] for i in c1_items)
    assert set(reopened.band_codes) == set(S2_BANDS)
    for band, key in S2_BANDS.items():
        want = expected_metadata(tiff_fixtures, BAND_FILES[key])
        values = table.column(f"{band}_metadata").to_pylist()
        assert all(v is not None and without_source(v) == want for v in values)
    # Each object was read exactly once, at its rewritten address.
    assert all(range_server.stats(path).requests == 1 for path in served_s2.values())
    hrefs = {row["id"]: row["assets"] for row in table.to_pylist()}
    item = c1_items[0]
    assert hrefs[item["id"]]["B04"]["href"] == range_server.url(
        served_s2[item["assets"]["red"]["href"]]
    )
    # The items say EPSG:32613; the stand-in files say 32621. The catalog's word wins.
    assert set(table.column("proj:epsg").to_pylist()) == {32613}
    assert set(table.column("crs").to_pylist()) == {"EPSG:32613"}
    # Typed properties and the rest of the STAC properties travel with the records.
    by_id = {row["id"]: row for row in table.to_pylist()}
    assert by_id[item["id"]]["eo:cloud_cover"] == item["properties"]["eo:cloud_cover"]
    props = json.loads(by_id[item["id"]]["properties_json"])
    assert props["s2:product_uri"] == item["properties"]["s2:product_uri"]
    assert sorted(set(table.column("month").to_pylist())) == [3, 4]  # two partitions
    assert builder.enrichment is not None
    assert builder.enrichment.status_counts == {"ok": len(served_s2)}
    assert collection.data_source == "sentinel-2-c1-l2a"


def test_static_catalog_build_takes_the_crs_from_the_headers(
    range_server: RangeServer, tiff_fixtures: Path, stac_fixtures: Path, tmp_path: Path
) -> None:
    # The catalog is read over HTTP; its items name no CRS at all.
    range_server.add_directory("/catalog/", stac_fixtures / "static-catalog" / "test-case-1")
    for area in ("1-1", "1-2", "2-1", "2-2"):
        range_server.add_file(
            f"/example/area-{area}_ortho.tif", tiff_fixtures / "rio-tiler/cog.tif"
        )
        range_server.add_file(f"/example/area-{area}_dsm.tif", tiff_fixtures / "cogeotiff/cog.tiff")
    builder = StacCollectionBuilder(
        "test-case-1",
        range_server.url("/catalog/catalog.json"),
        band_map={"ortho": "ortho", "dsm": "dsm"},
        static_catalog=True,
        cloud_config=CloudConfig(
            url_rewrite_patterns={"http://example.com/": range_server.url("/example/")}
        ),
        workspace_dir=tmp_path / "static",
        retry=FAST_RETRY,
    )
    collection = builder.build(date_range=("2019-10-01", "2019-10-31"))
    rows = {r["id"]: r for r in collection.to_table().to_pylist()}
    assert len(rows) == 8
    imagery = [r for i, r in rows.items() if i.endswith("imagery")]
    labels = [r for i, r in rows.items() if i.endswith("labels")]
    assert all(r["proj:epsg"] == 32621 and r["crs"] == "EPSG:32621" for r in imagery)
    assert all(r["ortho_metadata"]["dtype"] == "uint16" for r in imagery)
    assert all(r["dsm_metadata"]["dtype"] == "uint8" for r in imagery)
    # Label items have neither asset: no header, no CRS, but still records.
    assert all(r["ortho_metadata"] is None and r["proj:epsg"] is None for r in labels)
    assert builder.enrichment is not None and builder.enrichment.status_counts == {"ok": 8}


def test_wrong_band_map_fails_before_any_header_request(
    rustac_server: RustacServer, range_server: RangeServer, tmp_path: Path
) -> None:
    builder = s2_builder(
        rustac_server.url, range_server, tmp_path, band_map={"B04": "red", "B08": "B08"}
    )
    with pytest.raises(BandMapError) as info:
        builder.build(date_range=APRIL)
    assert info.value.missing == {"B08": "B08"} and "nir" in info.value.available
    assert range_server.total_requests == 0
    assert not (tmp_path / "collection").exists()


def test_malformed_band_map_fails_before_any_request(stac_proxy: StacProxy) -> None:
    with pytest.raises(BandMapError, match="not in band_map"):
        StacCollectionBuilder(
            "x", stac_proxy.url, band_map={"B04": "red"}, band_index_map={"B8A": 0}
        )
    assert stac_proxy.requests() == []


def test_registered_source_supplies_band_map_and_rewrites(rustac_server: RustacServer) -> None:
    """No band_map, no cloud_config: the registry's Sentinel-2 C1 entry decides."""
    builder = StacCollectionBuilder("sentinel-2-c1-l2a", rustac_server.url, retry=FAST_RETRY)
    records = asyncio.run(builder.search_records(date_range=APRIL))
    source = get_source("sentinel-2-c1-l2a")
    assert builder.band_map == dict(source.band_map)
    assets = records.column("assets").to_pylist()
    assert len(assets) == 9 and set(assets[0]) == set(source.band_map)
    assert all(a["B8A"]["href"].startswith("s3://e84-earth-search-sentinel-data/") for a in assets)


@pytest.mark.asyncio
async def test_build_works_inside_a_running_event_loop(
    rustac_server: RustacServer, range_server: RangeServer, served_s2: dict, tmp_path: Path
) -> None:
    asyncio.get_running_loop()  # as in Jupyter or an async Dagster op
    builder = s2_builder(rustac_server.url, range_server, tmp_path, band_map={"B02": "blue"})
    collection = builder.build(date_range=APRIL, max_items=3)
    assert collection.count_rows() == 3
    again = await builder.build_index(date_range=APRIL, max_items=2)
    assert again.count_rows() == 2  # April rewritten with the new result, not appended


def test_assets_on_s3(
    rustac_server: RustacServer, moto_s3: MotoS3, c1_items: list[dict[str, Any]], tmp_path: Path
) -> None:
    # Every red href becomes the one real COG in moto's public bucket (a full-URL prefix rule).
    target = f"s3://{moto_s3.public_bucket}/cogs/rio-tiler/cog.tif"
    rules = {item["assets"]["red"]["href"]: target for item in c1_items}
    backend = StorageRouter(
        StorageOptions(endpoint_url=moto_s3.endpoint_url, region=moto_s3.region, anon=True)
    )
    builder = StacCollectionBuilder(
        "sentinel-2-c1-l2a",
        rustac_server.url,
        band_map={"B04": "red"},
        cloud_config=CloudConfig(url_rewrite_patterns=rules),
        backend=backend,
        retry=FAST_RETRY,
    )
    collection = builder.build(date_range=SPRING)
    table = collection.to_table()
    assert table.num_rows == 10
    assert all(v["dtype"] == "uint16" for v in table.column("B04_metadata").to_pylist())
    assert builder.enrichment is not None
    assert builder.enrichment.outcomes.column("url").to_pylist() == [target]
    asyncio.run(backend.close())


def test_every_asset_failing_is_an_error_with_the_outcomes(
    rustac_server: RustacServer, range_server: RangeServer, tmp_path: Path
) -> None:
    builder = s2_builder(rustac_server.url, range_server, tmp_path, band_map={"B04": "red"})
    with pytest.raises(EnrichmentFailedError, match="none of 9 asset headers") as info:
        builder.build(date_range=APRIL)  # nothing is served under /e84/ in this test
    assert set(info.value.outcomes.column("status").to_pylist()) == {"not_found"}


def test_no_matching_items(
    rustac_server: RustacServer, range_server: RangeServer, tmp_path: Path
) -> None:
    builder = s2_builder(rustac_server.url, range_server, tmp_path)
    with pytest.raises(NoItemsError, match="no STAC items matched"):
        builder.build(date_range=("2030-01-01", "2030-01-31"))


def test_unknown_source_needs_a_band_map() -> None:
    with pytest.raises(UnknownDataSourceError, match=r"known sources: .*sentinel-2-l2a"):
        StacCollectionBuilder("my-catalog", "http://127.0.0.1:9/")


def test_static_catalog_refuses_query_and_filter(stac_fixtures: Path) -> None:
    builder = StacCollectionBuilder(
        "test-case-1",
        str(stac_fixtures / "static-catalog" / "test-case-1" / "catalog.json"),
        band_map={"ortho": "ortho"},
        static_catalog=True,
    )
    with pytest.raises(ValueError, match="need a STAC API"):
        builder.build(query={"eo:cloud_cover": {"lt": 10}})


def test_records_stream_as_batches_of_one_schema(rustac_server: RustacServer) -> None:
    builder = StacCollectionBuilder(
        "sentinel-2-l2a",
        rustac_server.url,
        band_map={"B04": "B04", "SCL": "SCL"},  # Planetary Computer asset keys
        page_size=25,
    )

    async def batches() -> list[pa.RecordBatch]:
        return [
            b async for b in builder.iter_record_batches(date_range=("2024-01-01", "2024-12-31"))
        ]

    result = asyncio.run(batches())
    assert [b.num_rows for b in result] == [25, 25, 25, 25]
    assert len({b.schema for b in result}) == 1


def test_rasteret_max_items_in_query_is_pointed_to_the_keyword(rustac_server: RustacServer) -> None:
    builder = StacCollectionBuilder("sentinel-2-c1-l2a", rustac_server.url)
    with pytest.raises(ValueError, match="pass max_items=N instead"):
        builder.build(query={"max_items": 5})
