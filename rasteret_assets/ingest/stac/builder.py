"""``StacCollectionBuilder``: a STAC API search or a static catalog → a Collection.

The pipeline, each step in its own module:

1. records — :mod:`.stac_search` (API pages) or :mod:`.static_catalog` (document walk)
   stream item dicts; :mod:`.stac_items` turns each page into a record batch of one declared
   schema, so no list of every item is ever held;
2. band check — :class:`.band_map.BandMap` against the asset keys the records actually have,
   *before* any header is fetched;
3. headers — :func:`.enrich.enrich_table` fetches each unique asset URL's header once and adds
   ``{band}_metadata`` columns; a failed asset is a null plus a row in :attr:`outcomes`;
4. CRS — items' ``proj:code``/``proj:epsg``/… win, the parsed headers fill the gaps (the
   join does this, for every door alike);
5. collection — :func:`.normalize.build_collection_from_table`, persisted with
   ``workspace_dir``.

Registered data sources (:mod:`rasteret_assets.sources`) supply the band map, collection id,
API URL and cloud settings; explicit arguments override them.

Bad items follow the rules of :mod:`.stac_items` (typed errors, or skips that are counted);
this module adds where each item came from — ``search page N (URL)`` or the static
document — to a :class:`~.stac_items.StacItemError`, keeps the counts of the last scan in
:attr:`StacCollectionBuilder.item_counts` and logs them once per scan.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pyarrow as pa

from rasteret_assets.collection import Collection
from rasteret_assets.ingest.base import CollectionBuilder, run_sync
from rasteret_assets.ingest.headers.engine import DEFAULT_MAX_CONCURRENT
from rasteret_assets.ingest.headers.enrich import (
    EnrichmentResult,
    build_url_index_from_assets,
    default_backend,
    enrich_table,
)
from rasteret_assets.ingest.normalize.table import build_collection_from_table
from rasteret_assets.ingest.stac.band_map import BandMap
from rasteret_assets.ingest.stac.http import DEFAULT_MAX_RESPONSE_BYTES, JsonClient
from rasteret_assets.ingest.stac.items import ItemCounts, StacItemConverter, StacItemError
from rasteret_assets.ingest.stac.search import (
    DEFAULT_PAGE_SIZE,
    iter_search_pages,
    open_api,
    search_parameters,
)
from rasteret_assets.ingest.stac.static_catalog import (
    DEFAULT_CONCURRENCY,
    ItemFilter,
    walk_static_items,
)
from rasteret_assets.sources import (
    CloudConfig,
    UnknownDataSourceError,
    find_source,
    list_sources,
    stac_api_url_signer,
)
from rasteret_assets.storage import (
    RetryPolicy,
    StorageBackend,
    redact_url,
)

logger = logging.getLogger(__name__)

BoundingBox = Sequence[float]
DateRange = tuple[Any, Any]

#: Static-catalog items are converted in pages of this size (the API's page size is ``limit``).
_STATIC_PAGE = 500


@dataclass(frozen=True)
class _ItemPage:
    """Items to convert, and where they came from: one label for an API page, or one
    document per item for a static catalog."""

    items: list[dict[str, Any]]
    source: str | list[str]

    def locate(self, error: StacItemError) -> None:
        """Set ``error.source`` to the page or document of the item it names."""
        if isinstance(self.source, str):
            error.source = self.source
            return
        index = None
        if error.position is not None:
            index = error.position - 1
        elif error.item_id is not None:
            index = next(
                (n for n, item in enumerate(self.items) if item.get("id") == error.item_id), None
            )
        if index is not None:
            error.source = self.source[index]


class NoItemsError(ValueError):
    """The search or walk matched no items: there is nothing to index."""


class EnrichmentFailedError(RuntimeError):
    """Not a single asset header could be read: the hrefs or credentials are wrong.

    ``outcomes`` is the ``cog_headers`` table with every URL's error class.
    """

    def __init__(self, message: str, outcomes: pa.Table) -> None:
        super().__init__(message)
        self.outcomes = outcomes


class StacCollectionBuilder(CollectionBuilder):
    """Build a Collection from a STAC API search or a static STAC catalog.

    ``data_source`` names a registered source (band map, collection, cloud settings) or, with
    an explicit ``band_map``, any label. ``stac_api`` is the API landing page, or with
    ``static_catalog=True`` the root catalog file/URL; empty means the source's API.
    ``stac_collection`` defaults to the source's collection (API mode) and to no collection
    filter (static mode: the catalog already is the selection). ``cloud_config`` replaces the
    source's: its ``url_rewrite_patterns`` are applied to hrefs as records are made, and its
    S3 settings configure the default storage backend (an explicit ``backend`` is used as is).

    Keyword-only extras: ``page_size`` (API ``limit``), ``retry`` (one policy for search
    pages, catalog documents and header reads), ``require_conformance`` (refuse ``query``/
    ``filter`` on APIs that do not advertise them), ``catalog_concurrency`` (static walk),
    ``max_response_bytes`` (largest search page or catalog document read; 32 MiB).
    After a build, :attr:`enrichment` holds the enriched table's outcomes (``cog_headers``);
    after any scan, :attr:`item_counts` counts the items read, the repeats dropped and the
    records without any band asset.
    """

    def __init__(
        self,
        data_source: str,
        stac_api: str,
        stac_collection: str | None = None,
        workspace_dir: Path | str | None = None,
        name: str | None = None,
        band_map: Mapping[str, str] | None = None,
        band_index_map: Mapping[str, int] | None = None,
        cloud_config: CloudConfig | None = None,
        max_concurrent: int = DEFAULT_MAX_CONCURRENT,
        backend: StorageBackend | None = None,
        static_catalog: bool = False,
        *,
        page_size: int = DEFAULT_PAGE_SIZE,
        retry: RetryPolicy | None = None,
        require_conformance: bool = True,
        catalog_concurrency: int = DEFAULT_CONCURRENCY,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        super().__init__(name=name or "", data_source=data_source, workspace_dir=workspace_dir)
        source = find_source(data_source) if data_source else None
        if band_map is None:
            if source is None:
                raise UnknownDataSourceError(data_source, list_sources())
            band_map, band_index_map = source.band_map, band_index_map or source.band_index_map
        # Checked now, before any request: a malformed map fails in the constructor.
        self.bands = BandMap(dict(band_map), dict(band_index_map or {}))
        self.stac_api = stac_api or (source.stac_api if source else "")
        if not self.stac_api:
            raise ValueError("stac_api is empty and the data source names no API")
        self.static_catalog = static_catalog
        if stac_collection is None and not static_catalog:
            stac_collection = source.collection if source else data_source
        self.stac_collection = stac_collection
        self.cloud_config = cloud_config or (source.cloud if source else CloudConfig())
        signer = None if static_catalog else stac_api_url_signer(self.stac_api)
        if signer is not None and self.cloud_config.url_signer is None:
            # Every Planetary Computer item points at SAS-protected blobs, whatever the source.
            self.cloud_config = replace(self.cloud_config, url_signer=signer)
        if max_concurrent < 1:
            raise ValueError(f"max_concurrent must be >= 1, got {max_concurrent}")
        if not 1 <= page_size <= 10000:
            raise ValueError(f"page_size must be within 1..10000, got {page_size}")
        self.max_concurrent = max_concurrent
        self.page_size = page_size
        self.retry = retry
        self.require_conformance = require_conformance
        self.catalog_concurrency = catalog_concurrency
        if max_response_bytes < 1:
            raise ValueError(f"max_response_bytes must be >= 1, got {max_response_bytes}")
        self.max_response_bytes = max_response_bytes
        self._backend = backend
        self.enrichment: EnrichmentResult | None = None
        self.item_counts: ItemCounts | None = None

    @property
    def band_map(self) -> dict[str, str]:
        """``{band_code: asset_key}`` in use (explicit or from the data source)."""
        return dict(self.bands.bands)

    # -- public entry points -------------------------------------------------------------

    def build(self, **kwargs: Any) -> Collection:
        """Sync wrapper of :meth:`build_index`; safe to call where an event loop is running."""
        return run_sync(self.build_index(**kwargs))

    async def build_index(
        self,
        bbox: BoundingBox | None = None,
        date_range: DateRange | None = None,
        query: dict[str, Any] | None = None,
        *,
        filter: dict[str, Any] | str | None = None,
        intersects: Any | None = None,
        max_items: int | None = None,
    ) -> Collection:
        """Search, check the band map, parse headers, normalise; return the Collection."""
        records = await self.search_records(
            bbox, date_range, query, filter=filter, intersects=intersects, max_items=max_items
        )
        result = await self._enrich(records)
        self.enrichment = result
        table = result.table
        metadata_range = date_range if date_range and None not in tuple(date_range) else None
        return await asyncio.to_thread(
            build_collection_from_table,
            table,
            name=self.name or self.data_source,
            description=self._description(),
            data_source=self.data_source,
            date_range=metadata_range,
            workspace_dir=self.workspace_dir,
        )

    async def search_records(
        self,
        bbox: BoundingBox | None = None,
        date_range: DateRange | None = None,
        query: dict[str, Any] | None = None,
        *,
        filter: dict[str, Any] | str | None = None,
        intersects: Any | None = None,
        max_items: int | None = None,
    ) -> pa.Table:
        """The records table (one row per item, declared schema), band map checked.

        Raises :class:`NoItemsError` when nothing matched and
        :class:`~rasteret_assets.ingest.band_map.BandMapError` when a band's asset is in no
        item — both before any header I/O.
        """
        converter = self.converter()
        batches = [
            batch
            async for batch in self.iter_record_batches(
                bbox,
                date_range,
                query,
                filter=filter,
                intersects=intersects,
                max_items=max_items,
                converter=converter,
            )
        ]
        if converter.items_seen == 0:
            raise NoItemsError(
                f"no STAC items matched in {self.stac_api} (collection={self.stac_collection}, "
                f"bbox={bbox}, date_range={date_range}, query={query}, filter={filter}, "
                f"intersects={'yes' if intersects is not None else None})"
            )
        self.bands.check_against(converter.asset_keys, converter.items_seen)
        return pa.Table.from_batches(batches, schema=converter.schema)

    async def iter_record_batches(
        self,
        bbox: BoundingBox | None = None,
        date_range: DateRange | None = None,
        query: dict[str, Any] | None = None,
        *,
        filter: dict[str, Any] | str | None = None,
        intersects: Any | None = None,
        max_items: int | None = None,
        converter: StacItemConverter | None = None,
    ) -> AsyncIterator[pa.RecordBatch]:
        """Stream record batches (one per API page) without enrichment or band checks.

        For callers that write records as they come (a Dagster ``records`` asset); pass a
        ``converter`` to read its asset-key counts afterwards. :attr:`item_counts` is this
        scan's counts from the first page on; a summary is logged when the scan ends.
        """
        if query and "max_items" in query:
            # rasteret 0.4 smuggled max_items through query=; sent to an API it would be a
            # filter on a property called "max_items".
            raise ValueError("max_items is not a STAC query term: pass max_items=N instead")
        converter = converter or self.converter()
        self.item_counts = converter.counts
        async with JsonClient(
            retry=self.retry, max_response_bytes=self.max_response_bytes
        ) as client:
            if self.static_catalog:
                if query or filter:
                    raise ValueError(
                        "query= and filter= need a STAC API; a static catalog can only be "
                        "filtered by bbox, intersects and date_range"
                    )
                pages = self._static_pages(client, bbox, date_range, intersects, max_items)
            else:
                pages = self._api_pages(
                    client, bbox, date_range, query, filter, intersects, max_items
                )
            async for page in pages:
                try:
                    batch = converter.to_record_batch(page.items)
                except StacItemError as exc:
                    page.locate(exc)
                    raise
                yield batch
        counts = converter.counts
        logger.log(
            logging.WARNING if counts.noteworthy else logging.INFO,
            "%s: %s",
            redact_url(self.stac_api),
            counts.describe(),
        )

    def _description(self) -> str:
        kind = "static STAC catalog" if self.static_catalog else "STAC API"
        selection = f"collection {self.stac_collection!r} of " if self.stac_collection else ""
        return f"{self.data_source}: {selection}{kind} {self.stac_api}, COG headers parsed"

    # -- sources of item pages -----------------------------------------------------------

    async def _api_pages(
        self,
        client: JsonClient,
        bbox: BoundingBox | None,
        date_range: DateRange | None,
        query: dict[str, Any] | None,
        filter: dict[str, Any] | str | None,
        intersects: Any | None,
        max_items: int | None,
    ) -> AsyncIterator[_ItemPage]:
        api = await open_api(client, self.stac_api)
        parameters = search_parameters(
            api,
            collections=[self.stac_collection] if self.stac_collection else None,
            bbox=bbox,
            date_range=date_range,
            query=query,
            filter=filter,
            intersects=intersects,
            limit=self.page_size if max_items is None else min(self.page_size, max_items),
            require_conformance=self.require_conformance,
        )
        async for page in iter_search_pages(client, api, parameters, max_items=max_items):
            logger.info(
                "search page %d: %d items (%s matched)", page.number, len(page.items), page.matched
            )
            yield _ItemPage(page.items, f"search page {page.number} at {redact_url(page.url)}")

    async def _static_pages(
        self,
        client: JsonClient,
        bbox: BoundingBox | None,
        date_range: DateRange | None,
        intersects: Any | None,
        max_items: int | None,
    ) -> AsyncIterator[_ItemPage]:
        item_filter = ItemFilter.build(
            bbox=bbox,
            intersects=intersects,
            date_range=date_range,
            collections=[self.stac_collection] if self.stac_collection else None,
        )
        items: list[dict[str, Any]] = []
        documents: list[str] = []
        async for item, document in walk_static_items(
            self.stac_api,
            client,
            item_filter=item_filter,
            concurrency=self.catalog_concurrency,
            max_items=max_items,
        ):
            items.append(item)
            documents.append(document)
            if len(items) >= _STATIC_PAGE:
                yield _ItemPage(items, documents)
                items, documents = [], []
        if items:
            yield _ItemPage(items, documents)

    # -- enrichment ----------------------------------------------------------------------

    def converter(self) -> StacItemConverter:
        return StacItemConverter(
            self.bands,
            url_rewrite_patterns=self.cloud_config.url_rewrite_patterns,
            default_collection=self.stac_collection,
        )

    async def _enrich(self, records: pa.Table) -> EnrichmentResult:
        codes = self.bands.codes
        backend = self._backend or default_backend(self.max_concurrent, self.cloud_config)
        try:
            result = await enrich_table(
                records,
                build_url_index_from_assets(records, codes),
                codes,
                max_concurrent=self.max_concurrent,
                backend=backend,
                retry=self.retry,
            )
        finally:
            if self._backend is None:
                await backend.close()
        counts = result.status_counts
        logger.info("asset headers: %s", counts)
        if not counts.get("ok"):
            errors = result.outcomes.column("error").drop_null()
            example = errors[0].as_py() if len(errors) else "no error recorded"
            raise EnrichmentFailedError(
                f"none of {result.outcomes.num_rows} asset headers could be read "
                f"({counts}); e.g. {example}. Check url_rewrite_patterns and credentials.",
                result.outcomes,
            )
        return result
