"""Persisted collections: layout, GeoParquet 1.1 metadata, atomic partition swaps, readers.

Local writes go to ``tmp_path``; S3 writes go to a real moto server over HTTP (the
``moto_s3`` fixture). DuckDB and GeoPandas read the output exactly as written. The only
injected fault is the crash simulation, raised from the writer's ``before_commit`` hook.
"""

from __future__ import annotations

import json
import math
import uuid
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import geopandas
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import shapely
from asset_values import core
from servers.moto_s3 import MotoS3

from rasteret_assets.collection import Collection, CollectionInfo, write_collection
from rasteret_assets.collection.reference_footer import REFERENCE_KEYS
from rasteret_assets.contract import (
    BAND_METADATA_TYPE,
    CONTRACT_VERSION,
    ContractError,
    metadata_column,
)
from rasteret_assets.ingest import build_collection_from_table, normalize_table

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"
S2_100 = FIXTURES / "geoparquet" / "pc_sentinel-2-l2a_100.parquet"
S2_1000 = FIXTURES / "geoparquet" / "pc_sentinel-2-l2a_1000.parquet"
IO_LULC = FIXTURES / "stac" / "planetary-computer" / "io-lulc-annual-v02_items_4.json"

GEOMETRY_TYPES = {
    "Point",
    "LineString",
    "Polygon",
    "MultiPoint",
    "MultiLineString",
    "MultiPolygon",
    "GeometryCollection",
}
SHAPELY_NAMES = {0: "Point", 1: "LineString", 3: "Polygon", 4: "MultiPoint"}
SHAPELY_NAMES |= {5: "MultiLineString", 6: "MultiPolygon", 7: "GeometryCollection"}


def fixture(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"shared fixture {path} not found")
    return path


def records(ids: list[str], month: int, band: str = "B04", year: int = 2024) -> pa.Table:
    """A small record table in one month; footprints are half-degree squares at x = 2·month + i."""
    boxes = [shapely.box(2 * month + i, 40, 2 * month + i + 0.5, 40.5) for i in range(len(ids))]
    return pa.table(
        {
            "id": ids,
            "datetime": [f"{year}-{month:02d}-15T10:00:00Z"] * len(ids),
            "geometry": shapely.to_wkb(boxes).tolist(),
            "assets": [{band: f"s3://bucket/{i}/{band}.tif"} for i in ids],
            "platform": ["sentinel-2a"] * len(ids),
        }
    )


def lulc_table() -> pa.Table:
    rows = []
    for item in json.loads(fixture(IO_LULC).read_text()):
        row = dict(item["properties"])
        row.update(
            id=item["id"],
            geometry=json.dumps(item["geometry"]),
            assets=json.dumps(item["assets"]),
        )
        rows.append(row)
    return pa.Table.from_pylist(rows)


def visible_files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def ids_of(collection: Collection) -> list[str]:
    return sorted(collection.to_table(columns=["id"]).column("id").to_pylist())


def check_geoparquet_1_1(parquet: pq.ParquetFile) -> dict:
    """The GeoParquet 1.1 rules that can be checked from a file, metadata against data."""
    geo = json.loads(parquet.metadata.metadata[b"geo"])
    assert geo["version"] == "1.1.0"
    assert isinstance(geo["primary_column"], str)
    assert geo["primary_column"] in geo["columns"]
    schema = parquet.schema_arrow
    for name, column in geo["columns"].items():
        assert name in schema.names  # geometry columns sit at the root
        assert column["encoding"] == "WKB"
        assert schema.field(name).type in (pa.binary(), pa.large_binary())
        types = column["geometry_types"]
        assert isinstance(types, list) and len(set(types)) == len(types)
        assert all(t.removesuffix(" Z") in GEOMETRY_TYPES for t in types)
        assert column.get("crs") is None or isinstance(column["crs"], dict)  # absent = CRS84
        assert column.get("edges", "planar") in ("planar", "spherical")
        box = column["bbox"]
        assert len(box) == 4 and all(math.isfinite(v) for v in box) and box[1] <= box[3]

        covering = column["covering"]["bbox"]
        assert list(covering) == ["xmin", "ymin", "xmax", "ymax"]
        assert all(path == ["bbox", key] for key, path in covering.items())
        cover_field = schema.field("bbox")  # at the root, not nested
        assert [f.name for f in cover_field.type] == ["xmin", "ymin", "xmax", "ymax"]
        assert {f.type for f in cover_field.type} == {pa.float64()}
        assert cover_field.nullable == schema.field(name).nullable

        data = parquet.read(columns=[name, "bbox"])
        geoms = shapely.from_wkb(data.column(name).to_numpy())
        found = {
            SHAPELY_NAMES[t] + (" Z" if z else "")
            for t, z in zip(shapely.get_type_id(geoms), shapely.has_z(geoms), strict=True)
        }
        assert found == set(types)  # "expected to be strictly correct"
        rows = np.column_stack(
            [pc.struct_field(data.column("bbox"), k).to_numpy() for k in covering]
        )
        assert (rows[:, 0] >= box[0]).all() and (rows[:, 2] <= box[2]).all()
        assert (rows[:, 1] >= box[1]).all() and (rows[:, 3] <= box[3]).all()
        bounds = shapely.bounds(geoms)  # every row's covering really covers its geometry
        assert (rows[:, 1] <= bounds[:, 1]).all() and (rows[:, 3] >= bounds[:, 3]).all()
        assert (rows[:, 0] <= np.maximum(bounds[:, 0], -180)).all()
        assert (rows[:, 2] >= np.minimum(bounds[:, 2], 180)).all()
    return geo


# --------------------------------------------------------------------------- local layout


@pytest.fixture
def s2_collection(tmp_path: Path) -> tuple[Path, pa.Table, Collection]:
    source = pq.read_table(fixture(S2_100))
    root = tmp_path / "s2"
    collection = build_collection_from_table(
        source,
        name="s2-denver",
        description="Sentinel-2 over Denver",
        data_source="sentinel-2-l2a",
        workspace_dir=root,
    )
    return root, source, collection


def test_layout_is_one_zstd_file_per_month(s2_collection) -> None:
    root, source, _ = s2_collection
    months = sorted(set(pc.month(source.column("datetime")).to_pylist()))
    assert visible_files(root) == sorted(f"year=2024/month={m}/part-0.parquet" for m in months)
    for path in root.rglob("*.parquet"):
        parquet = pq.ParquetFile(path)
        assert "year" not in parquet.schema_arrow.names  # partition values live in the path
        names = parquet.schema_arrow.names
        assert names[:4] == ["id", "datetime", "geometry", "assets"]
        group = parquet.metadata.row_group(0)
        chunks = {group.column(i).path_in_schema: group.column(i) for i in range(group.num_columns)}
        assert {c.compression for c in chunks.values()} == {"ZSTD"}
        for stat_column in ("datetime", "bbox.xmin", "bbox.ymax", "id"):
            assert chunks[stat_column].is_stats_set
            assert chunks[stat_column].statistics.has_min_max


def test_every_file_carries_valid_geoparquet_and_collection_metadata(s2_collection) -> None:
    root, source, _ = s2_collection
    before = datetime.now(UTC)
    for path in root.rglob("*.parquet"):
        parquet = pq.ParquetFile(path)
        geo = check_geoparquet_1_1(parquet)
        assert geo["columns"]["geometry"]["geometry_types"] == ["Polygon"]
        info = json.loads(parquet.metadata.metadata[b"rasteret_assets"])
        assert info["name"] == "s2-denver"
        assert info["description"] == "Sentinel-2 over Denver"
        assert info["data_source"] == "sentinel-2-l2a"
        assert info["contract_version"] == CONTRACT_VERSION
        created = datetime.fromisoformat(info["created"])
        assert created.utcoffset().total_seconds() == 0
        assert (before - created).total_seconds() < 60
        times = source.column("datetime")
        assert info["date_range"] == [
            pc.min(times).as_py().isoformat(),
            pc.max(times).as_py().isoformat(),
        ]
        assert info["partitioning"] == [["year", "int32"], ["month", "int32"]]


def test_every_file_carries_the_footer_keys_rasteret_reads(s2_collection) -> None:
    """rasteret 0.4.1 reads plain ``name``/``data_source``/… keys, not the project's JSON."""
    root, source, _ = s2_collection
    times = source.column("datetime")
    start, end = pc.min(times).as_py().isoformat(), pc.max(times).as_py().isoformat()
    files = list(root.rglob("*.parquet"))
    assert len(files) > 1
    for path in files:
        # The footer pyarrow exposes (embedded Arrow schema) and the raw key/value list agree.
        for footer in (pq.read_schema(path).metadata, pq.ParquetFile(path).metadata.metadata):
            project = json.loads(footer[b"rasteret_assets"])
            assert {k: footer[k] for k in REFERENCE_KEYS} == {
                b"name": b"s2-denver",
                b"description": b"Sentinel-2 over Denver",
                b"data_source": b"sentinel-2-l2a",
                b"date_range": f"{start},{end}".encode(),
                b"created": project["created"].encode(),
                b"rasteret_collection_version": b"1",
            }


def test_in_memory_collection_carries_the_footer_keys_too() -> None:
    collection = build_collection_from_table(
        pq.read_table(fixture(S2_100)), name="s2", date_range=("2024-03-01", "2024-12-31")
    )
    metadata = collection.schema.metadata
    assert metadata[b"name"] == b"s2"
    assert metadata[b"date_range"] == b"2024-03-01T00:00:00+00:00,2024-12-31T00:00:00+00:00"


def test_open_exposes_dataset_schema_and_description(s2_collection) -> None:
    root, source, built = s2_collection
    collection = Collection.open(root)
    assert (collection.name, collection.data_source) == ("s2-denver", "sentinel-2-l2a")
    assert collection.description == "Sentinel-2 over Denver"
    times = source.column("datetime")
    assert collection.date_range == (pc.min(times).as_py(), pc.max(times).as_py())
    assert collection.partition_cols == ["year", "month"]
    assert collection.schema.field("year").type == pa.int32()
    assert collection.schema.field("datetime").type == pa.timestamp("us", tz="UTC")
    geo = json.loads(collection.schema.metadata[b"geo"])
    assert geo["columns"]["geometry"]["covering"]["bbox"]["ymax"] == ["bbox", "ymax"]
    assert collection.count_rows() == built.count_rows() == 100
    table = collection.to_table(columns=["id", "geometry"]).sort_by("id")
    expected = source.select(["id", "geometry"]).sort_by("id")
    assert table.column("id").equals(expected.column("id"))
    assert shapely.equals(
        shapely.from_wkb(table.column("geometry").to_numpy()),
        shapely.from_wkb(expected.column("geometry").to_numpy()),
    ).all()
    with pytest.raises(FileNotFoundError, match="no collection data"):
        Collection.open(root / "missing")


def test_date_filter_prunes_months_and_returns_exactly_the_range(s2_collection) -> None:
    root, source, _ = s2_collection
    collection = Collection.open(root)
    window = collection.filter(date_range=("2024-08-01", "2024-08-31"))
    assert [f.path.split("/")[-2] for f in window.fragments()] == ["month=8"]
    times = source.column("datetime")
    in_august = pc.and_(
        pc.greater_equal(times, pa.scalar(datetime(2024, 8, 1, tzinfo=UTC))),
        pc.less(times, pa.scalar(datetime(2024, 9, 1, tzinfo=UTC))),
    )
    expected = sorted(pc.filter(source.column("id"), in_august).to_pylist())
    assert ids_of(window) == expected and expected


def test_bbox_filter_matches_brute_force_and_skips_row_groups(tmp_path: Path) -> None:
    table = normalize_table(pq.read_table(fixture(S2_1000)))
    root = tmp_path / "s2-1000"
    write_collection(table, root, info=CollectionInfo(name="s2"), row_group_size=50)
    collection = Collection.open(root)
    query = (-106.0, 37.0, -105.5, 37.5)
    found = collection.filter(bbox=query)
    b = {
        k: pc.struct_field(table.column("bbox"), k).to_numpy()
        for k in ("xmin", "ymin", "xmax", "ymax")
    }
    hit = (
        (b["xmin"] <= query[2])
        & (b["xmax"] >= query[0])
        & (b["ymin"] <= query[3])
        & (b["ymax"] >= query[1])
    )
    expected = sorted(np.asarray(table.column("id").to_pylist())[hit].tolist())
    assert 0 < len(expected) < table.num_rows
    assert ids_of(found) == expected
    # Pushdown: the spatially ordered row groups' statistics rule most of them out.
    total = kept = 0
    for fragment in collection.fragments():
        total += fragment.metadata.num_row_groups
        kept += len(fragment.split_by_row_group(filter=found.predicate, schema=collection.schema))
    assert kept < total / 2, (kept, total)
    both = collection.filter(bbox=query).filter(date_range=("2024-07-01", "2024-07-31"))
    assert set(ids_of(both)) < set(expected)


def test_partition_cols_argument_is_honoured(tmp_path: Path) -> None:
    table = pa.concat_tables([records(["a", "b"], 1), records(["c"], 2)])
    by_year = build_collection_from_table(
        table, workspace_dir=tmp_path / "y", partition_cols=("year",)
    )
    assert visible_files(tmp_path / "y") == ["year=2024/part-0.parquet"]
    assert by_year.partition_cols == ["year"]
    assert by_year.schema.field("month").type == pa.int32()  # kept as a data column
    by_platform = build_collection_from_table(
        table, workspace_dir=tmp_path / "p", partition_cols=("platform", "month")
    )
    assert visible_files(tmp_path / "p") == [
        "platform=sentinel-2a/month=1/part-0.parquet",
        "platform=sentinel-2a/month=2/part-0.parquet",
    ]
    assert by_platform.schema.field("platform").type == pa.string()
    assert ids_of(by_platform.filter(date_range=("2024-02-01", "2024-02-29"))) == ["c"]
    with pytest.raises(ValueError, match=r"partitioned by \['year'\]"):
        build_collection_from_table(table, workspace_dir=tmp_path / "y")


# --------------------------------------------------------------------------- atomic swaps


def test_rewriting_a_month_replaces_it_and_leaves_other_months_alone(tmp_path: Path) -> None:
    root = tmp_path / "c"
    build_collection_from_table(
        pa.concat_tables([records(["jan-1", "jan-2"], 1), records(["feb-1"], 2)]),
        workspace_dir=root,
    )
    february = root / "year=2024" / "month=2" / "part-0.parquet"
    feb_bytes, feb_stat = february.read_bytes(), february.stat()
    january = root / "year=2024" / "month=1"
    pq.write_table(pa.table({"id": ["ghost"]}), january / "part-1.parquet")  # an older layout
    (january / ".part-0.parquet.deadbeef.tmp").write_bytes(b"debris of a crashed run")

    rewritten = build_collection_from_table(records(["jan-3"], 1), workspace_dir=root)

    assert ids_of(rewritten) == ["feb-1", "jan-3"]
    assert sorted(p.name for p in january.iterdir()) == ["part-0.parquet"]
    assert february.read_bytes() == feb_bytes
    assert february.stat().st_mtime_ns == feb_stat.st_mtime_ns
    assert visible_files(root) == [
        "year=2024/month=1/part-0.parquet",
        "year=2024/month=2/part-0.parquet",
    ]


def crash(at: str):
    """A before_commit hook that simulates the process dying right before ``at`` is swapped."""

    def hook(partition: str) -> None:
        if partition == at:
            raise RuntimeError(f"simulated crash before committing {partition}")

    return hook


def test_crash_mid_write_leaves_the_old_partition_intact(tmp_path: Path) -> None:
    root = tmp_path / "c"
    build_collection_from_table(
        pa.concat_tables([records(["jan-old"], 1), records(["feb-old"], 2)]), workspace_dir=root
    )
    files = {p: p.read_bytes() for p in root.rglob("*.parquet")}
    update = normalize_table(pa.concat_tables([records(["jan-new"], 1), records(["feb-new"], 2)]))

    with pytest.raises(RuntimeError, match="simulated crash"):
        write_collection(
            update, root, info=CollectionInfo(), before_commit=crash("year=2024/month=1")
        )
    assert {p: p.read_bytes() for p in root.rglob("*.parquet")} == files
    assert not [p for p in root.rglob("*") if p.name.startswith(".")]  # staged file removed
    assert ids_of(Collection.open(root)) == ["feb-old", "jan-old"]

    # Each partition is atomic on its own: a crash at February keeps January's new rows.
    with pytest.raises(RuntimeError, match="simulated crash"):
        write_collection(
            update, root, info=CollectionInfo(), before_commit=crash("year=2024/month=2")
        )
    assert ids_of(Collection.open(root)) == ["feb-old", "jan-new"]


def test_months_with_different_bands_unify_into_one_schema(tmp_path: Path) -> None:
    root = tmp_path / "c"
    build_collection_from_table(records(["jan"], 1, band="B04"), workspace_dir=root)
    both = build_collection_from_table(records(["feb"], 2, band="B08"), workspace_dir=root)
    rows = {r["id"]: core(r["assets"]) for r in both.to_table(columns=["id", "assets"]).to_pylist()}
    assert rows["jan"] == {"B04": {"href": "s3://bucket/jan/B04.tif", "band_index": 0}, "B08": None}
    assert rows["feb"] == {"B04": None, "B08": {"href": "s3://bucket/feb/B08.tif", "band_index": 0}}


def test_band_metadata_columns_pass_through_to_disk(tmp_path: Path) -> None:
    header = {"image_width": 10980, "dtype": "uint16", "tile_offsets": [512, 9000, 17000]}
    table = records(["a", "b"], 1).append_column(
        metadata_column("B04"), pa.array([header, None], BAND_METADATA_TYPE)
    )
    collection = build_collection_from_table(table, workspace_dir=tmp_path / "c")
    assert collection.band_codes == ["B04"]
    rows = collection.to_table(columns=["id", "B04_metadata"]).sort_by("id").to_pylist()
    assert {k: v for k, v in rows[0]["B04_metadata"].items() if v is not None} == header
    assert rows[1]["B04_metadata"] is None


def test_months_with_clashing_column_types_fail_to_open_clearly(tmp_path: Path) -> None:
    root = tmp_path / "c"
    build_collection_from_table(
        records(["jan"], 1).append_column("cloud", pa.array([3])), workspace_dir=root
    )
    february = records(["feb"], 2).append_column("cloud", pa.array(["low"]))
    write_collection(normalize_table(february), root)
    with pytest.raises(ValueError, match=r"incompatible schemas: .*cloud"):
        Collection.open(root)


def test_partition_values_must_be_present(tmp_path: Path) -> None:
    table = normalize_table(records(["a", "b"], 1))
    index = table.schema.get_field_index("platform")
    table = table.set_column(index, "platform", pa.array(["s2a", None]))
    with pytest.raises(ContractError, match=r"'platform' is null in record 'b'"):
        write_collection(table, tmp_path, info=CollectionInfo(), partition_cols=("platform",))


# --------------------------------------------------------------------------- foreign readers


def test_duckdb_reads_hive_partitions_with_geometry(s2_collection) -> None:
    root, source, _ = s2_collection
    rows = duckdb.execute(
        "SELECT id, year, month, ST_AsWKB(geometry), ST_CRS(geometry), typeof(geometry) "
        f"FROM read_parquet('{root}/year=*/month=*/*.parquet', hive_partitioning = true) "
        "ORDER BY id"
    ).fetchall()
    expected = normalize_table(source).sort_by("id")
    assert [r[0] for r in rows] == expected.column("id").to_pylist()
    assert [r[1] for r in rows] == expected.column("year").to_pylist()
    assert [r[2] for r in rows] == expected.column("month").to_pylist()
    assert [bytes(r[3]) for r in rows] == expected.column("geometry").to_pylist()
    assert {r[4] for r in rows} == {"OGC:CRS84"}
    assert {r[5] for r in rows} == {"GEOMETRY('OGC:CRS84')"}


def test_duckdb_range_predicate_finds_antimeridian_tiles(tmp_path: Path) -> None:
    root = tmp_path / "lulc"
    build_collection_from_table(lulc_table(), workspace_dir=root)
    hits = duckdb.execute(
        f"SELECT id FROM read_parquet('{root}/year=*/month=*/*.parquet', hive_partitioning=true) "
        "WHERE bbox.xmin <= 179.9 AND bbox.xmax >= 179.0 AND bbox.ymin <= 66 AND bbox.ymax >= 65"
    ).fetchall()
    assert hits == [("60W-2023",)]


def test_geopandas_reads_geometry_crs_and_bbox_covering(s2_collection, tmp_path: Path) -> None:
    root, source, _ = s2_collection
    frame = geopandas.read_parquet(root)
    assert len(frame) == 100
    assert frame.crs is not None and frame.crs.to_string() == "OGC:CRS84"
    frame = frame.sort_values("id")
    expected = source.sort_by("id")
    assert frame["id"].tolist() == expected.column("id").to_pylist()
    assert shapely.equals(
        frame.geometry.values, shapely.from_wkb(expected.column("geometry").to_numpy())
    ).all()

    lulc_root = tmp_path / "lulc"
    build_collection_from_table(lulc_table(), workspace_dir=lulc_root)
    near_dateline = geopandas.read_parquet(lulc_root, bbox=(179.0, 65.0, 179.9, 66.0))
    assert near_dateline["id"].tolist() == ["60W-2023"]


# --------------------------------------------------------------------------- S3


def s3_objects(moto: MotoS3, prefix: str) -> dict[str, str]:
    listing = moto.client().list_objects_v2(Bucket=moto.private_bucket, Prefix=prefix)
    return {o["Key"][len(prefix) :]: o["ETag"] for o in listing.get("Contents", [])}


def test_s3_write_open_rewrite_and_crash(moto_s3: MotoS3) -> None:
    prefix = f"collections/{uuid.uuid4().hex}/"
    uri = f"s3://{moto_s3.private_bucket}/{prefix}".rstrip("/")
    options = {"client_kwargs": {"endpoint_url": moto_s3.endpoint_url}, "skip_instance_cache": True}
    table = pa.concat_tables([records(["jan-1", "jan-2"], 1), records(["feb-1"], 2)])

    built = build_collection_from_table(
        table, name="s3-demo", workspace_dir=uri, storage_options=options
    )
    assert built.uri == uri and built.name == "s3-demo"
    first = s3_objects(moto_s3, prefix)
    assert sorted(first) == ["year=2024/month=1/part-0.parquet", "year=2024/month=2/part-0.parquet"]
    body = moto_s3.client().get_object(Bucket=moto_s3.private_bucket, Key=prefix + sorted(first)[0])
    check_geoparquet_1_1(pq.ParquetFile(pa.BufferReader(body["Body"].read())))

    # A crash after staging January: the live object is untouched, the staged one removed.
    update = normalize_table(records(["jan-3"], 1))
    with pytest.raises(RuntimeError, match="simulated crash"):
        write_collection(
            update,
            uri,
            info=CollectionInfo(),
            storage_options=options,
            before_commit=crash("year=2024/month=1"),
        )
    assert s3_objects(moto_s3, prefix) == first
    reopened = Collection.open(uri, storage_options=options)
    assert ids_of(reopened) == ["feb-1", "jan-1", "jan-2"]

    # A real rewrite of January: replaced in place, February's object untouched, nothing stale.
    write_collection(update, uri, info=CollectionInfo(name="s3-demo"), storage_options=options)
    after = s3_objects(moto_s3, prefix)
    assert sorted(after) == sorted(first)
    assert after["year=2024/month=2/part-0.parquet"] == first["year=2024/month=2/part-0.parquet"]
    assert after["year=2024/month=1/part-0.parquet"] != first["year=2024/month=1/part-0.parquet"]
    reopened = Collection.open(uri, storage_options=options)
    assert ids_of(reopened) == ["feb-1", "jan-3"]
    assert ids_of(reopened.filter(bbox=(1.0, 39.0, 2.2, 40.2))) == ["jan-3"]
