"""A source entry resolved against the data-source registry, once, into everything the
steps after it use (band map, collection, URL rewrites, storage options).

Precedence: explicit values in the entry win over registry presets, key by key for mappings
of settings (storage options, URL rewrites), whole for band maps (an entry's ``band_map``
replaces the registry's, and its ``band_index_map`` goes with it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import fsspec

from rasteret_assets.sources.registry import (
    DataSource,
    find_source,
    list_sources,
    stac_api_url_signer,
)
from rasteret_assets.sources.spec import SourceKind, SourcesConfigError, SourceSpec

#: Storage settings that belong elsewhere: rewrites are applied once, when records are made;
#: the URL policy is the deployment's (the storage resource's), never a source's.
FORBIDDEN_STORAGE_OPTIONS = ("url_rewrite_patterns", "url_policy")


@dataclass(frozen=True)
class ResolvedSource:
    """What one source *means*: its spec plus what the registry supplies, merged once.

    ``band_map`` is ``{band code: asset key}`` (``None`` for a record table whose hrefs come
    from ``href_column``); ``band_codes`` are the bands whose headers are read. The spec's
    other fields are readable here too (``owners``, ``start_month``, ``bbox``, ...).
    """

    spec: SourceSpec
    name: str
    kind: SourceKind
    location: str
    data_source: str
    registry_entry: DataSource | None
    collection: str | None
    band_map: Mapping[str, str] | None
    band_index_map: Mapping[str, int]
    band_codes: tuple[str, ...]
    url_rewrites: Mapping[str, str]
    storage_options: Mapping[str, Any]

    # The spec's plain fields, read through (nothing about them needs resolving).

    @property
    def owners(self) -> list[str]:
        return self.spec.owners

    @property
    def start_month(self) -> str | None:
        return self.spec.start_month

    @property
    def end_month(self) -> str | None:
        return self.spec.end_month

    @property
    def bbox(self) -> tuple[float, float, float, float] | None:
        return self.spec.bbox

    @property
    def query(self) -> dict[str, Any] | None:
        return self.spec.query

    @property
    def filter(self) -> dict[str, Any] | str | None:
        return self.spec.filter

    @property
    def column_map(self) -> dict[str, str] | None:
        return self.spec.column_map

    @property
    def href_column(self) -> str | None:
        return self.spec.href_column

    @property
    def location_options(self) -> dict[str, Any]:
        return self.spec.location_options

    @property
    def min_header_coverage(self) -> float:
        return self.spec.min_header_coverage

    def location_filesystem(self) -> fsspec.AbstractFileSystem | None:
        """The fsspec file system the spec's ``location_options`` configure, or ``None``."""
        return self.spec.location_filesystem()


def _error(spec: SourceSpec, field: str, message: str) -> SourcesConfigError:
    return SourcesConfigError(f"source {spec.name!r}: field {field!r}: {message}")


def _known() -> str:
    return ", ".join(list_sources()) or "(none)"


def resolve(spec: SourceSpec) -> ResolvedSource:
    """``spec`` resolved against the registry; :class:`SourcesConfigError` names the source
    when the entry and the registry together still leave something undefined."""
    forbidden = [key for key in FORBIDDEN_STORAGE_OPTIONS if key in spec.storage_options]
    if forbidden:
        raise _error(
            spec,
            "storage_options",
            f"cannot set {forbidden}: give rewrites as the entry's url_rewrite_patterns "
            "(applied once, when records are made); the URL policy is the storage resource's",
        )
    entry = find_source(spec.data_source) if spec.data_source else None
    uses_href_column = spec.kind == "record_table" and bool(spec.href_column)

    band_map: Mapping[str, str] | None
    if uses_href_column:
        band_map = None
        band_index_map = dict(spec.band_index_map or {})
    elif spec.band_map:
        band_map = dict(spec.band_map)
        band_index_map = dict(spec.band_index_map or {})
    elif entry is not None:
        band_map = dict(entry.band_map)
        band_index_map = dict(
            spec.band_index_map if spec.band_index_map is not None else entry.band_index_map
        )
    elif spec.data_source:
        raise _error(
            spec,
            "data_source",
            f"unknown data source {spec.data_source!r} and no band_map; known data sources: "
            f"{_known()} (or give band_map {{band code: asset key}})",
        )
    else:
        raise _error(
            spec,
            "band_map",
            "no band_map and no data_source: give band_map {band code: asset key} or a "
            f"registered data_source (known data sources: {_known()})",
        )
    if band_map is not None:
        unknown = sorted(set(band_index_map) - set(band_map))
        if unknown:
            raise _error(
                spec,
                "band_index_map",
                f"names band(s) {unknown} that are not in the band map {sorted(band_map)}",
            )
    band_codes = tuple(band_map if band_map is not None else band_index_map)

    collection = spec.collection
    if collection is None and spec.kind == "stac_api" and entry is not None:
        collection = entry.collection

    rewrites = dict(entry.cloud.url_rewrite_patterns) if entry else {}
    rewrites.update(spec.url_rewrite_patterns)

    storage: dict[str, Any] = entry.cloud.storage_settings() if entry is not None else {}
    signer = stac_api_url_signer(spec.location) if spec.kind == "stac_api" else None
    if signer is not None:
        storage.setdefault("url_signer", signer)
    storage.update(spec.storage_options)

    return ResolvedSource(
        spec=spec,
        name=spec.name,
        kind=spec.kind,
        location=spec.location,
        data_source=spec.data_source or spec.name,
        registry_entry=entry,
        collection=collection,
        band_map=MappingProxyType(band_map) if band_map is not None else None,
        band_index_map=MappingProxyType(band_index_map),
        band_codes=band_codes,
        url_rewrites=MappingProxyType(rewrites),
        storage_options=MappingProxyType(storage),
    )
