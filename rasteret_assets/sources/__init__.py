"""What a source is: the data-source registry and the source spec, resolved once."""

from rasteret_assets.sources.file import DEMO_CATALOG, SOURCES_ENV, demo_source, load_sources
from rasteret_assets.sources.registry import (
    CloudConfig,
    DataSource,
    UnknownDataSourceError,
    find_source,
    get_source,
    list_sources,
    register_source,
    stac_api_url_signer,
)
from rasteret_assets.sources.resolved import ResolvedSource, resolve
from rasteret_assets.sources.spec import SourcesConfigError, SourceSpec

__all__ = [
    "DEMO_CATALOG",
    "SOURCES_ENV",
    "CloudConfig",
    "DataSource",
    "ResolvedSource",
    "SourceSpec",
    "SourcesConfigError",
    "UnknownDataSourceError",
    "demo_source",
    "find_source",
    "get_source",
    "list_sources",
    "load_sources",
    "register_source",
    "resolve",
    "stac_api_url_signer",
]
