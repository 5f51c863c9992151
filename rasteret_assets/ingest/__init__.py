"""The library layer: rasteret's ingest API (builders, enrichment, normalisation)."""

from rasteret_assets.ingest.base import CollectionBuilder, run_sync
from rasteret_assets.ingest.headers.chunked import EnrichmentReport
from rasteret_assets.ingest.headers.engine import HeaderOutcome, fetch_header, fetch_headers
from rasteret_assets.ingest.headers.enrich import (
    EnrichmentResult,
    add_band_metadata_columns,
    build_url_index_from_assets,
    enrich_table,
    enrich_table_with_cog_metadata,
)
from rasteret_assets.ingest.normalize.table import build_collection_from_table, normalize_table
from rasteret_assets.ingest.stac.band_map import BandMap, BandMapError
from rasteret_assets.ingest.stac.builder import (
    EnrichmentFailedError,
    NoItemsError,
    StacCollectionBuilder,
)
from rasteret_assets.ingest.stac.http import ResponseTooLargeError, StacApiError
from rasteret_assets.ingest.stac.items import ItemCounts, StacItemError
from rasteret_assets.ingest.stac.search import PagingLoopError, UnsupportedSearchError
from rasteret_assets.ingest.stac.static_catalog import StaticCatalogError
from rasteret_assets.ingest.tables.builder import BuildStats, RecordTableBuilder
from rasteret_assets.ingest.tables.plan import EmptyRecordTableError

__all__ = [
    "BandMap",
    "BandMapError",
    "BuildStats",
    "CollectionBuilder",
    "EmptyRecordTableError",
    "EnrichmentFailedError",
    "EnrichmentReport",
    "EnrichmentResult",
    "HeaderOutcome",
    "ItemCounts",
    "NoItemsError",
    "PagingLoopError",
    "RecordTableBuilder",
    "ResponseTooLargeError",
    "StacApiError",
    "StacCollectionBuilder",
    "StacItemError",
    "StaticCatalogError",
    "UnsupportedSearchError",
    "add_band_metadata_columns",
    "build_collection_from_table",
    "build_url_index_from_assets",
    "enrich_table",
    "enrich_table_with_cog_metadata",
    "fetch_header",
    "fetch_headers",
    "normalize_table",
    "run_sync",
]
