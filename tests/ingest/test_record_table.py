"""``RecordTableBuilder`` on real stac-geoparquet fixtures, a real range server and moto S3.

Asset hrefs of the Planetary Computer fixtures point at Azure blob storage; the tests rewrite
them (``url_rewrite_patterns``) onto the session range server, which serves a fixture COG at
each rewritten path, so ``enrich_cog=True`` parses real headers over loopback. Nothing in the
builder, the storage backends or pyarrow is mocked.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
import rasterio
import s3fs
import shapely
from affine import Affine
from asset_values import core
from prefix_backend import PrefixBackend
from servers.moto_s3 import MotoS3
from servers.range_server import Fault, RangeServer

from ingest.synthetic_records import synthetic_records, write_synthetic
from rasteret_assets.collection import Collection
from rasteret_assets.contract import (
    ASSET_TYPE,
    DATETIME_TYPE,
    SCENE_BBOX_TYPE,
    BandHeader,
    ContractError,
    DuplicateIdsError,
    MissingColumnsError,
    band_metadata_array,
)
from rasteret_assets.ingest import (
    EmptyRecordTableError,
    EnrichmentFailedError,
    RecordTableBuilder,
)
from rasteret_assets.ingest.tables.assets import rewrite_strings
from rasteret_assets.ingest.tables.raster_assets import raster_mask
from rasteret_assets.storage import StorageRouter, rewrite_url
from rasteret_assets.tiff import parse_tiff_bytes

GEOPARQUET = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "geoparquet"
TIFFS = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "tiff"
S2_100 = GEOPARQUET / "pc_sentinel-2-l2a_100.parquet"
S2_1000 = GEOPARQUET / "pc_sentinel-2-l2a_1000.parquet"
LANDSAT_100 = GEOPARQUET / "pc_landsat-c2-l2_100.parquet"
NAIP_LEGACY = GEOPARQUET / "pc_naip_5_legacy.parquet"
#: A small tiled COG (1 band, EPSG:32621, overviews) served for every raster href.
BAND_COG = "rio-tiler/cog_ovr.tif"
NOT_A_TIFF = b"<?xml version='1.0'?><metadata/>"


def fixture(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"shared fixture {path} not found")
    return path


def without_source(value: dict) -> dict:
    return {k: v for k, v in value.items() if k not in ("source_etag", "source_size")}


def expected_metadata(data: bytes, band_index: int = 0) -> dict:
    header = parse_tiff_bytes(data)
    return without_source(band_metadata_array([BandHeader(header, band_index)])[0].as_py())


def asset_hrefs(table: pa.Table) -> Iterator[tuple[str, str, dict]]:
    """``(band, href, raw asset)`` of every asset in a stac-geoparquet table."""
    for assets in table.column("assets").to_pylist():
        for band, asset in assets.items():
            if asset is not None and asset.get("href"):
                yield band, asset["href"], asset


def looks_raster(asset: dict) -> bool:
    """The expectation for the fixtures: a TIFF media type and no preview/metadata role.

    Sentinel-2's ``preview`` asset is a COG (``…_PVI.tif``) with the ``thumbnail`` role: a
    raster by type, deliberately skipped by role.
    """
    roles = set(asset.get("roles") or ())
    return "tiff" in (asset.get("type") or "") and not roles & {"thumbnail", "overview", "metadata"}


def serve_pc_assets(server: RangeServer, table: pa.Table, cog: bytes) -> dict[str, str]:
    """Rewrite rules from each fixture host to the server; serve every rewritten href.

    Assets whose media type says TIFF get ``cog``; the others (previews, XML, JSON) get a
    non-TIFF body, so reading one by mistake would show up as a ``not_tiff`` outcome.
    """
    hosts = {urlsplit(href).netloc for _, href, _ in asset_hrefs(table)}
    patterns = {f"https://{h}/": server.url(f"/pc/{h}/") for h in hosts}
    for _, href, asset in asset_hrefs(table):
        path = urlsplit(rewrite_url(href, patterns)).path
        is_tiff = "tiff" in (asset.get("type") or "")
        server.add_bytes(path, cog if is_tiff else NOT_A_TIFF)
    return patterns


def metadata_of(collection: Collection, band: str) -> dict[str, dict | None]:
    rows = collection.to_table(columns=["id", f"{band}_metadata"]).to_pylist()
    return {r["id"]: r[f"{band}_metadata"] for r in rows}


# ----------------------------------------------------------------------------- real fixtures


@pytest.mark.parametrize("path", [S2_100, LANDSAT_100, S2_1000, NAIP_LEGACY], ids=lambda p: p.stem)
def test_real_stac_geoparquet_becomes_the_contract(path: Path, tmp_path: Path) -> None:
    source = pq.read_table(fixture(path))
    builder = RecordTableBuilder(path, data_source="planetary-computer", workspace_dir=tmp_path)
    collection = builder.build()

    table = collection.to_table()
    assert table.num_rows == source.num_rows == builder.stats.rows_written
    assert sorted(table.column("id").to_pylist()) == sorted(source.column("id").to_pylist())
    assert table.schema.field("datetime").type == DATETIME_TYPE
    assert table.schema.field("scene_bbox").type == SCENE_BBOX_TYPE
    assert table.schema.field("proj:epsg").type == pa.int32()
    assert collection.name == path.stem and collection.data_source == "planetary-computer"

    by_id = {r["id"]: r for r in table.to_pylist()}
    for row in source.to_pylist():
        out = by_id[row["id"]]
        assert out["datetime"] == row["datetime"]
        assert shapely.from_wkb(out["geometry"]).equals(shapely.from_wkb(row["geometry"]))
        assert out["proj:epsg"] == row["proj:epsg"] and out["crs"] == f"EPSG:{row['proj:epsg']}"
        expected = {
            band: {"href": asset["href"], "band_index": 0}
            for band, asset in row["assets"].items()
            if asset is not None
        }
        assert {b: a for b, a in core(out["assets"]).items() if a is not None} == expected
        kept = next(a for a in out["assets"].values() if a is not None)
        given = next(a for a in row["assets"].values() if a is not None)
        assert (kept["type"], kept["roles"]) == (given.get("type"), given.get("roles"))
        assert (out["year"], out["month"]) == (row["datetime"].year, row["datetime"].month)
    # Every asset key of the struct is a band of the contract's struct, null where absent.
    assert [f.name for f in table.schema.field("assets").type] == [
        f.name for f in source.schema.field("assets").type
    ]
    assert all(f.type == ASSET_TYPE for f in table.schema.field("assets").type)
    months = sorted({(d.year, d.month) for d in source.column("datetime").to_pylist()})
    assert builder.stats.months == [f"{y}-{m:02d}" for y, m in months]
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.parquet"))
    assert files == sorted(f"year={y}/month={m}/part-0.parquet" for y, m in months)


def test_legacy_naip_schema_is_normalised(tmp_path: Path) -> None:
    """geopandas-era file: bbox as list<double>, pandas metadata, GeoParquet 0.4 ``geo``."""
    collection = RecordTableBuilder(fixture(NAIP_LEGACY), workspace_dir=tmp_path).build()
    table = collection.to_table()
    assert table.schema.field("bbox").type == pa.struct(
        [(k, pa.float64()) for k in ("xmin", "ymin", "xmax", "ymax")]
    )
    geo = json.loads(pq.read_schema(next(tmp_path.rglob("*.parquet"))).metadata[b"geo"])
    assert geo["version"] == "1.1.0" and geo["columns"]["geometry"]["geometry_types"]
    assert b"pandas" not in (collection.schema.metadata or {})


def test_without_workspace_the_collection_is_in_memory(tmp_path: Path) -> None:
    collection = RecordTableBuilder(fixture(S2_100), name="s2").build()
    assert collection.uri is None and collection.name == "s2"
    assert collection.count_rows() == 100
    assert collection.partition_cols == ["year", "month"]
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- column_map


def aliased_table(n: int = 6) -> pa.Table:
    """A hand-made record table whose columns use none of the contract's names."""
    boxes = shapely.box(np.arange(n), 0, np.arange(n) + 1, 1)
    return pa.table(
        {
            "item_id": pa.array(np.arange(n)),  # integers: ids become strings
            "acquired": [f"2024-0{1 + i % 3}-10T08:00:00Z" for i in range(n)],
            "footprint": shapely.to_wkb(boxes).tolist(),
            "files": [{"red": {"href": f"s3://b/{i}/red.tif"}} for i in range(n)],
            "cloud": np.linspace(0, 50, n),
        }
    )


def test_column_map_aliases_onto_the_contract_and_keeps_sources(tmp_path: Path) -> None:
    path = tmp_path / "records.parquet"
    pq.write_table(aliased_table(), path)
    builder = RecordTableBuilder(
        path,
        column_map={
            "item_id": "id",
            "acquired": "datetime",
            "footprint": "geometry",
            "files": "assets",
        },
        workspace_dir=tmp_path / "out",
    )
    table = builder.build().to_table().sort_by("id")
    assert table.column("id").to_pylist() == [str(i) for i in range(6)]
    assert table.column("item_id").to_pylist() == list(range(6))  # the source stays
    assert core(table.column("assets").to_pylist()[2]) == {
        "red": {"href": "s3://b/2/red.tif", "band_index": 0}
    }
    assert sorted(set(table.column("month").to_pylist())) == [1, 2, 3]
    assert "cloud" in table.column_names


def test_column_map_mistakes_are_reported_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "records.parquet"
    pq.write_table(aliased_table(), path)
    with pytest.raises(ContractError, match=r"column_map names column\(s\) \['nope'\]"):
        RecordTableBuilder(path, column_map={"nope": "id"}).build()
    with pytest.raises(ContractError, match="already has"):
        RecordTableBuilder(path, column_map={"item_id": "cloud"}).build()
    with pytest.raises(MissingColumnsError, match=r"\['id', 'datetime', 'geometry', 'assets'\]"):
        RecordTableBuilder(path).build()
    with pytest.raises(ValueError, match="several columns onto"):
        RecordTableBuilder(path, column_map={"item_id": "id", "cloud": "id"})


# ----------------------------------------------------------------------------- href_column


def planar_cog(path: Path) -> Path:
    """3-band uint8 GeoTIFF, tiled and band-interleaved (PlanarConfiguration=2): each band
    has its own tiles, so a wrong band index would show up as wrong tile offsets."""
    profile = {
        "driver": "GTiff",
        "width": 512,
        "height": 512,
        "count": 3,
        "dtype": "uint8",
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "interleave": "band",
        "compress": "deflate",
        "crs": "EPSG:32633",
        "transform": Affine(10, 0, 500000, 0, -10, 5000000),
    }
    data = np.stack([np.full((512, 512), 10 * (b + 1), np.uint8) for b in range(3)])
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path


def href_table(hrefs: list[str]) -> pa.Table:
    n = len(hrefs)
    return pa.table(
        {
            "id": [f"scene-{i}" for i in range(n)],
            "datetime": pa.array([1_717_200_000_000 + i for i in range(n)], pa.timestamp("ms")),
            "geometry": [shapely.to_wkb(shapely.box(10 + i, 45, 11 + i, 46)) for i in range(n)],
            "url": hrefs,
        }
    )


def test_href_column_and_band_index_map_make_bands_of_one_multiband_file(
    tmp_path: Path, range_server: RangeServer
) -> None:
    data = planar_cog(tmp_path / "rgb.tif").read_bytes()
    url = range_server.add_bytes("/multi/rgb.tif", data)
    path = tmp_path / "records.parquet"
    pq.write_table(href_table([url, url]), path)
    builder = RecordTableBuilder(
        path,
        href_column="url",
        band_index_map={"red": 0, "green": 1, "blue": 2},
        enrich_cog=True,
        workspace_dir=tmp_path / "out",
    )
    collection = builder.build()
    rows = collection.to_table().to_pylist()
    assert core(rows[0]["assets"]) == {
        "red": {"href": url, "band_index": 0},
        "green": {"href": url, "band_index": 1},
        "blue": {"href": url, "band_index": 2},
    }
    assert collection.band_codes == ["red", "green", "blue"]
    offsets = set()
    for index, band in enumerate(("red", "green", "blue")):
        for value in metadata_of(collection, band).values():
            assert without_source(value) == expected_metadata(data, index)
            offsets.add(tuple(value["tile_offsets"]))
    assert len(offsets) == 3  # planar: three bands, three sets of tiles
    assert rows[0]["crs"] == "EPSG:32633"  # no CRS in the records: the header's
    # One file, three bands, two records: read once.
    assert builder.enrichment.headers_fetched == 1
    assert range_server.stats("/multi/rgb.tif").requests == 1


def test_a_band_index_past_the_samples_is_reported_not_dropped(
    tmp_path: Path, range_server: RangeServer
) -> None:
    data = planar_cog(tmp_path / "rgb.tif").read_bytes()
    url = range_server.add_bytes("/multi/rgb2.tif", data)
    path = tmp_path / "records.parquet"
    pq.write_table(href_table([url]), path)
    builder = RecordTableBuilder(
        path, href_column="url", band_index_map={"red": 0, "swir": 5}, enrich_cog=True
    )
    collection = builder.build()
    assert metadata_of(collection, "swir") == {"scene-0": None}
    assert metadata_of(collection, "red")["scene-0"] is not None
    assert builder.enrichment.band_index_error_count == 1
    assert "band_index 5" in builder.enrichment.band_index_errors[0]


def test_url_rewrite_patterns_apply_to_href_column_assets(
    tmp_path: Path, range_server: RangeServer
) -> None:
    data = planar_cog(tmp_path / "rgb.tif").read_bytes()
    range_server.add_bytes("/mirror/rgb.tif", data)
    path = tmp_path / "records.parquet"
    pq.write_table(href_table(["https://unreachable.example/data/rgb.tif"]), path)
    builder = RecordTableBuilder(
        path,
        href_column="url",
        band_index_map={"nir": 2},
        url_rewrite_patterns={"https://unreachable.example/data/": range_server.url("/mirror/")},
        enrich_cog=True,
    )
    row = builder.build().to_table().to_pylist()[0]
    assert core(row["assets"]) == {
        "nir": {"href": range_server.url("/mirror/rgb.tif"), "band_index": 2}
    }
    assert row["url"] == "https://unreachable.example/data/rgb.tif"  # the source column stays
    assert without_source(row["nir_metadata"]) == expected_metadata(data, 2)


def test_href_column_rules(tmp_path: Path) -> None:
    path = tmp_path / "records.parquet"
    pq.write_table(href_table(["a.tif", None]), path)  # type: ignore[list-item]
    with pytest.raises(ValueError, match="needs band_index_map"):
        RecordTableBuilder(path, href_column="url")
    with pytest.raises(ContractError, match="no href in record 'scene-1'"):
        RecordTableBuilder(path, href_column="url", band_index_map={"b": 0}).build()
    with pytest.raises(ContractError, match="href_column 'nope' not found in table"):
        RecordTableBuilder(path, href_column="nope", band_index_map={"b": 0}).build()
    with_assets = tmp_path / "both.parquet"
    pq.write_table(href_table(["a.tif"]).append_column("assets", pa.array(["{}"])), with_assets)
    with pytest.raises(ContractError, match="use one"):
        RecordTableBuilder(with_assets, href_column="url", band_index_map={"b": 0}).build()


def test_band_index_map_sets_samples_of_an_assets_column(tmp_path: Path) -> None:
    collection = RecordTableBuilder(fixture(NAIP_LEGACY), band_index_map={"image": 3}).build()
    assets = collection.to_table(columns=["assets"]).column("assets").to_pylist()
    assert {a["image"]["band_index"] for a in assets} == {3}
    assert {a["thumbnail"]["band_index"] for a in assets} == {0}
    with pytest.raises(ContractError, match=r"band_index_map names band\(s\) \['nir'\]"):
        RecordTableBuilder(fixture(NAIP_LEGACY), band_index_map={"nir": 3}).build()


# ----------------------------------------------------------------------------- url rewriting


def test_url_rewrite_patterns_rewrite_every_href_of_an_assets_column(tmp_path: Path) -> None:
    patterns = {
        "https://sentinel2l2a01.blob.core.windows.net/": "s3://mirror/",
        "https://sentinel2l2a01.blob.core.windows.net/sentinel2-l2/13/": "s3://tile-13/",
    }
    collection = RecordTableBuilder(fixture(S2_100), url_rewrite_patterns=patterns).build()
    source = pq.read_table(S2_100)
    expected = {}
    for row in source.to_pylist():
        for band, asset in row["assets"].items():
            if asset is not None:
                expected[(row["id"], band)] = rewrite_url(asset["href"], patterns)
    got = {
        (row["id"], band): asset["href"]
        for row in collection.to_table(columns=["id", "assets"]).to_pylist()
        for band, asset in row["assets"].items()
        if asset is not None
    }
    assert got == expected
    assert any(h.startswith("s3://tile-13/") for h in got.values())  # longest prefix won
    assert any(h.startswith("https://planetarycomputer") for h in got.values())  # untouched


@pytest.mark.parametrize("seed", range(5))
def test_vectorised_rewrite_matches_rewrite_url(seed: int) -> None:
    rng = np.random.default_rng(seed)
    alphabet = ["a", "b", "/", ":", "é", "ü", "ß", "?"]
    prefixes = ["".join(rng.choice(alphabet, rng.integers(1, 4))) for _ in range(6)]
    patterns = {p: "".join(rng.choice(alphabet, rng.integers(0, 4))) for p in prefixes}
    values = ["".join(rng.choice(alphabet, rng.integers(0, 8))) for _ in range(300)] + [None]
    got = rewrite_strings(pa.array(values, pa.string()), patterns).to_pylist()
    assert got == [None if v is None else rewrite_url(v, patterns) for v in values]


# ----------------------------------------------------------------------------- enrichment


def test_enrich_cog_with_band_codes_reads_real_headers_over_loopback(
    tmp_path: Path, range_server: RangeServer, tiff_fixtures: Path
) -> None:
    source = pq.read_table(fixture(S2_100))
    cog = (tiff_fixtures / BAND_COG).read_bytes()
    patterns = serve_pc_assets(range_server, source, cog)
    builder = RecordTableBuilder(
        S2_100,
        url_rewrite_patterns=patterns,
        enrich_cog=True,
        band_codes=["B04", "B08"],
        workspace_dir=tmp_path,
    )
    collection = builder.build()
    assert collection.band_codes == ["B04", "B08"]
    expected = expected_metadata(cog)
    for band in ("B04", "B08"):
        values = metadata_of(collection, band)
        assert len(values) == 100
        assert all(without_source(v) == expected for v in values.values())
        assert {v["source_size"] for v in values.values()} == {len(cog)}
    report = builder.enrichment
    assert report.status_counts == {"ok": 200} and report.headers_fetched == 200
    assert report.outcomes.num_rows == 200
    assert range_server.total_requests == 200  # one ranged GET per header, nothing else
    # The records' own CRS (proj:epsg 32613) wins over the served file's 32621.
    assert set(collection.to_table(columns=["crs"]).column("crs").to_pylist()) == {"EPSG:32613"}


def test_enrich_cog_without_band_codes_skips_thumbnails_and_metadata(
    range_server: RangeServer, tiff_fixtures: Path
) -> None:
    source = pq.read_table(fixture(LANDSAT_100))
    cog = (tiff_fixtures / BAND_COG).read_bytes()
    patterns = serve_pc_assets(range_server, source, cog)
    builder = RecordTableBuilder(LANDSAT_100, url_rewrite_patterns=patterns, enrich_cog=True)
    collection = builder.build()

    raster = {b for b, _, a in asset_hrefs(source) if looks_raster(a)}
    other = {b for b, _, a in asset_hrefs(source)} - raster
    assert other >= {"rendered_preview", "tilejson", "mtl.xml", "mtl.json", "mtl.txt", "ang"}
    assert set(collection.band_codes) == raster
    assert not set(collection.band_codes) & other
    for _, href, asset in asset_hrefs(source):
        requests = range_server.stats(urlsplit(rewrite_url(href, patterns)).path).requests
        assert requests == (1 if looks_raster(asset) else 0), href
    report = builder.enrichment
    assert report.status_counts == {"ok": report.headers_fetched}
    # Landsat rows lack some bands (null assets): metadata is present exactly where assets are.
    table = collection.to_table()
    for band in raster:
        assets = pc.struct_field(table.column("assets"), [band]).is_valid()
        assert table.column(f"{band}_metadata").is_valid().equals(assets)


def test_raster_heuristic_on_every_fixture_asset() -> None:
    for path in (S2_100, LANDSAT_100, NAIP_LEGACY, S2_1000):
        assets = pq.read_table(fixture(path), columns=["assets"]).column("assets")
        for field in assets.type:
            child = pc.struct_field(assets, [field.name]).combine_chunks()
            mask = raster_mask(child)
            expected = [a is not None and looks_raster(a) for a in child.to_pylist()]
            assert mask.tolist() == expected, (path.name, field.name)
    hrefs = pa.array(["s3://b/x.TIF?sig=1", "https://h/preview.png", "/a/b.tiff", None, "x.xml"])
    assert raster_mask(hrefs).tolist() == [True, False, True, False, False]
    role_only = pa.array(
        [
            {"href": "s3://b/no-extension", "roles": ["data"]},
            {"href": "s3://b/meta.xml", "roles": ["data"]},
            {"href": "s3://b/band.tif", "roles": ["data", "thumbnail"]},
            {"href": "s3://b/band.tif", "roles": None},
        ]
    )
    assert raster_mask(role_only).tolist() == [True, False, False, True]


def test_rows_whose_asset_is_not_a_raster_are_skipped_within_a_band(
    tmp_path: Path, range_server: RangeServer, tiff_fixtures: Path
) -> None:
    """Band ``B02`` is a COG in most rows but a JPEG quicklook in some: only COGs are read."""
    records = synthetic_records(12, files=12, bands=("B02",), href_base=range_server.url("/mix"))
    b02 = pc.struct_field(records.column("assets"), ["B02"]).combine_chunks()
    jpeg = [i % 4 == 0 for i in range(12)]
    types = pa.array(
        ["image/jpeg" if j else t for j, t in zip(jpeg, b02.field("type").to_pylist(), strict=True)]
    )
    hrefs = b02.field("href")
    for href in hrefs.to_pylist():
        range_server.add_file(urlsplit(href).path, tiff_fixtures / BAND_COG)
    child = pa.StructArray.from_arrays(
        [hrefs, types, b02.field("roles")], names=["href", "type", "roles"]
    )
    thumbnail = pc.struct_field(records.column("assets"), ["thumbnail"]).combine_chunks()
    assets = pa.StructArray.from_arrays([child, thumbnail], names=["B02", "thumbnail"])
    path = tmp_path / "records.parquet"
    pq.write_table(records.set_column(3, "assets", assets), path)
    builder = RecordTableBuilder(path, enrich_cog=True)
    values = metadata_of(builder.build(), "B02")
    ids = records.column("id").to_pylist()
    assert [values[i] is None for i in ids] == jpeg
    assert builder.enrichment.skipped_non_raster == sum(jpeg)
    assert builder.enrichment.headers_fetched == 12 - sum(jpeg)
    for i, href in enumerate(hrefs.to_pylist()):
        assert range_server.stats(urlsplit(href).path).requests == (0 if jpeg[i] else 1)


def test_max_concurrent_caps_requests_in_flight(
    tmp_path: Path, range_server: RangeServer, tiff_fixtures: Path
) -> None:
    range_server.add_file("/cap/cog.tif", tiff_fixtures / BAND_COG)
    for i in range(24):
        range_server.add_file(f"/cap/{i}.tif", tiff_fixtures / BAND_COG)
    path = tmp_path / "records.parquet"
    pq.write_table(href_table([range_server.url(f"/cap/{i}.tif") for i in range(24)]), path)
    range_server.latency = 0.05
    builder = RecordTableBuilder(
        path, href_column="url", band_index_map={"b": 0}, enrich_cog=True, max_concurrent=2
    )
    builder.build()
    assert builder.enrichment.status_counts == {"ok": 24}
    assert range_server.max_in_flight == 2
    range_server.reset()
    range_server.latency = 0.05
    RecordTableBuilder(
        path, href_column="url", band_index_map={"b": 0}, enrich_cog=True, max_concurrent=12
    ).build()
    assert range_server.max_in_flight > 2


@pytest.mark.asyncio
async def test_backend_is_used_for_reads_and_left_open(
    tmp_path: Path, range_server: RangeServer, tiff_fixtures: Path
) -> None:
    """The table keeps its (unreadable) hrefs; the given backend knows how to reach them."""
    range_server.add_file("/private/cog.tif", tiff_fixtures / BAND_COG)
    path = tmp_path / "records.parquet"
    pq.write_table(href_table(["https://private.example/cog.tif"]), path)
    backend = PrefixBackend("https://private.example/", range_server.url("/private/"))
    builder = RecordTableBuilder(
        path, href_column="url", band_index_map={"b": 0}, enrich_cog=True, backend=backend
    )
    collection = builder.build()  # sync build from inside a running loop (worker thread)
    assert metadata_of(collection, "b")["scene-0"] is not None
    assets = collection.to_table(columns=["assets"]).column("assets")[0].as_py()
    assert assets["b"]["href"] == "https://private.example/cog.tif"
    # Still open and usable: the builder closes only backends it created.
    data = await backend.get_range("https://private.example/cog.tif", 0, 4)
    assert data in (b"II*\x00", b"MM\x00*")
    await backend.close()


def test_failed_assets_are_nulls_and_outcomes(
    tmp_path: Path, range_server: RangeServer, tiff_fixtures: Path
) -> None:
    for i in range(4):
        range_server.add_file(f"/mixed/{i}.tif", tiff_fixtures / BAND_COG)
    range_server.remove("/mixed/3.tif")
    range_server.set_fault("/mixed/2.tif", Fault("403"))
    path = tmp_path / "records.parquet"
    pq.write_table(href_table([range_server.url(f"/mixed/{i}.tif") for i in range(4)]), path)
    builder = RecordTableBuilder(path, href_column="url", band_index_map={"b": 0}, enrich_cog=True)
    values = metadata_of(builder.build(), "b")
    assert [values[f"scene-{i}"] is None for i in range(4)] == [False, False, True, True]
    report = builder.enrichment
    assert report.status_counts == {"ok": 2, "forbidden": 1, "not_found": 1}
    failed = report.outcomes.filter(pc.not_equal(report.outcomes.column("status"), "ok"))
    assert sorted(urlsplit(u).path for u in failed.column("url").to_pylist()) == [
        "/mixed/2.tif",
        "/mixed/3.tif",
    ]


def test_no_readable_header_at_all_fails_before_commit(
    tmp_path: Path, range_server: RangeServer
) -> None:
    path = tmp_path / "records.parquet"
    pq.write_table(href_table([range_server.url(f"/missing/{i}.tif") for i in range(3)]), path)
    workspace = tmp_path / "out"
    builder = RecordTableBuilder(
        path, href_column="url", band_index_map={"b": 0}, enrich_cog=True, workspace_dir=workspace
    )
    with pytest.raises(EnrichmentFailedError, match="none of 3 asset headers") as caught:
        builder.build()
    assert caught.value.outcomes.num_rows == 3
    assert not list(workspace.rglob("*.parquet")) and not list(workspace.rglob(".*"))


def test_a_url_is_read_once_per_build_across_batches(
    tmp_path: Path, range_server: RangeServer, tiff_fixtures: Path
) -> None:
    for k in range(3):
        range_server.add_file(f"/shared/{k}/B02.tif", tiff_fixtures / BAND_COG)
    path = tmp_path / "records.parquet"
    records = synthetic_records(60, files=3, bands=("B02",), href_base=range_server.url("/shared"))
    pq.write_table(records, path)
    builder = RecordTableBuilder(path, enrich_cog=True, band_codes=["B02"])
    collection = builder.build(batch_size=7)
    assert builder.stats.batches >= 9
    assert builder.enrichment.headers_fetched == 3 and builder.enrichment.cache_hits > 0
    assert all(range_server.stats(f"/shared/{k}/B02.tif").requests == 1 for k in range(3))
    assert all(v is not None for v in metadata_of(collection, "B02").values())


# ----------------------------------------------------------------------------- scan pushdown


def test_columns_projection_and_filter_pushdown(tmp_path: Path) -> None:
    source = pq.read_table(fixture(S2_1000))
    keep = ["id", "datetime", "geometry", "assets", "proj:epsg"]
    cloudy = ds.field("eo:cloud_cover") < 10  # a column outside the projection
    builder = RecordTableBuilder(S2_1000, columns=keep, filter_expr=cloudy)
    table = builder.build().to_table()
    expected = source.filter(pc.less(source.column("eo:cloud_cover"), 10))
    assert 0 < table.num_rows == expected.num_rows < source.num_rows
    assert sorted(table.column("id").to_pylist()) == sorted(expected.column("id").to_pylist())
    assert "eo:cloud_cover" not in table.column_names
    assert not [c for c in table.column_names if c.startswith("s2:")]
    assert set(table.column_names) == set(keep) | {"bbox", "scene_bbox", "crs", "year", "month"}


def test_filter_pushdown_skips_row_groups_by_statistics(tmp_path: Path) -> None:
    path = tmp_path / "sorted.parquet"
    records = synthetic_records(4000, months=4).sort_by("datetime")
    pq.write_table(records, path, row_group_size=500)  # 8 row groups in time order
    month = (ds.field("datetime") >= pa.scalar(1706745600000, pa.timestamp("ms", "UTC"))) & (
        ds.field("datetime") < pa.scalar(1709251200000, pa.timestamp("ms", "UTC"))
    )  # February 2024
    builder = RecordTableBuilder(path, filter_expr=month)
    collection = builder.build()
    assert builder.stats.months == ["2024-02"]
    assert collection.count_rows() == records.filter(month).num_rows
    assert builder.stats.row_groups_read < 2 * 8  # two passes, most groups never read


def test_filter_and_columns_mistakes_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(ContractError, match=r"columns \['nope'\] are not in"):
        RecordTableBuilder(fixture(S2_100), columns=["id", "nope"]).build()
    with pytest.raises(ContractError, match=r"filter_expr .* does not fit"):
        RecordTableBuilder(S2_100, filter_expr=ds.field("nope") > 1).build()
    with pytest.raises(EmptyRecordTableError, match="no rows"):
        RecordTableBuilder(S2_100, filter_expr=ds.field("eo:cloud_cover") > 1000).build()
    with pytest.raises(TypeError, match="list of column names"):
        RecordTableBuilder(S2_100, columns="id")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Expression"):
        RecordTableBuilder(S2_100, filter_expr="eo:cloud_cover < 10")  # type: ignore[arg-type]


def test_parameters_that_would_be_ignored_are_refused() -> None:
    with pytest.raises(ValueError, match="band_codes only take effect with enrich_cog"):
        RecordTableBuilder(S2_100, band_codes=["B04"])
    with pytest.raises(ValueError, match="backend only take effect"):
        RecordTableBuilder(S2_100, backend=StorageRouter())
    with pytest.raises(TypeError):
        RecordTableBuilder(S2_100).build(bbox=(0, 0, 1, 1))
    with pytest.raises(ValueError, match="max_concurrent"):
        RecordTableBuilder(S2_100, max_concurrent=0)
    with pytest.raises(ContractError, match=r"band_codes \['B99'\] are not asset keys"):
        RecordTableBuilder(fixture(S2_100), enrich_cog=True, band_codes=["B99"]).build()


# ----------------------------------------------------------------------------- S3 and workspace


def test_s3_record_table_through_s3fs_and_a_pyarrow_filesystem(
    moto_s3: MotoS3, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    bucket = moto_s3.private_bucket
    uri = moto_s3.put(bucket, "tables/s2.parquet", fixture(S2_100).read_bytes())
    # Plain s3:// path, no filesystem: s3fs with the default credential chain and endpoint.
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_s3.endpoint_url)
    from_s3fs = RecordTableBuilder(uri, workspace_dir=f"s3://{bucket}/collections/s2").build()
    assert from_s3fs.count_rows() == 100 and from_s3fs.uri == f"s3://{bucket}/collections/s2"
    assert Collection.open(f"s3://{bucket}/collections/s2").count_rows() == 100
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    # An explicit pyarrow S3FileSystem, with a URI or a bucket/key path.
    s3 = pafs.S3FileSystem(
        endpoint_override=moto_s3.endpoint_url,
        access_key=moto_s3.key_id,
        secret_key=moto_s3.secret,
        region=moto_s3.region,
    )
    for path in (uri, f"{bucket}/tables/s2.parquet"):
        collection = RecordTableBuilder(
            path, filesystem=s3, filter_expr=ds.field("eo:cloud_cover") < 20
        ).build()
        assert 0 < collection.count_rows() < 100
    # An fsspec file system works too (wrapped for pyarrow).
    fs = s3fs.S3FileSystem(
        endpoint_url=moto_s3.endpoint_url, key=moto_s3.key_id, secret=moto_s3.secret
    )
    assert RecordTableBuilder(uri, filesystem=fs).build().count_rows() == 100
    with pytest.raises(TypeError, match="filesystem must be"):
        RecordTableBuilder(uri, filesystem="s3").build()  # type: ignore[arg-type]


def test_workspace_persists_reopens_and_rebuilds_only_present_months(tmp_path: Path) -> None:
    workspace = tmp_path / "s2"
    full = RecordTableBuilder(fixture(S2_100), name="s2", workspace_dir=workspace).build()
    before = {p: p.read_bytes() for p in workspace.rglob("*.parquet")}
    reopened = Collection.open(workspace)
    assert reopened.count_rows() == full.count_rows() == 100
    assert reopened.name == "s2" and reopened.info.description.startswith("records of ")

    may = ds.field("datetime") < pa.scalar(1717200000000, pa.timestamp("ms", "UTC"))  # < June
    builder = RecordTableBuilder(S2_100, filter_expr=may, name="s2-spring")
    rebuilt = builder.build(workspace_dir=workspace)  # build() overrides workspace_dir
    assert builder.stats.months == ["2024-03", "2024-04", "2024-05"]
    after = {p: p.read_bytes() for p in workspace.rglob("*.parquet")}
    assert set(after) == set(before)
    changed = {p.parent.name for p in after if after[p] != before[p]}
    assert changed == {"month=3", "month=4", "month=5"}  # only the months present
    assert rebuilt.count_rows() == 100 and rebuilt.name == "s2-spring"


def test_months_per_pass_gives_the_same_collection(tmp_path: Path) -> None:
    one = RecordTableBuilder(fixture(S2_100), workspace_dir=tmp_path / "one").build()
    builder = RecordTableBuilder(S2_100, workspace_dir=tmp_path / "many")
    many = builder.build(months_per_pass=3)
    assert builder.stats.passes == 4  # ten months, three at a time
    assert builder.stats.rows_written == 100
    first, second = one.to_table().sort_by("id"), many.to_table().sort_by("id")
    assert first.equals(second)


# ----------------------------------------------------------------------------- whole-table checks


def test_duplicate_ids_in_different_batches_fail_before_writing(tmp_path: Path) -> None:
    records = synthetic_records(500)
    ids = records.column("id").to_pylist()
    ids[450] = ids[3]  # far apart: never in the same batch of 64
    ids[499] = ids[3]
    path = tmp_path / "dupes.parquet"
    pq.write_table(records.set_column(0, "id", pa.array(ids)), path)
    workspace = tmp_path / "out"
    with pytest.raises(DuplicateIdsError, match="1 repeat") as caught:
        RecordTableBuilder(path, workspace_dir=workspace).build(batch_size=64)
    assert caught.value.ids == (ids[3],)
    assert "occurs 3 times" in str(caught.value)
    assert not workspace.exists() or not list(workspace.rglob("*"))


def test_bad_rows_are_named_and_nothing_is_written(tmp_path: Path) -> None:
    records = synthetic_records(100)
    times = records.column("datetime").cast(pa.string()).to_pylist()
    times[70] = "yesterday"
    path = tmp_path / "bad.parquet"
    pq.write_table(records.set_column(1, "datetime", pa.array(times)), path)
    with pytest.raises(ContractError, match="SYN_70") as caught:
        RecordTableBuilder(path, workspace_dir=tmp_path / "out").build(batch_size=16)
    assert caught.value.column == "datetime"
    ids = records.column("id").to_pylist()
    ids[90] = None
    nulls = tmp_path / "null_ids.parquet"
    pq.write_table(records.set_column(0, "id", pa.array(ids)), nulls)
    with pytest.raises(ContractError, match=r"rows \[90\]"):
        RecordTableBuilder(nulls, workspace_dir=tmp_path / "out").build(batch_size=16)
    assert not (tmp_path / "out").exists()


def test_null_datetimes_fall_back_on_start_datetime_in_every_pass(tmp_path: Path) -> None:
    """Items describing a period (annual maps) have no ``datetime``; months come from
    ``start_datetime``, which a scan predicate on ``datetime`` could not select."""
    records = synthetic_records(300, months=6)
    when = records.column("datetime").to_pylist()
    start = pa.array(when, pa.timestamp("ms", tz="UTC"))
    nulled = pa.array([None if i % 3 == 0 else w for i, w in enumerate(when)], start.type)
    records = records.set_column(1, "datetime", nulled).append_column("start_datetime", start)
    path = tmp_path / "periods.parquet"
    pq.write_table(records, path, row_group_size=50)
    builder = RecordTableBuilder(path, workspace_dir=tmp_path / "out")
    collection = builder.build(months_per_pass=2, batch_size=40)
    assert builder.stats.passes == 3 and builder.stats.rows_written == 300
    table = collection.to_table().sort_by("id")
    expected = records.sort_by("id")
    assert table.column("datetime").to_pylist() == expected.column("start_datetime").to_pylist()
    months = [(d.year, d.month) for d in table.column("datetime").to_pylist()]
    partitions = zip(
        table.column("year").to_pylist(), table.column("month").to_pylist(), strict=True
    )
    assert months == list(partitions)


def test_json_assets_with_different_bands_per_batch_share_one_schema(tmp_path: Path) -> None:
    n = 40
    boxes = [shapely.to_wkb(shapely.box(i, 0, i + 1, 1)) for i in range(n)]
    assets = [
        json.dumps({("red" if i < 20 else "nir"): {"href": f"s3://b/{i}.tif"}}) for i in range(n)
    ]
    table = pa.table(
        {
            "id": [f"r{i}" for i in range(n)],
            "datetime": ["2024-05-01T00:00:00Z"] * n,
            "geometry": boxes,
            "assets": assets,
        }
    )
    path = tmp_path / "json.parquet"
    pq.write_table(table, path)
    collection = RecordTableBuilder(path, workspace_dir=tmp_path / "out").build(batch_size=8)
    out = collection.to_table().sort_by("id")
    assert [f.name for f in out.schema.field("assets").type] == ["red", "nir"]
    rows = {r["id"]: core(r["assets"]) for r in out.select(["id", "assets"]).to_pylist()}
    assert rows["r0"] == {"red": {"href": "s3://b/0.tif", "band_index": 0}, "nir": None}
    assert rows["r39"] == {"red": None, "nir": {"href": "s3://b/39.tif", "band_index": 0}}


# ----------------------------------------------------------------------------- streaming memory


def test_build_streams_instead_of_materialising_the_table(tmp_path: Path) -> None:
    """200k rows (~175 MB in Arrow): the build's Arrow allocations stay far below that."""
    path = write_synthetic(tmp_path / "big.parquet", 200_000, padding=300, row_group_size=20_000)
    table_bytes = pq.read_table(path).nbytes
    baseline = pa.total_allocated_bytes()
    peak = baseline
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, pa.total_allocated_bytes())
            time.sleep(0.001)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    builder = RecordTableBuilder(path, workspace_dir=tmp_path / "out")
    try:
        collection = builder.build(batch_size=8192, buffer_bytes=16 * 1024 * 1024)
    finally:
        done.set()
        sampler.join()
    assert collection.count_rows() == 200_000
    assert builder.stats.max_batch_rows <= 8192
    assert builder.stats.batches >= 200_000 // 8192
    assert table_bytes > 150e6
    assert peak - baseline < table_bytes / 2, (peak - baseline, table_bytes)
    assert builder.stats.peak_arrow_bytes < table_bytes / 2
