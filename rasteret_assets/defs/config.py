"""Which collections to ingest: a YAML file validated into typed source configs.

The path comes from ``RASTERET_ASSETS_SOURCES``; without it the built-in demo source (a
static catalog shipped in the package) is used, so the first run needs no network. A bad
entry fails at load time — and so ``dagster definitions validate`` — naming the entry and
the field.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import fsspec
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

SOURCES_ENV = "RASTERET_ASSETS_SOURCES"
DEMO_CATALOG = Path(__file__).resolve().parents[1] / "demo" / "catalog" / "catalog.json"
SourceKind = Literal["stac_api", "static_catalog", "record_table"]


class SourcesConfigError(ValueError):
    """The sources file cannot be used; the message names the entry and the field."""


class SourceConfig(BaseModel):
    """One collection to ingest. Unknown keys are errors, so typos never go unnoticed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="Asset group and key prefix; lowercase letters, digits, _")
    kind: SourceKind
    location: str = Field(description="STAC API URL, static catalog file/URL, or table path")
    collection: str | None = Field(default=None, description="STAC collection id")
    data_source: str = Field(default="", description="Registry id (band map, cloud settings)")
    band_map: dict[str, str] | None = Field(default=None, description="{band code: asset key}")
    band_index_map: dict[str, int] | None = None
    url_rewrite_patterns: dict[str, str] = Field(default_factory=dict)
    storage_options: dict[str, Any] = Field(
        default_factory=dict, description="StorageOptions fields for this source's assets"
    )
    start_month: str = Field(description="First monthly partition, YYYY-MM")
    bbox: tuple[float, float, float, float] | None = None
    query: dict[str, Any] | None = None
    filter: dict[str, Any] | str | None = None
    column_map: dict[str, str] | None = Field(default=None, description="record_table only")
    href_column: str | None = Field(default=None, description="record_table only")
    location_options: dict[str, Any] = Field(
        default_factory=dict,
        description="record_table only: fsspec options for reading `location` (e.g. S3 keys)",
    )
    owners: list[str] = Field(default_factory=list)
    min_header_coverage: float = Field(
        default=0.95,
        ge=0.0,
        le=1.0,
        description="Share of (record, band) assets that must have a parsed header to publish",
    )

    @field_validator("name")
    @classmethod
    def _identifier(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z][a-z0-9_]*", value):
            raise ValueError("must start with a letter and use only a-z, 0-9 and _")
        return value

    @field_validator("start_month")
    @classmethod
    def _month(cls, value: str) -> str:
        match = re.fullmatch(r"(\d{4})-(\d{2})", value)
        if not match or not 1 <= int(match.group(2)) <= 12:
            raise ValueError("must be a month like 2024-01")
        return value

    @model_validator(mode="after")
    def _record_table_bands(self) -> SourceConfig:
        if self.kind == "record_table" and not (self.band_map or self.href_column):
            raise ValueError(
                "a record_table source needs band_map {band code: asset key}, or href_column "
                "with band_index_map {band code: sample index}"
            )
        if self.href_column and not self.band_index_map:
            raise ValueError("href_column needs band_index_map {band code: sample index}")
        return self

    def location_filesystem(self) -> fsspec.AbstractFileSystem | None:
        """The fsspec file system ``location_options`` configure; ``None`` without options
        (readers then pick their default for the location, e.g. pyarrow's local one)."""
        if not self.location_options:
            return None
        return fsspec.core.url_to_fs(self.location, **self.location_options)[0]

    @property
    def band_codes(self) -> list[str]:
        """Bands whose headers are read: the band map's codes (or the href column's bands)."""
        if self.kind == "record_table" and self.href_column:
            return list(self.band_index_map or {})
        return list(self.band_map or {})


def demo_source() -> SourceConfig:
    """Three months of synthetic scenes, three bands, shipped as real GDAL COGs."""
    return SourceConfig(
        name="demo",
        kind="static_catalog",
        location=str(DEMO_CATALOG),
        data_source="demo",
        band_map={"red": "red", "green": "green", "nir": "nir"},
        start_month="2024-01",
        owners=["team:data-platform"],
    )


def load_sources(path: str | Path | None = None) -> list[SourceConfig]:
    """Sources from ``path`` (default: ``$RASTERET_ASSETS_SOURCES``), else the demo source."""
    path = path or os.environ.get(SOURCES_ENV)
    if not path:
        return [demo_source()]
    try:
        document = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as error:
        raise SourcesConfigError(f"cannot read sources file {path}: {error}") from error
    entries = document.get("sources") if isinstance(document, dict) else None
    if not isinstance(entries, list) or not entries:
        raise SourcesConfigError(f"{path}: expected a non-empty list under 'sources:'")
    sources = [_parse_entry(path, index, entry) for index, entry in enumerate(entries)]
    names = [s.name for s in sources]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise SourcesConfigError(f"{path}: source names must be unique, repeated: {repeated}")
    return sources


def _parse_entry(path: str | Path, index: int, entry: object) -> SourceConfig:
    label = entry.get("name", f"#{index + 1}") if isinstance(entry, dict) else f"#{index + 1}"
    try:
        return SourceConfig.model_validate(entry)
    except ValidationError as error:
        problems = "; ".join(
            f"field '{'.'.join(str(p) for p in e['loc']) or '(entry)'}': {e['msg']}"
            for e in error.errors()
        )
        raise SourcesConfigError(f"{path}: source {label!r}: {problems}") from None
