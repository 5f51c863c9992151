"""``rasteret_assets.RasterSource``: one source as a Dagster Component.

A ``defs.yaml`` with ``type: rasteret_assets.RasterSource`` and the source spec as its
``attributes`` becomes the source's asset group, job, schedule and sensor, the way a dbt
project or a Sling replication becomes a component. The attributes *are*
:class:`~rasteret_assets.sources.SourceSpec` (same fields, same validation), so a sources file
entry and a ``defs.yaml`` mean the same thing; errors point at the line of the offending key.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
from dagster.components.resolved.errors import ResolutionException
from pydantic import BaseModel, Field, ValidationError

from rasteret_assets.defs.graph import source_definitions
from rasteret_assets.sources import ResolvedSource, SourcesConfigError, SourceSpec, resolve
from rasteret_assets.sources.spec import SourceKind

_EXAMPLE_LOCATIONS: dict[str, str] = {
    "stac_api": "https://earth-search.aws.element84.com/v1",
    "static_catalog": "/path/to/catalog.json",
    "record_table": "s3://bucket/records.parquet",
}


class RasterSourceScaffoldParams(BaseModel):
    """``dg scaffold defs rasteret_assets.RasterSource NAME --kind stac_api --location URL``."""

    kind: SourceKind = "stac_api"
    location: str | None = None
    start_month: str | None = Field(
        default=None, description="YYYY-MM; default 2024-01 (a static catalog: its extent)"
    )


class RasterSourceScaffolder(dg.Scaffolder[RasterSourceScaffoldParams]):
    """Writes a ``defs.yaml`` that loads as it is: the folder's name is the source's name."""

    @classmethod
    def get_scaffold_params(cls) -> type[RasterSourceScaffoldParams]:
        return RasterSourceScaffoldParams

    def scaffold(self, request: dg.ScaffoldRequest[RasterSourceScaffoldParams]) -> None:
        params = request.params
        attributes: dict[str, object] = {
            "name": request.target_path.name,
            "kind": params.kind,
            "location": params.location or _EXAMPLE_LOCATIONS[params.kind],
            "band_map": {"red": "red", "nir": "nir"},
        }
        if params.start_month or params.kind != "static_catalog":
            attributes["start_month"] = params.start_month or "2024-01"
        if params.kind == "stac_api":
            attributes["collection"] = "sentinel-2-l2a"
        dg.scaffold_component(request, attributes)


@dg.scaffold_with(RasterSourceScaffolder)
class RasterSource(dg.Component, dg.Resolvable, SourceSpec):
    """A raster imagery source (STAC API, static catalog or record table) as monthly assets:
    ``<name>/source`` → ``records`` → ``cog_headers`` → ``collection``, with job
    ``<name>_monthly``, a daily refresh schedule and a change sensor."""

    # A list here, not SourceSpec's 4-tuple: dg's schema tools cannot describe fixed tuples.
    bbox: list[float] | None = Field(
        default=None, min_length=4, max_length=4, description="[xmin, ymin, xmax, ymax]"
    )

    @classmethod
    def resolve_from_model(cls, context: dg.ResolutionContext, model: BaseModel) -> RasterSource:
        """Resolve, then check the spec against the registry, so ``dg check defs`` reports
        either kind of mistake at the line of the key that caused it."""
        try:
            component = super().resolve_from_model(context, model)
            component.resolved()
        except ValidationError as error:
            first = error.errors()[0]
            field = str(first["loc"][0]) if first["loc"] else None
            raise _located(context, field, f"{first['msg']}") from None
        except SourcesConfigError as error:
            raise _located(context, _field_named_in(str(error)), str(error)) from None
        return component

    def spec(self) -> SourceSpec:
        """The plain source spec of these attributes (no Dagster in it)."""
        return SourceSpec.model_validate(self.model_dump())

    def resolved(self) -> ResolvedSource:
        return resolve(self.spec())

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        return source_definitions(self.resolved())


def _field_named_in(message: str) -> str | None:
    """``source 'x': field 'band_map': ...`` → ``band_map``."""
    marker = "field '"
    if marker not in message:
        return None
    return message.split(marker, 1)[1].split("'", 1)[0]


def _located(context: dg.ResolutionContext, field: str | None, message: str) -> Exception:
    """A :class:`ResolutionException` naming the file, line and key of ``field``."""
    tree = context.source_position_tree
    if tree is None:
        return ResolutionException(message)
    path = [*context.path, field] if field else list(context.path)
    located = tree.source_error(yaml_path=path, inline_error_message=message, value_error=True)
    name = Path(located.file_name).as_posix()
    return ResolutionException(
        f"{name}:{located.start_line_no} - {located.location}: {message}\n{located.snippet}"
    )
