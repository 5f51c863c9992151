"""COG header enrichment: ``{band}_metadata`` columns for a record table.

Both builders end here. URLs are deduplicated (one fetch serves every record and band that
uses it), fetched by the streaming engine of :mod:`header_fetch`, and the results are joined
back by row position — never by record id, so records can never swap metadata.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rasteret_assets.contract import (
    BAND_METADATA_TYPE,
    BandHeader,
    band_metadata_array,
    metadata_column,
)
from rasteret_assets.ingest.headers.engine import (
    HeaderOutcome,
    ProgressLog,
    fetch_headers,
)
from rasteret_assets.ingest.headers.rows import outcomes_table
from rasteret_assets.ingest.normalize.columns import with_column
from rasteret_assets.storage import (
    RetryPolicy,
    StorageBackend,
    StorageOptions,
    StorageRouter,
    redact_url,
)

logger = logging.getLogger(__name__)

UrlIndex = Mapping[str, Mapping[str, Mapping[str, Any]]]


def build_url_index_from_assets(
    table: pa.Table, band_codes: list[str] | None = None
) -> dict[str, dict[str, dict[str, Any]]]:
    """``{record_id: {band: {"url": href, "band_index": i}}}`` from the ``assets`` column.

    Assets may be ``{href, band_index}`` structs or bare href strings; ``band_codes`` limits
    the bands. Duplicate ids are rejected because an id-keyed index would merge their assets.
    """
    reject_duplicate_ids(table)
    wanted = set(band_codes) if band_codes else None
    index: dict[str, dict[str, dict[str, Any]]] = {}
    for record_id, assets in zip(
        table.column("id").to_pylist(), table.column("assets").to_pylist(), strict=True
    ):
        items = assets.items() if isinstance(assets, dict) else (assets or [])
        bands: dict[str, dict[str, Any]] = {}
        for band, asset in items:
            if asset is None or (wanted is not None and band not in wanted):
                continue
            href = asset if isinstance(asset, str) else asset.get("href")
            if href:
                band_index = 0 if isinstance(asset, str) else asset.get("band_index") or 0
                bands[band] = {"url": href, "band_index": int(band_index)}
        if bands:
            index[str(record_id)] = bands
    return index


def reject_duplicate_ids(table: pa.Table) -> None:
    """Raise ``ValueError`` naming duplicate record ids (some of them, and how many)."""
    counts = pc.value_counts(table.column("id"))
    repeated = [v["values"] for v in counts.to_pylist() if v["counts"] > 1]
    if repeated:
        shown = ", ".join(repr(r) for r in repeated[:5])
        raise ValueError(f"{len(repeated)} duplicate record ids, e.g. {shown}")


@dataclass
class EnrichmentResult:
    """The enriched table plus one ``cog_headers`` row per unique URL."""

    table: pa.Table
    outcomes: pa.Table
    band_index_errors: list[str] = field(default_factory=list)

    @property
    def status_counts(self) -> dict[str, int]:
        return {
            row["values"]: row["counts"]
            for row in pc.value_counts(self.outcomes.column("status")).to_pylist()
        }


class BandColumns:
    """Per-band results flushed to Arrow every ``batch_size`` outcomes, scattered at the end.

    Flushing is what keeps enrichment memory flat: a parsed header is a few KB of Python
    objects, its Arrow row a fraction of that, so headers are converted as they arrive.
    """

    def __init__(self, bands: Sequence[str], n_rows: int) -> None:
        self.n_rows = n_rows
        self.pending: dict[str, list[tuple[int, BandHeader]]] = {b: [] for b in bands}
        self.chunks: dict[str, list[pa.StructArray]] = {b: [] for b in bands}
        self.rows: dict[str, list[np.ndarray]] = {b: [] for b in bands}

    def add(self, band: str, row: int, value: BandHeader) -> None:
        self.pending[band].append((row, value))

    def flush(self) -> None:
        for band, items in self.pending.items():
            if items:
                self.rows[band].append(np.fromiter((r for r, _ in items), np.int64, len(items)))
                self.chunks[band].append(band_metadata_array([v for _, v in items]))
                items.clear()

    def column(self, band: str) -> pa.Array:
        self.flush()
        if not self.chunks[band]:
            return pa.nulls(self.n_rows, BAND_METADATA_TYPE)
        values = pa.concat_arrays(self.chunks[band])
        positions = np.full(self.n_rows, -1, dtype=np.int64)
        positions[np.concatenate(self.rows[band])] = np.arange(len(values))
        indices = pa.array(positions, mask=positions < 0)
        return pc.take(values, indices)


def _default_backend(max_concurrent: int) -> StorageRouter:
    options = StorageOptions(
        max_connections=max_concurrent, max_connections_per_host=max_concurrent
    )
    return StorageRouter(options)


async def enrich_table(
    table: pa.Table,
    url_index: UrlIndex,
    band_codes: list[str],
    *,
    max_concurrent: int = 300,
    batch_size: int = 100,
    backend: StorageBackend | None = None,
    retry: RetryPolicy | None = None,
    first_read: int | None = None,
    progress_every: float = 5.0,
) -> EnrichmentResult:
    """Fetch every unique asset URL's header and add one ``{band}_metadata`` column per band."""
    if not band_codes:
        raise ValueError("band_codes is empty: name at least one band to enrich")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    reject_duplicate_ids(table)
    ids = [str(i) for i in table.column("id").to_pylist()]
    users: dict[str, list[tuple[int, str, int]]] = defaultdict(list)
    for row, record_id in enumerate(ids):
        for band, asset in url_index.get(record_id, {}).items():
            if band in band_codes and asset.get("url"):
                users[asset["url"]].append((row, band, int(asset.get("band_index") or 0)))
    if not users:
        raise ValueError(
            f"no asset URLs for bands {band_codes} in {len(ids)} records: check band_codes "
            "against the assets of the records"
        )

    own_backend = backend is None
    store = backend if backend is not None else _default_backend(max_concurrent)
    columns = BandColumns(band_codes, len(ids))
    outcome_chunks: list[pa.Table] = []
    buffered: list[HeaderOutcome] = []
    band_index_errors: list[str] = []
    progress = ProgressLog(len(users), every_seconds=progress_every)
    kwargs = {} if first_read is None else {"first_read": first_read}
    try:
        async for outcome in fetch_headers(
            users, store, max_concurrent=max_concurrent, retry=retry, progress=progress, **kwargs
        ):
            if outcome.header is not None:
                samples = outcome.header.image.samples_per_pixel
                for row, band, band_index in users[outcome.url]:
                    if band_index < samples:
                        columns.add(
                            band,
                            row,
                            BandHeader(outcome.header, band_index, outcome.etag, outcome.size),
                        )
                    else:
                        band_index_errors.append(
                            f"record {ids[row]!r} band {band!r}: band_index {band_index} but "
                            f"{redact_url(outcome.url)} has {samples} samples"
                        )
            buffered.append(outcome)
            if len(buffered) >= batch_size:
                outcome_chunks.append(outcomes_table(buffered))
                buffered.clear()
                columns.flush()
    finally:
        if own_backend:
            await store.close()
    outcome_chunks.append(outcomes_table(buffered))
    for message in band_index_errors:
        logger.warning("no metadata for %s", message)

    enriched = table
    for band in band_codes:
        name = metadata_column(band)
        column = columns.column(band)
        enriched = with_column(enriched, name, column)
    return EnrichmentResult(enriched, pa.concat_tables(outcome_chunks), band_index_errors)


async def enrich_table_with_cog_metadata(
    table: pa.Table,
    url_index: UrlIndex,
    band_codes: list[str],
    *,
    max_concurrent: int = 300,
    batch_size: int = 100,
    backend: StorageBackend | None = None,
) -> pa.Table:
    """Parse COG headers and add ``{band}_metadata`` columns (the reference API's signature).

    A failed asset leaves a null in its row and band; :func:`enrich_table` also returns why.
    """
    result = await enrich_table(
        table,
        url_index,
        band_codes,
        max_concurrent=max_concurrent,
        batch_size=batch_size,
        backend=backend,
    )
    return result.table


def add_band_metadata_columns(
    table: pa.Table, band_codes: list[str], processed_items: list[dict]
) -> pa.Table:
    """Append ``{band}_metadata`` columns from already-parsed headers.

    Each item is ``{"record_id", "band", "header"}`` (a parsed :class:`TiffHeader`) with
    optional ``band_index``, ``etag`` and ``size``. Rows are matched by id, which must be unique.
    """
    reject_duplicate_ids(table)
    row_of = {str(record_id): row for row, record_id in enumerate(table.column("id").to_pylist())}
    columns = BandColumns(band_codes, table.num_rows)
    for item in processed_items:
        record_id, band = str(item["record_id"]), item["band"]
        if record_id not in row_of:
            raise ValueError(f"processed item for unknown record id {record_id!r}")
        if band not in band_codes:
            continue
        value = BandHeader(
            item["header"], int(item.get("band_index") or 0), item.get("etag"), item.get("size")
        )
        columns.add(band, row_of[record_id], value)
    for band in band_codes:
        table = table.append_column(metadata_column(band), columns.column(band))
    return table
