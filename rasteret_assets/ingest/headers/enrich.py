"""The reference API's enrichment functions, on the one engine and the one join.

``url_index`` (``{record_id: {band: {"url", "band_index"}}}``) names the uses; every unique
URL is read once by :mod:`.engine`, its outcome becomes a header row (:mod:`.rows`) as it
arrives, and :func:`.join.join_headers` puts the rows back by row position — never by a
Python object per header, and never by record id after the index is read, so records can
never swap metadata.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from rasteret_assets.contract import (
    ASSET_TYPE,
    ASSETS,
    BAND_METADATA_TYPE,
    CRS,
    ID,
    PROJ_EPSG,
    metadata_column,
)
from rasteret_assets.ingest.headers.engine import (
    DEFAULT_MAX_CONCURRENT,
    HeaderOutcome,
    ProgressLog,
    fetch_headers,
)
from rasteret_assets.ingest.headers.join import JoinReport, join_headers
from rasteret_assets.ingest.headers.rows import (
    add_urls,
    outcome_batches,
    outcomes_table,
    status_counts,
)
from rasteret_assets.ingest.normalize.columns import with_column
from rasteret_assets.ingest.normalize.crs import SOURCE_COLUMNS as CRS_SOURCE_COLUMNS
from rasteret_assets.sources.registry import CloudConfig
from rasteret_assets.storage import (
    RetryPolicy,
    StorageBackend,
    StorageOptions,
    StorageRouter,
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
        table.column(ID).to_pylist(), table.column(ASSETS).to_pylist(), strict=True
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
    counts = pc.value_counts(table.column(ID))
    repeated = [v["values"] for v in counts.to_pylist() if v["counts"] > 1]
    if repeated:
        shown = ", ".join(repr(r) for r in repeated[:5])
        raise ValueError(f"{len(repeated)} duplicate record ids, e.g. {shown}")


@dataclass
class EnrichmentResult:
    """The enriched table plus one ``cog_headers`` row per unique URL."""

    table: pa.Table
    outcomes: pa.Table
    report: JoinReport = field(default_factory=JoinReport)

    @property
    def band_index_errors(self) -> list[str]:
        return self.report.band_index_examples

    @property
    def status_counts(self) -> dict[str, int]:
        return dict(status_counts(self.outcomes))


def default_backend(max_concurrent: int, cloud: CloudConfig | None = None) -> StorageRouter:
    """The storage every library function and builder reads with when the caller gives none.

    ``max_concurrent`` is the number of URLs in flight; the pool gets one connection per URL
    in flight so no read waits for a socket. ``cloud`` supplies the S3 credential mode, region
    and URL signer of a registered source (its rewrites were applied when the records were
    made).
    """
    settings = cloud.storage_settings() if cloud is not None else {}
    return StorageRouter(
        StorageOptions(
            **settings,
            max_connections=max_concurrent,
            max_connections_per_host=max_concurrent,
        )
    )


def uses_table(table: pa.Table, url_index: UrlIndex, band_codes: list[str]) -> pa.Table:
    """``table``'s ids and CRS columns with ``assets`` (``{band: {href, band_index}}``) made
    from the index: what the join needs, in ``table``'s row order."""
    ids = [str(i) for i in table.column(ID).to_pylist()]
    columns = []
    for band in band_codes:
        refs = []
        for record_id in ids:
            asset = url_index.get(record_id, {}).get(band)
            url = asset.get("url") if asset else None
            refs.append(
                {"href": url, "band_index": int(asset.get("band_index") or 0)} if url else None
            )
        columns.append(pa.array(refs, ASSET_TYPE))
    assets = pa.StructArray.from_arrays(columns, names=band_codes) if band_codes else None
    crs_columns = {n: table.column(n) for n in CRS_SOURCE_COLUMNS if n in table.column_names}
    return pa.table({ID: ids, ASSETS: assets, **crs_columns})


def urls_to_read(uses: pa.Table, band_codes: list[str]) -> dict[str, str]:
    """``{identity: href to read}`` of every asset URL ``uses`` names (first href wins)."""
    assets = uses.column(ASSETS).combine_chunks()
    urls: dict[str, str] = {}
    for band in band_codes:
        add_urls(urls, pc.struct_field(assets.field(band), "href"))
    return urls


async def read_header_rows(
    urls: list[str],
    backend: StorageBackend,
    *,
    max_concurrent: int,
    retry: RetryPolicy | None = None,
    first_read: int | None = None,
    batch_size: int = 1000,
    progress_every: float = 5.0,
) -> pa.Table:
    """One header row per URL, read by the engine and converted batch by batch."""
    kwargs = {} if first_read is None else {"first_read": first_read}
    progress = ProgressLog(len(urls), every_seconds=progress_every)
    stream = fetch_headers(
        urls, backend, max_concurrent=max_concurrent, retry=retry, progress=progress, **kwargs
    )
    batches = [rows async for rows in outcome_batches(stream, batch_size=batch_size)]
    return pa.concat_tables(batches) if batches else outcomes_table([])


async def enrich_table(
    table: pa.Table,
    url_index: UrlIndex,
    band_codes: list[str],
    *,
    max_concurrent: int = DEFAULT_MAX_CONCURRENT,
    batch_size: int = 100,
    backend: StorageBackend | None = None,
    retry: RetryPolicy | None = None,
    first_read: int | None = None,
    progress_every: float = 5.0,
) -> EnrichmentResult:
    """Fetch every unique asset URL's header; add ``{band}_metadata``, ``proj:epsg``, ``crs``.

    ``batch_size`` is how many outcomes are converted to header rows at a time.
    """
    if not band_codes:
        raise ValueError("band_codes is empty: name at least one band to enrich")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    reject_duplicate_ids(table)
    uses = uses_table(table, url_index, band_codes)
    urls = urls_to_read(uses, band_codes)
    if not urls:
        raise ValueError(
            f"no asset URLs for bands {band_codes} in {table.num_rows} records: check "
            "band_codes against the assets of the records"
        )
    store = backend if backend is not None else default_backend(max_concurrent)
    try:
        rows = await read_header_rows(
            list(urls.values()),
            store,
            max_concurrent=max_concurrent,
            retry=retry,
            first_read=first_read,
            batch_size=batch_size,
            progress_every=progress_every,
        )
    finally:
        if backend is None:
            await store.close()
    joined, report = join_headers(uses, rows, band_codes)
    for message in report.band_index_examples:
        logger.warning("no metadata for %s", message)
    return EnrichmentResult(_carry(table, joined, band_codes), rows, report)


def _carry(table: pa.Table, joined: pa.Table, band_codes: list[str]) -> pa.Table:
    """``table`` with the join's metadata and CRS columns (the join kept declared CRSs)."""
    for name in [*map(metadata_column, band_codes), PROJ_EPSG, CRS]:
        table = with_column(table, name, joined.column(name))
    return table


async def enrich_table_with_cog_metadata(
    table: pa.Table,
    url_index: UrlIndex,
    band_codes: list[str],
    *,
    max_concurrent: int = DEFAULT_MAX_CONCURRENT,
    batch_size: int = 100,
    backend: StorageBackend | None = None,
) -> pa.Table:
    """Parse COG headers and add ``{band}_metadata`` columns (the reference API's signature).

    Row-level ``proj:epsg`` and ``crs`` are filled from the headers where the table has
    none. A failed asset leaves a null in its row and band; :func:`enrich_table` also says
    why.
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

    An item is ``{"record_id", "band", ...}`` in either of two shapes: the reference's
    processed item, whose metadata fields are plain values (``width``, ``height``,
    ``tile_offsets`` … already sliced for the band), or ``{"header": TiffHeader}`` with
    optional ``band_index``, ``etag`` and ``size``, which goes through the same header rows
    and join as fetched headers. Rows are matched by id, which must be unique.
    """
    reject_duplicate_ids(table)
    known = {str(record_id) for record_id in table.column(ID).to_pylist()}
    for item in processed_items:
        if str(item["record_id"]) not in known:
            raise ValueError(f"processed item for unknown record id {item['record_id']!r}")
    wanted = [item for item in processed_items if item["band"] in band_codes]
    parsed = [item for item in wanted if "header" in item]
    plain = [item for item in wanted if "header" not in item]
    joined = _join_parsed_headers(table, band_codes, parsed) if parsed else None
    ids = [str(i) for i in table.column(ID).to_pylist()]
    for band in band_codes:
        column = _plain_metadata(ids, band, plain)
        if joined is not None:
            column = pc.coalesce(joined.column(metadata_column(band)).combine_chunks(), column)
        table = table.append_column(metadata_column(band), column)
    return table


def _join_parsed_headers(table: pa.Table, band_codes: list[str], items: list[dict]) -> pa.Table:
    outcomes: list[HeaderOutcome] = []
    index: dict[str, dict[str, dict[str, Any]]] = {}
    for number, item in enumerate(items):
        key = f"processed-item:{number}"
        outcomes.append(
            HeaderOutcome(
                url=key,
                status="ok",
                error=None,
                attempts=0,
                requests=0,
                bytes_read=0,
                elapsed=0.0,
                etag=item.get("etag"),
                size=item.get("size"),
                header=item["header"],
            )
        )
        index.setdefault(str(item["record_id"]), {})[item["band"]] = {
            "url": key,
            "band_index": int(item.get("band_index") or 0),
        }
    joined, _ = join_headers(
        uses_table(table, index, band_codes), outcomes_table(outcomes), band_codes
    )
    return joined


#: The reference's processed-item keys that differ from the metadata struct's field names.
_PLAIN_RENAMES = {"width": "image_width", "height": "image_height"}
_METADATA_FIELDS = {f.name for f in BAND_METADATA_TYPE}


def _plain_metadata(ids: list[str], band: str, items: list[dict]) -> pa.StructArray:
    """One band's metadata column from the reference's processed items (null where none)."""
    by_id: dict[str, dict[str, Any]] = {}
    for item in items:
        if item["band"] != band:
            continue
        values = {_PLAIN_RENAMES.get(k, k): v for k, v in item.items()}
        by_id[str(item["record_id"])] = {k: v for k, v in values.items() if k in _METADATA_FIELDS}
    return pa.array([by_id.get(i) for i in ids], type=BAND_METADATA_TYPE)
