"""The library layer: rasteret's ingest API (builders, enrichment, normalisation)."""

from rasteret_assets.ingest.band_map import BandMap, BandMapError
from rasteret_assets.ingest.base import CollectionBuilder, run_sync
from rasteret_assets.ingest.enrich import (
    EnrichmentResult,
    add_band_metadata_columns,
    build_url_index_from_assets,
    enrich_table,
    enrich_table_with_cog_metadata,
)
from rasteret_assets.ingest.header_fetch import HeaderOutcome, fetch_header, fetch_headers
from rasteret_assets.ingest.normalize import build_collection_from_table, normalize_table
from rasteret_assets.ingest.parquet_record_table import BuildStats, RecordTableBuilder
from rasteret_assets.ingest.record_enrich import EnrichmentReport
from rasteret_assets.ingest.record_plan import EmptyRecordTableError
from rasteret_assets.ingest.stac_http import ResponseTooLargeError, StacApiError
from rasteret_assets.ingest.stac_indexer import (
    EnrichmentFailedError,
    NoItemsError,
    StacCollectionBuilder,
)
from rasteret_assets.ingest.stac_items import ItemCounts, StacItemError
from rasteret_assets.ingest.stac_search import PagingLoopError, UnsupportedSearchError
from rasteret_assets.ingest.static_catalog import StaticCatalogError

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
