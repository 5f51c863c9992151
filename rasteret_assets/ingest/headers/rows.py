"""Header outcomes as Arrow: the rows of the ``cog_headers`` table."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from rasteret_assets.contract import COG_HEADERS_SCHEMA, IFD_TYPE, ifd_struct_array
from rasteret_assets.ingest.headers.engine import HeaderOutcome
from rasteret_assets.storage import redact_url


def outcomes_table(outcomes: Sequence[HeaderOutcome]) -> pa.Table:
    """One row per URL with status, cost and (for successes) every IFD level and geo field."""
    headers = [o.header for o in outcomes]
    geos = [None if h is None else h.geo for h in headers]
    flat = [(ifd, None) for h in headers if h is not None for ifd in h.ifds]
    offsets = [0]
    for header in headers:
        offsets.append(offsets[-1] + (0 if header is None else len(header.ifds)))
    no_header = pa.array([h is None for h in headers], pa.bool_())
    ifds = pa.ListArray.from_arrays(
        pa.array(offsets, pa.int32()),
        ifd_struct_array(flat, IFD_TYPE),
        type=pa.list_(IFD_TYPE),
        mask=no_header,
    )

    def geo_list(name: str) -> pa.Array:
        values = [None if g is None else getattr(g, name) for g in geos]
        return pa.array([None if v is None else list(v) for v in values], pa.list_(pa.float64()))

    columns = {
        # Signed query strings are credentials: they never reach a written table.
        "url": pa.array([redact_url(o.url) for o in outcomes], pa.string()),
        "status": pa.array([o.status for o in outcomes], pa.string()),
        "error": pa.array([o.error for o in outcomes], pa.string()),
        "attempts": pa.array([o.attempts for o in outcomes], pa.int32()),
        "requests": pa.array([o.requests for o in outcomes], pa.int32()),
        "bytes_read": pa.array([o.bytes_read for o in outcomes], pa.int64()),
        "elapsed_s": pa.array([o.elapsed for o in outcomes], pa.float64()),
        "etag": pa.array([o.etag for o in outcomes], pa.string()),
        "size": pa.array([o.size for o in outcomes], pa.int64()),
        "ifds": ifds,
        "transform": geo_list("transform"),
        "pixel_scale": geo_list("pixel_scale"),
        "tiepoint": geo_list("tiepoint"),
        "nodata": pa.array([None if g is None else g.nodata for g in geos], pa.float64()),
        "epsg": pa.array([None if g is None else g.epsg for g in geos], pa.int32()),
        "crs": pa.array([None if g is None else g.crs for g in geos], pa.string()),
    }
    return pa.Table.from_pydict(columns, schema=COG_HEADERS_SCHEMA)


async def write_outcomes(
    outcomes: AsyncIterator[HeaderOutcome],
    sink: str | Path | pa.NativeFile,
    *,
    batch_size: int = 1000,
) -> Counter[str]:
    """Stream outcomes into one Parquet file, ``batch_size`` rows per row group.

    Memory stays bounded by one batch however many URLs flow through, which is what lets a
    month of millions of assets run on a small worker. Returns the count per status.
    """
    counts: Counter[str] = Counter()
    batch: list[HeaderOutcome] = []
    with pq.ParquetWriter(sink, COG_HEADERS_SCHEMA, compression="zstd") as writer:
        async for outcome in outcomes:
            counts[outcome.status] += 1
            batch.append(outcome)
            if len(batch) >= batch_size:
                writer.write_table(outcomes_table(batch))
                batch.clear()
        if batch or not counts:
            writer.write_table(outcomes_table(batch))
    return counts
