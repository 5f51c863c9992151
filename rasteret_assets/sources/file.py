"""Which collections to ingest: a YAML file, every entry validated and resolved at load time.

The path comes from ``RASTERET_ASSETS_SOURCES``; without it the built-in demo source (a
static catalog shipped in the package) is used, so the first run needs no network. A bad
entry fails at load time — and so ``dagster definitions validate`` — naming the entry and
the field.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml
from pydantic import ValidationError

from rasteret_assets.sources.resolved import ResolvedSource, resolve
from rasteret_assets.sources.spec import SourcesConfigError, SourceSpec

SOURCES_ENV = "RASTERET_ASSETS_SOURCES"
DEMO_CATALOG = Path(__file__).resolve().parents[1] / "demo" / "catalog" / "catalog.json"


def demo_source() -> SourceSpec:
    """Three months of synthetic scenes, three bands, shipped as real GDAL COGs; its months
    are the catalog's temporal extent (``rasteret_assets/defs/demo/defs.yaml`` says the same)."""
    return SourceSpec(
        name="demo",
        kind="static_catalog",
        location=str(DEMO_CATALOG),
        data_source="demo",
        band_map={"red": "red", "green": "green", "nir": "nir"},
        owners=["team:data-platform"],
    )


def load_sources(path: str | Path | None = None) -> list[ResolvedSource]:
    """Sources from ``path`` (default: ``$RASTERET_ASSETS_SOURCES``), else the demo source."""
    path = path or os.environ.get(SOURCES_ENV)
    if not path:
        return [resolve(demo_source())]
    try:
        document = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as error:
        raise SourcesConfigError(f"cannot read sources file {path}: {error}") from error
    entries = document.get("sources") if isinstance(document, dict) else None
    if not isinstance(entries, list) or not entries:
        raise SourcesConfigError(f"{path}: expected a non-empty list under 'sources:'")
    sources = [_load_entry(path, index, entry) for index, entry in enumerate(entries)]
    names = [s.name for s in sources]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise SourcesConfigError(f"{path}: source names must be unique, repeated: {repeated}")
    return sources


def _load_entry(path: str | Path, index: int, entry: object) -> ResolvedSource:
    label = entry.get("name", f"#{index + 1}") if isinstance(entry, dict) else f"#{index + 1}"
    try:
        spec = SourceSpec.model_validate(entry)
    except ValidationError as error:
        problems = "; ".join(
            f"field '{'.'.join(str(p) for p in e['loc']) or '(entry)'}': {e['msg']}"
            for e in error.errors()
        )
        raise SourcesConfigError(f"{path}: source {label!r}: {problems}") from None
    try:
        return resolve(spec)
    except SourcesConfigError as error:  # already "source 'name': field '...': ..."
        raise SourcesConfigError(f"{path}: {error}") from None
