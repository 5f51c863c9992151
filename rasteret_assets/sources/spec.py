"""One entry of the sources file, as written: a typed, frozen model with no Dagster in it.

A :class:`SourceSpec` only says what the user wrote (and that it is well-formed); what the
entry *means* once the data-source registry fills in what it leaves out is
:class:`rasteret_assets.sources.resolved.ResolvedSource`.
"""

from __future__ import annotations

import re
from typing import Any, Literal

import fsspec
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

SourceKind = Literal["stac_api", "static_catalog", "record_table"]


class SourcesConfigError(ValueError):
    """The sources file cannot be used; the message names the entry and the field."""


class SourceSpec(BaseModel):
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
    start_month: str | None = Field(
        default=None,
        description="First monthly partition, YYYY-MM (a static catalog: its temporal extent's)",
    )
    end_month: str | None = Field(
        default=None,
        description="Last monthly partition, YYYY-MM (default: the current month, or a static "
        "catalog's temporal extent's last)",
    )
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

    @field_validator("start_month", "end_month")
    @classmethod
    def _month(cls, value: str | None) -> str | None:
        if value is None:
            return value
        match = re.fullmatch(r"(\d{4})-(\d{2})", value)
        if not match or not 1 <= int(match.group(2)) <= 12:
            raise ValueError("must be a month like 2024-01")
        return value

    @model_validator(mode="after")
    def _months(self) -> SourceSpec:
        if self.start_month is None and self.kind != "static_catalog":
            raise ValueError(
                f"start_month is required for a {self.kind} source (only a static catalog "
                "can take it from its temporal extent)"
            )
        if self.start_month and self.end_month and self.end_month < self.start_month:
            raise ValueError(f"end_month {self.end_month} is before start_month {self.start_month}")
        return self

    @model_validator(mode="after")
    def _record_table_bands(self) -> SourceSpec:
        if self.kind == "record_table" and not (
            self.band_map or self.href_column or self.data_source
        ):
            raise ValueError(
                "a record_table source needs band_map {band code: asset key}, a registered "
                "data_source, or href_column with band_index_map {band code: sample index}"
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
