"""Synthetic stac-geoparquet-like record tables of any length, built column-wise in Arrow.

Shaped like the real Planetary Computer exports in ``../shared/fixtures/geoparquet`` (assets
are structs with ``href``, ``type``, ``roles``; ``datetime`` is ``timestamp[ms, UTC]``;
geometry is WKB; ``bbox`` a struct) but generated in vectorised Arrow/numpy calls, so a
million rows take seconds. Used by the record-table tests and ``benchmarks/``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import shapely

COG_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"


def _constant(value: str, n: int) -> pa.Array:
    return pa.DictionaryArray.from_arrays(
        pa.array(np.zeros(n, dtype=np.int32)), pa.array([value])
    ).dictionary_decode()


def _roles(role: str, n: int) -> pa.ListArray:
    return pa.ListArray.from_arrays(pa.array(np.arange(n + 1, dtype=np.int32)), _constant(role, n))


def _asset(hrefs: pa.Array, media_type: str, role: str) -> pa.StructArray:
    n = len(hrefs)
    return pa.StructArray.from_arrays(
        [hrefs, _constant(media_type, n), _roles(role, n)], names=["href", "type", "roles"]
    )


def synthetic_records(
    n: int,
    *,
    offset: int = 0,
    seed: int = 0,
    start: datetime = datetime(2024, 1, 1, tzinfo=UTC),
    months: int = 12,
    files: int = 30,
    bands: Sequence[str] = ("B02", "B03", "B04"),
    href_base: str = "https://example.com/cogs",
    unique_hrefs: bool = False,
    padding: int = 0,
    id_prefix: str = "SYN",
) -> pa.Table:
    """``n`` records (rows ``offset`` … ``offset + n - 1``) over ``months`` months from ``start``.

    Band hrefs are ``{href_base}/{k}/{band}.tif`` with ``k = row % files`` (a few files shared
    by many rows), or ``k = row`` with ``unique_hrefs``; every record also has a JPEG
    ``thumbnail`` asset. ``padding`` adds a string column of that many bytes per row.
    """
    rng = np.random.default_rng(seed)
    start_ms = int(start.timestamp() * 1000)
    span_ms = int(months * 30.4 * 24 * 3600 * 1000)
    times = np.sort(start_ms + rng.integers(0, span_ms, n))
    rng.shuffle(times)
    xs = rng.uniform(-179, 178, n)
    ys = rng.uniform(-80, 79, n)
    boxes = shapely.box(xs, ys, xs + 1.0, ys + 1.0)
    rows = np.arange(offset, offset + n)
    numbers = pa.array(rows).cast(pa.string())
    keys = numbers if unique_hrefs else pa.array(rows % files).cast(pa.string())
    base = href_base.rstrip("/") + "/"
    assets = {
        band: _asset(pc.binary_join_element_wise(base, keys, f"/{band}.tif", ""), COG_TYPE, "data")
        for band in bands
    }
    assets["thumbnail"] = _asset(
        pc.binary_join_element_wise(base, keys, "/thumb.jpg", ""), "image/jpeg", "thumbnail"
    )
    columns = {
        "id": pc.binary_join_element_wise(f"{id_prefix}_", numbers, ""),
        "datetime": pa.array(times, pa.timestamp("ms", tz="UTC")),
        "geometry": pa.array(shapely.to_wkb(boxes), pa.binary()),
        "assets": pa.StructArray.from_arrays(list(assets.values()), names=list(assets)),
        "proj:epsg": pa.array(32601 + rows % 60, pa.int64()),
        "eo:cloud_cover": pa.array(rng.uniform(0, 100, n)),
        "bbox": pa.StructArray.from_arrays(
            [pa.array(xs), pa.array(ys), pa.array(xs + 1.0), pa.array(ys + 1.0)],
            names=["xmin", "ymin", "xmax", "ymax"],
        ),
    }
    if padding:
        columns["description"] = _constant("x" * padding, n)
    return pa.table(columns)


def write_synthetic(path: Path, n: int, *, row_group_size: int = 65_536, **kwargs: object) -> Path:
    """Write :func:`synthetic_records` in slices, so even the generator stays small."""
    step = max(row_group_size, 1)
    writer = None
    try:
        for offset in range(0, n, step):
            count = min(step, n - offset)
            part = synthetic_records(count, offset=offset, seed=offset, **kwargs)  # type: ignore[arg-type]
            if writer is None:
                writer = pq.ParquetWriter(path, part.schema, compression="zstd")
            writer.write_table(part, row_group_size=row_group_size)
    finally:
        if writer is not None:
            writer.close()
    return path
