"""``PartitionedWriter``: a stream of tables written as atomically swapped hive partitions.

Same standards as ``test_collection.py``: local files in ``tmp_path``, S3 on a real moto
server, DuckDB reading the output; the only injected fault is the crash simulation raised
from the ``before_commit`` hook or from inside the ``with`` block.
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from servers.moto_s3 import MotoS3

from rasteret_assets.collection import (
    Collection,
    CollectionInfo,
    PartitionedWriter,
    write_collection,
)
from rasteret_assets.contract import ContractError
from rasteret_assets.ingest import normalize_table

S2_1000 = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "geoparquet"
S2_1000 = S2_1000 / "pc_sentinel-2-l2a_1000.parquet"


@pytest.fixture(scope="module")
def s2() -> pa.Table:
    if not S2_1000.exists():
        pytest.skip(f"shared fixture {S2_1000} not found")
    return normalize_table(pq.read_table(S2_1000))


def chunks(table: pa.Table, size: int) -> list[pa.Table]:
    return [table.slice(i, size) for i in range(0, table.num_rows, size)]


def files_of(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_stream_matches_write_collection(s2: pa.Table, tmp_path: Path) -> None:
    info = CollectionInfo(name="s2", data_source="pc")
    write_collection(s2, tmp_path / "whole", info=info)
    with PartitionedWriter(tmp_path / "stream", info=info, flush_rows=10_000) as writer:
        for piece in chunks(s2, 97):
            writer.write(piece)
    assert writer.rows_written == s2.num_rows
    assert [Path(c).relative_to(tmp_path / "stream").as_posix() for c in writer.committed] == [
        "year=2024/month=7/part-0.parquet",
        "year=2024/month=8/part-0.parquet",
    ]
    whole, stream = Collection.open(tmp_path / "whole"), Collection.open(tmp_path / "stream")
    # One flush per month: the same rows in the same (Z-)order as the one-shot writer.
    for month in ("month=7", "month=8"):
        a = pq.read_table(next((tmp_path / "whole").rglob(f"{month}/*.parquet")))
        b = pq.read_table(next((tmp_path / "stream").rglob(f"{month}/*.parquet")))
        assert a.equals(b)
        geo_a = json.loads(a.schema.metadata[b"geo"])
        assert geo_a == json.loads(b.schema.metadata[b"geo"])
    assert whole.info.name == stream.info.name == "s2"
    for path in (tmp_path / "stream").rglob("*.parquet"):
        footer = pq.read_schema(path).metadata
        assert (footer[b"name"], footer[b"data_source"]) == (b"s2", b"pc")
        assert footer[b"rasteret_collection_version"] == b"1"


def test_pieces_add_up_to_one_valid_geoparquet_file(s2: pa.Table, tmp_path: Path) -> None:
    root = tmp_path / "c"
    with PartitionedWriter(root, flush_rows=50, row_group_size=25) as writer:
        for piece in chunks(s2, 40):
            writer.write(piece)
    for path in root.rglob("*.parquet"):
        parquet = pq.ParquetFile(path)
        data = parquet.read()
        assert parquet.metadata.num_row_groups >= data.num_rows // 50
        # The footer describes every piece: bbox is the union of all rows' boxes.
        geo = json.loads(pq.read_schema(path).metadata[b"geo"])
        assert geo == json.loads(parquet.metadata.metadata[b"geo"])
        box = data.column("bbox")
        expected = [
            pc.min(pc.struct_field(box, "xmin")).as_py(),
            pc.min(pc.struct_field(box, "ymin")).as_py(),
            pc.max(pc.struct_field(box, "xmax")).as_py(),
            pc.max(pc.struct_field(box, "ymax")).as_py(),
        ]
        assert geo["columns"]["geometry"]["bbox"] == expected
        assert geo["columns"]["geometry"]["geometry_types"] == ["Polygon"]
        assert b"rasteret_assets" in pq.read_schema(path).metadata
        assert data.schema.field("scene_bbox").type == pa.list_(pa.float64(), 4)
    rows = duckdb.sql(
        f"SELECT count(*), count(geometry), min(bbox.xmin) "
        f"FROM read_parquet('{root}/**/*.parquet', hive_partitioning = true)"
    ).fetchall()[0]
    assert rows[:2] == (s2.num_rows, s2.num_rows)
    assert rows[2] == pc.min(pc.struct_field(s2.column("bbox"), "xmin")).as_py()


def test_an_error_in_the_block_discards_every_staged_file(s2: pa.Table, tmp_path: Path) -> None:
    root = tmp_path / "c"
    write_collection(s2.slice(0, 100), root)
    before = files_of(root)
    with (
        pytest.raises(RuntimeError, match="source broke"),
        PartitionedWriter(root, flush_rows=10) as writer,
    ):
        for piece in chunks(s2, 60)[:5]:
            writer.write(piece)
        assert [p for p in root.rglob(".*.tmp")]  # staged while writing
        raise RuntimeError("source broke")
    assert files_of(root) == before
    assert writer.committed == []


def test_a_crash_before_a_swap_keeps_that_partition_old(s2: pa.Table, tmp_path: Path) -> None:
    root = tmp_path / "c"
    write_collection(s2, root)
    july, august = (sorted(root.rglob("*.parquet"))[i].read_bytes() for i in (0, 1))

    def crash(relative: str) -> None:
        if relative == "year=2024/month=8":
            raise RuntimeError("simulated crash")

    month = s2.column("month")
    smaller = pa.concat_tables(
        [s2.filter(pc.equal(month, 7)).slice(0, 150), s2.filter(pc.equal(month, 8)).slice(0, 150)]
    )
    with (
        pytest.raises(RuntimeError, match="simulated crash"),
        PartitionedWriter(root, before_commit=crash) as writer,
    ):
        writer.write(smaller)
    paths = sorted(root.rglob("*.parquet"))
    assert paths[0].read_bytes() != july  # July was swapped in before the crash
    assert paths[1].read_bytes() == august
    assert not list(root.rglob(".*"))


def test_pieces_must_share_one_schema(s2: pa.Table, tmp_path: Path) -> None:
    first, second = chunks(s2.filter(pc.equal(s2.column("month"), 7)), 50)[:2]
    with (
        pytest.raises(ContractError, match="'eo:cloud_cover' changed type"),
        PartitionedWriter(tmp_path / "c", flush_rows=1) as writer,
    ):
        writer.write(first)
        index = second.column_names.index("eo:cloud_cover")
        writer.write(second.set_column(index, "eo:cloud_cover", pc.cast(second[index], "float32")))
    assert not list((tmp_path / "c").rglob("*.parquet"))
    with pytest.raises(RuntimeError, match="context manager"):
        PartitionedWriter(tmp_path / "d").write(first)


def test_buffers_are_bounded_by_bytes(s2: pa.Table, tmp_path: Path) -> None:
    piece_bytes = chunks(s2, 50)[0].nbytes
    with PartitionedWriter(tmp_path / "c", buffer_bytes=2 * piece_bytes) as writer:
        for piece in chunks(s2, 50):
            writer.write(piece)
            assert writer.buffered_bytes <= 2 * piece_bytes
    assert Collection.open(tmp_path / "c").count_rows() == s2.num_rows


def test_stream_to_s3(s2: pa.Table, moto_s3: MotoS3) -> None:
    uri = f"s3://{moto_s3.private_bucket}/streamed"
    options = {"endpoint_url": moto_s3.endpoint_url}
    with PartitionedWriter(uri, storage_options=options, flush_rows=200) as writer:
        for piece in chunks(s2, 128):
            writer.write(piece)
    assert all(c.startswith(uri) for c in writer.committed)
    collection = Collection.open(uri, storage_options=options)
    assert collection.count_rows() == s2.num_rows
    keys = [
        o["Key"]
        for o in moto_s3.client().list_objects_v2(Bucket=moto_s3.private_bucket)["Contents"]
        if o["Key"].startswith("streamed/")
    ]
    assert sorted(keys) == [
        "streamed/year=2024/month=7/part-0.parquet",
        "streamed/year=2024/month=8/part-0.parquet",
    ]
