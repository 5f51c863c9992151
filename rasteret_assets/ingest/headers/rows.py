"""Header rows: the one format a parsed header travels in, from the engine to every join.

One row per URL (:data:`~rasteret_assets.contract.COG_HEADERS_SCHEMA`): what happened to
the URL (status, error class, cost) and, for successes, every IFD level and geo field. The
engine's outcomes become rows in batches as they arrive (:func:`outcomes_table`), are
streamed into Parquet by :func:`write_outcomes` (the ``cog_headers`` asset) or held as Arrow
by the library functions, and are joined back to records by :mod:`.join`.

A URL has one identity everywhere (:func:`url_identity`): the href without userinfo and
signing parameters. That is what the ``url`` column holds and what the join looks up, so a
presigned href and the same object's stored, credential-free href are one URL.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from rasteret_assets.contract import COG_HEADERS_SCHEMA, IFD_TYPE, ifd_struct_array
from rasteret_assets.ingest.headers.engine import HeaderOutcome
from rasteret_assets.ingest.normalize.credentials import strip_href_array

#: The columns a join reads; the rest describe the fetch.
JOIN_COLUMNS = (
    "url",
    "status",
    "etag",
    "size",
    "ifds",
    "transform",
    "pixel_scale",
    "tiepoint",
    "nodata",
    "epsg",
    "crs",
)

#: The ``cog_headers`` columns without the parsed header: a light per-URL account.
HEADER_STATUS_SCHEMA = pa.schema(
    COG_HEADERS_SCHEMA.field(name)
    for name in COG_HEADERS_SCHEMA.names[: COG_HEADERS_SCHEMA.get_field_index("ifds")]
)


def url_identity(hrefs: pa.Array) -> pa.Array:
    """The identity of each href: without userinfo and signing query parameters."""
    return strip_href_array(hrefs)[0]


def add_urls(urls: dict[str, str], hrefs: pa.Array) -> None:
    """Add ``{identity: href}`` for each distinct href (the first href of an identity wins)."""
    hrefs = hrefs.drop_null().unique()
    for key, href in zip(url_identity(hrefs).to_pylist(), hrefs.to_pylist(), strict=True):
        urls.setdefault(key, href)


def outcomes_table(outcomes: Sequence[HeaderOutcome]) -> pa.Table:
    """One row per URL with status, cost and (for successes) every IFD level and geo field."""
    return pa.Table.from_batches([outcomes_batch(outcomes)])


def outcomes_batch(outcomes: Sequence[HeaderOutcome]) -> pa.RecordBatch:
    """:func:`outcomes_table` as one record batch (what a worker process sends)."""
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
        # Credentials never reach a written table; the identity is what joins look up.
        "url": url_identity(pa.array([o.url for o in outcomes], pa.string())),
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
    return pa.RecordBatch.from_pydict(columns, schema=COG_HEADERS_SCHEMA)


async def outcome_batches(
    outcomes: AsyncIterator[HeaderOutcome], *, batch_size: int = 1000
) -> AsyncIterator[pa.Table]:
    """Header rows in tables of ``batch_size`` as outcomes arrive (the last may be shorter).

    Converting as they arrive is what keeps memory flat: a parsed header is kilobytes of
    Python objects, its Arrow row a fraction of that.
    """
    batch: list[HeaderOutcome] = []
    async for outcome in outcomes:
        batch.append(outcome)
        if len(batch) >= batch_size:
            yield outcomes_table(batch)
            batch.clear()
    if batch:
        yield outcomes_table(batch)


def status_counts(rows: pa.Table) -> Counter[str]:
    """How many rows have each status."""
    counts = pc.value_counts(rows.column("status")).to_pylist() if rows.num_rows else []
    return Counter({c["values"]: c["counts"] for c in counts})


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
    with pq.ParquetWriter(sink, COG_HEADERS_SCHEMA, compression="zstd") as writer:
        async for rows in outcome_batches(outcomes, batch_size=batch_size):
            counts.update(status_counts(rows))
            writer.write_table(rows)
        if not counts:
            writer.write_table(COG_HEADERS_SCHEMA.empty_table())
    return counts
