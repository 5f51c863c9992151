"""The library layer: rasteret's ingest API (builders, enrichment, normalisation)."""

from rasteret_assets.ingest.enrich import (
    EnrichmentResult,
    add_band_metadata_columns,
    build_url_index_from_assets,
    enrich_table,
    enrich_table_with_cog_metadata,
)
from rasteret_assets.ingest.header_fetch import HeaderOutcome, fetch_header, fetch_headers
from rasteret_assets.ingest.normalize import build_collection_from_table, normalize_table

__all__ = [
    "EnrichmentResult",
    "HeaderOutcome",
    "add_band_metadata_columns",
    "build_collection_from_table",
    "build_url_index_from_assets",
    "enrich_table",
    "enrich_table_with_cog_metadata",
    "fetch_header",
    "fetch_headers",
    "normalize_table",
]
