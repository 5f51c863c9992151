"""STAC Item dicts → Arrow record batches with a declared schema.

Why declared, not inferred: STAC properties are free-form, and real catalogs disagree with
themselves — Earth Search gives ``eo:cloud_cover`` as ``0`` (int) for one item and
``26.02542`` for the next, ``s2:processing_baseline`` is text in one collection and a number
in another, extensions come and go between pages. Inferring an Arrow schema per page
(``pa.Table.from_pylist``) makes the second page fail to concatenate with the first, or
worse, silently change a column's type from one month's partition to the next. So:

* a declared subset of properties becomes typed columns (:data:`DECLARED_PROPERTIES`),
  coerced where the coercion is lossless (int → float, integral float → int) and otherwise
  rejected with a :class:`StacItemError` naming the item and the field;
* every other property goes, unchanged, into one ``properties_json`` text column, so nothing
  is lost and no page can change the schema.

Other rules:

* ``datetime`` is the item's ``datetime``, or its ``start_datetime`` when ``datetime`` is
  null — STAC allows a null ``datetime`` for items that describe a period (annual land-cover
  maps), and the start of the period is the instant that puts them in the right partition.
* ``geometry`` is GeoJSON turned into ISO WKB; a missing or undecodable footprint is an
  error, because such an item can never be found by a spatial query.
* ``assets`` keeps, per band code of the band map, only ``{href, band_index}`` of the mapped
  asset (null when an item lacks it). Hrefs are rewritten with ``url_rewrite_patterns``
  here, once, so the stored collection holds the URL readers should actually use.
* CRS columns (``proj:epsg``, ``proj:code``, ``proj:wkt2``, ``proj:projjson``) come from the
  item properties, or — when an item only declares them per asset — from the first mapped
  band asset that has them.

What happens to bad items (the README's "What happens to bad records" summarises it):

* **errors** — :class:`StacItemError`, naming the item id (or, without one, its position on
  the page), the field and, once the builder adds it, the page or document it came from:
  an item that is not an object or has no string id; ``properties`` or ``assets`` that are
  not objects; a missing, null, undecodable or empty ``geometry``; a ``datetime`` that is
  missing or null without a ``start_datetime``, or is not an RFC 3339 string; a mapped asset
  without an href string; a declared property of the wrong type. A broken item means a
  broken catalog, and dropping it would leave a hole nobody sees.
* **skipped and counted** (:class:`ItemCounts`, logged once per scan with examples): an id
  already seen on an earlier page, because the catalog changed while paging; the first copy
  is kept (``duplicates_dropped``).
* **kept and counted**: an item with none of the band map's assets (no ``assets``, an empty
  one, or only other keys — label items beside imagery in one catalog, Sentinel-1 scenes in
  a mixed search) is a record whose band assets are all null (``without_band_assets``). It
  is part of the catalog, so it is not dropped; it has no header to read, so its
  ``{band}_metadata`` stays null, where the header-coverage check sees it.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import shapely

from rasteret_assets.contract import (
    ASSET_TYPE,
    ASSETS,
    DATETIME,
    DATETIME_TYPE,
    GEOMETRY,
    ID,
    PROJ_EPSG,
    STAC_ASSET_FIELDS,
    ContractError,
)
from rasteret_assets.ingest.normalize.bad_values import shorten
from rasteret_assets.ingest.normalize.timestamps import normalize_datetime
from rasteret_assets.ingest.stac.band_map import BandMap
from rasteret_assets.storage import rewrite_url

logger = logging.getLogger(__name__)

COLLECTION = "collection"
START_DATETIME = "start_datetime"
END_DATETIME = "end_datetime"
PROPERTIES_JSON = "properties_json"
_INT32_RANGE = (-(2**31), 2**31 - 1)


#: Items named per rule in a log line; beyond these only the counts grow.
_SHOWN_SKIPS = 5


class StacItemError(ValueError):
    """One item cannot become a record; names the item id and the offending field.

    ``position`` (1-based, on its page) names an item that has no usable id; ``source`` is
    the page or document it came from, set by whoever knows it (redacted URLs only).
    """

    def __init__(
        self,
        message: str,
        *,
        item_id: str | None,
        field: str,
        position: int | None = None,
        source: str | None = None,
    ) -> None:
        super().__init__(message)
        self.reason = message
        self.item_id = item_id
        self.field = field
        self.position = position
        self.source = source

    def __str__(self) -> str:
        if self.item_id is not None:
            where = f"item {self.item_id!r}"
        elif self.position is not None:
            where = f"item {self.position} of {self.source or 'its page'}"
        else:
            where = "an item without id"
        origin = f" (from {self.source})" if self.source and self.item_id is not None else ""
        return f"{where}, field {self.field!r}{origin}: {self.reason}"


@dataclass
class ItemCounts:
    """What a scan's items became, by the rules of the module docstring."""

    #: Distinct items read (by id): one record each.
    items_read: int = 0
    duplicates_dropped: int = 0
    #: Records among ``items_read`` with none of the band assets (all null).
    without_band_assets: int = 0
    #: Ids of the first few items of each kind, for log lines.
    duplicate_examples: list[str] = field(default_factory=list)
    without_band_assets_examples: list[str] = field(default_factory=list)

    @property
    def noteworthy(self) -> bool:
        """Whether a rule applied at all (worth a warning rather than an info line)."""
        return bool(self.duplicates_dropped or self.without_band_assets)

    def as_metadata(self) -> dict[str, int]:
        """Flat counts for asset metadata."""
        return {
            "items_read": self.items_read,
            "duplicate_items_dropped": self.duplicates_dropped,
            "items_without_band_assets": self.without_band_assets,
        }

    def describe(self) -> str:
        """One log line's worth: the counts and, where a rule applied, some of the ids."""
        text = f"{self.items_read} items read"
        if self.duplicates_dropped:
            text += (
                f"; {self.duplicates_dropped} repeated item(s) dropped, the first copy kept "
                f"(e.g. {', '.join(map(repr, self.duplicate_examples))})"
            )
        if self.without_band_assets:
            text += (
                f"; {self.without_band_assets} item(s) without any of the band assets kept "
                "with null assets (no header to read; e.g. "
                f"{', '.join(map(repr, self.without_band_assets_examples))})"
            )
        return text


@dataclass(frozen=True)
class PropertyColumn:
    """A STAC property kept as a typed column of the same name."""

    name: str
    type: pa.DataType
    #: Also look for the value on the mapped band assets when the item lacks it.
    asset_fallback: bool = False


#: The properties every record batch carries as typed columns, whatever the pages contain.
DECLARED_PROPERTIES: tuple[PropertyColumn, ...] = (
    PropertyColumn("platform", pa.string()),
    PropertyColumn("constellation", pa.string()),
    PropertyColumn("instruments", pa.list_(pa.string())),
    PropertyColumn("gsd", pa.float64()),
    PropertyColumn("eo:cloud_cover", pa.float64()),
    PropertyColumn("view:off_nadir", pa.float64()),
    PropertyColumn("view:sun_azimuth", pa.float64()),
    PropertyColumn("view:sun_elevation", pa.float64()),
    PropertyColumn(PROJ_EPSG, pa.int32(), asset_fallback=True),
    PropertyColumn("proj:code", pa.string(), asset_fallback=True),
    PropertyColumn("proj:wkt2", pa.string(), asset_fallback=True),
    #: PROJJSON objects are kept as JSON text: their structure varies per CRS.
    PropertyColumn("proj:projjson", pa.string(), asset_fallback=True),
)

_TIME_PROPERTIES = (DATETIME, START_DATETIME, END_DATETIME)


def record_schema(
    band_codes: Sequence[str], properties: Sequence[PropertyColumn] = DECLARED_PROPERTIES
) -> pa.Schema:
    """The schema of every record batch for these bands (stable across pages and runs)."""
    return pa.schema(
        [
            pa.field(ID, pa.string(), nullable=False),
            pa.field(COLLECTION, pa.string()),
            pa.field(DATETIME, DATETIME_TYPE),
            pa.field(GEOMETRY, pa.binary()),
            pa.field(ASSETS, pa.struct([pa.field(b, ASSET_TYPE) for b in band_codes])),
            pa.field(START_DATETIME, DATETIME_TYPE),
            pa.field(END_DATETIME, DATETIME_TYPE),
            *(pa.field(p.name, p.type) for p in properties),
            pa.field(PROPERTIES_JSON, pa.string()),
        ]
    )


class StacItemConverter:
    """Turns pages of STAC Item dicts into record batches of :func:`record_schema`.

    Stateful across pages on purpose: it counts asset keys (for
    :meth:`BandMap.check_against` once the search is done) and remembers ids (to drop
    repeats), so the caller can stream pages and never hold the item dicts.
    """

    def __init__(
        self,
        band_map: BandMap,
        *,
        url_rewrite_patterns: Mapping[str, str] | None = None,
        default_collection: str | None = None,
        properties: Sequence[PropertyColumn] = DECLARED_PROPERTIES,
    ) -> None:
        self.band_map = band_map
        self.url_rewrite_patterns = dict(url_rewrite_patterns or {})
        self.default_collection = default_collection
        self.properties = tuple(properties)
        reserved = {*_TIME_PROPERTIES, ID, COLLECTION, GEOMETRY, ASSETS, PROPERTIES_JSON}
        clash = sorted(reserved & {p.name for p in self.properties})
        if clash:
            raise ValueError(f"declared properties {clash} clash with record columns")
        self.schema = record_schema(band_map.codes, self.properties)
        #: Per asset key, how many items had it.
        self.asset_keys: Counter[str] = Counter()
        self.counts = ItemCounts()
        self._ids: set[str] = set()
        self._band_keys = frozenset(band_map.bands.values())

    @property
    def items_seen(self) -> int:
        """Distinct items read so far: the records made."""
        return self.counts.items_read

    @property
    def duplicates_dropped(self) -> int:
        return self.counts.duplicates_dropped

    def to_record_batch(self, items: Iterable[Mapping[str, Any]]) -> pa.RecordBatch:
        """One record batch for one page; raises :class:`StacItemError` for a bad item."""
        checked = (self._check_item(item, n) for n, item in enumerate(items, start=1))
        page = [item for item in checked if item is not None]
        if not page:
            return pa.RecordBatch.from_pylist([], schema=self.schema)
        ids = [item["id"] for item in page]
        props = [item["properties"] for item in page]
        columns: dict[str, pa.Array] = {
            ID: pa.array(ids, pa.string()),
            COLLECTION: pa.array(
                [
                    _text(i.get(COLLECTION), i["id"], COLLECTION) or self.default_collection
                    for i in page
                ],
                pa.string(),
            ),
            GEOMETRY: _geometries(page),
            ASSETS: self._assets(page),
        }
        times = {name: _times(props, ids, name) for name in _TIME_PROPERTIES}
        columns[DATETIME] = _acquisition_time(times, ids)
        columns[START_DATETIME] = times[START_DATETIME]
        columns[END_DATETIME] = times[END_DATETIME]
        for prop in self.properties:
            values = [self._property(item, prop) for item in page]
            columns[prop.name] = pa.array(values, prop.type)
        declared = {*_TIME_PROPERTIES, *(p.name for p in self.properties)}
        columns[PROPERTIES_JSON] = pa.array(
            [_rest_as_json(p, declared) for p in props], pa.string()
        )
        return pa.RecordBatch.from_arrays(
            [columns[f.name] for f in self.schema], schema=self.schema
        )

    # -- per item ------------------------------------------------------------------------

    def _check_item(self, item: Any, position: int) -> Mapping[str, Any] | None:
        """The item if it becomes a record, ``None`` for a repeat; errors otherwise."""
        if not isinstance(item, Mapping):
            raise StacItemError(
                f"expected a JSON object, got {type(item).__name__} {shorten(item)}",
                item_id=None,
                field="item",
                position=position,
            )
        item_id = item.get("id")
        if not isinstance(item_id, str) or not item_id:
            raise StacItemError(
                f"id must be a non-empty string, got {shorten(item_id)}",
                item_id=None,
                field="id",
                position=position,
            )
        if not isinstance(item.get("properties"), Mapping):
            raise StacItemError("properties must be an object", item_id=item_id, field="properties")
        assets = item.get("assets")
        if assets is None:
            assets = {}
        if not isinstance(assets, Mapping):
            raise StacItemError(
                f"assets must be an object, got {type(assets).__name__}",
                item_id=item_id,
                field="assets",
            )
        counts = self.counts
        if item_id in self._ids:
            counts.duplicates_dropped += 1
            shown = counts.duplicate_examples
            if len(shown) < _SHOWN_SKIPS and item_id not in shown:
                shown.append(item_id)
                logger.warning("item %r returned again by the catalog; keeping the first", item_id)
            return None
        self._ids.add(item_id)
        counts.items_read += 1
        self.asset_keys.update(str(key) for key in assets)
        if self._band_keys.isdisjoint(assets):
            counts.without_band_assets += 1
            if len(counts.without_band_assets_examples) < _SHOWN_SKIPS:
                counts.without_band_assets_examples.append(item_id)
        return item

    def _assets(self, page: Sequence[Mapping[str, Any]]) -> pa.StructArray:
        children = []
        for code, key in self.band_map.bands.items():
            index = self.band_map.index_of(code)
            values = []
            for item in page:
                asset = item.get("assets", {}).get(key)
                if asset is None:
                    values.append(None)
                    continue
                field = f"assets.{key}.href"
                href = asset.get("href") if isinstance(asset, Mapping) else None
                if not isinstance(href, str) or not href:
                    raise StacItemError(
                        f"asset for band {code!r} has no href string (got {shorten(href)})",
                        item_id=item["id"],
                        field=field,
                    )
                values.append(
                    {
                        **_stac_asset_fields(asset),
                        "href": rewrite_url(href, self.url_rewrite_patterns),
                        "band_index": index,
                    }
                )
            children.append(_asset_column(values, page, code))
        return pa.StructArray.from_arrays(
            children, fields=[pa.field(code, ASSET_TYPE) for code in self.band_map.codes]
        )

    def _property(self, item: Mapping[str, Any], prop: PropertyColumn) -> Any:
        value = item["properties"].get(prop.name)
        field = f"properties.{prop.name}"
        if value is None and prop.asset_fallback:
            for key in self.band_map.bands.values():
                asset = item.get("assets", {}).get(key)
                if isinstance(asset, Mapping) and asset.get(prop.name) is not None:
                    value, field = asset[prop.name], f"assets.{key}.{prop.name}"
                    break
        return _coerce(value, prop, item["id"], field)


# -- column helpers ---------------------------------------------------------------------


def _text(value: Any, item_id: str, field: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise StacItemError(
        f"expected a string, got {type(value).__name__} {shorten(value)}",
        item_id=item_id,
        field=field,
    )


def _coerce(value: Any, prop: PropertyColumn, item_id: str, field: str) -> Any:
    """``value`` in the column's type, converting only where nothing is lost."""
    if value is None:
        return None
    kind = prop.type
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if pa.types.is_string(kind):
        if prop.name == "proj:projjson" and isinstance(value, Mapping):
            return json.dumps(value, sort_keys=True)
        if isinstance(value, str):
            return value
        expected = "a string"
    elif pa.types.is_floating(kind):
        if is_number:
            return float(value)
        expected = "a number"
    elif pa.types.is_integer(kind):
        number = value if is_number and isinstance(value, int) else None
        if isinstance(value, float) and value.is_integer():  # 32613.0: pandas-written JSON
            number = int(value)
        if number is not None and _INT32_RANGE[0] <= number <= _INT32_RANGE[1]:
            return number
        expected = "an integer"
    elif pa.types.is_list(kind):
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
        expected = "a list of strings"
    else:  # pragma: no cover - DECLARED_PROPERTIES only uses the types above
        raise TypeError(f"unsupported declared property type {kind}")
    raise StacItemError(
        f"expected {expected}, got {type(value).__name__} {shorten(value)}",
        item_id=item_id,
        field=field,
    )


def _times(props: Sequence[Mapping[str, Any]], ids: list[str], name: str) -> pa.Array:
    field = f"properties.{name}"
    values = []
    for item_id, p in zip(ids, props, strict=True):
        values.append(_text(p.get(name), item_id, field))
    try:
        return normalize_datetime(pa.array(values, pa.string()), pa.array(ids), field)
    except ContractError as exc:
        bad = exc.ids[0] if exc.ids else None
        raise StacItemError(str(exc), item_id=bad, field=field) from exc


def _acquisition_time(times: Mapping[str, pa.Array], ids: list[str]) -> pa.Array:
    when = pc.coalesce(times[DATETIME], times[START_DATETIME])
    if when.null_count:
        first = int(np.flatnonzero(when.is_null().to_numpy(zero_copy_only=False))[0])
        raise StacItemError(
            "datetime is null and there is no start_datetime to use instead",
            item_id=ids[first],
            field=f"properties.{DATETIME}",
        )
    return when


def _geometries(page: Sequence[Mapping[str, Any]]) -> pa.Array:
    texts = []
    for item in page:
        geometry = item.get("geometry")
        if not isinstance(geometry, Mapping):
            raise StacItemError(
                f"expected a GeoJSON geometry object, got {shorten(geometry)}; an item without a "
                "footprint cannot be found by a spatial query",
                item_id=item["id"],
                field=GEOMETRY,
            )
        texts.append(json.dumps(geometry))
    geoms = shapely.from_geojson(np.array(texts, dtype=object), on_invalid="ignore")
    bad = shapely.is_missing(geoms) | shapely.is_empty(geoms)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise StacItemError(
            f"not a valid, non-empty GeoJSON geometry: {texts[first][:200]}",
            item_id=page[first]["id"],
            field=GEOMETRY,
        )
    return pa.array(shapely.to_wkb(geoms, flavor="iso", byte_order=1), pa.binary())


def _rest_as_json(props: Mapping[str, Any], declared: set[str]) -> str:
    rest = {k: v for k, v in props.items() if k not in declared}
    return json.dumps(rest, sort_keys=True, separators=(",", ":"))


#: STAC writes non-finite nodata as strings; Arrow's float fields need the numbers.
_NON_FINITE = {"nan": float("nan"), "inf": float("inf"), "-inf": float("-inf")}
_STAC_FIELD_NAMES = frozenset(f.name for f in STAC_ASSET_FIELDS)


def _stac_asset_fields(asset: Mapping[str, Any]) -> dict[str, Any]:
    """The asset's fields the contract keeps (see ``STAC_ASSET_FIELDS``), nodata made numeric."""
    kept = {k: v for k, v in asset.items() if k in _STAC_FIELD_NAMES}
    if isinstance(kept.get("nodata"), str):
        kept["nodata"] = _NON_FINITE.get(kept["nodata"].lower(), kept["nodata"])
    bands = kept.get("raster:bands")
    if isinstance(bands, list):
        kept["raster:bands"] = [
            {**b, "nodata": _NON_FINITE.get(b["nodata"].lower(), b["nodata"])}
            if isinstance(b, Mapping) and isinstance(b.get("nodata"), str)
            else b
            for b in bands
        ]
    return kept


def _asset_column(
    values: list[dict[str, Any] | None], page: Sequence[Mapping[str, Any]], band: str
) -> pa.StructArray:
    """One band's assets of a page; an asset field of the wrong shape names its item."""
    try:
        return pa.array(values, ASSET_TYPE)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        for item, value in zip(page, values, strict=True):
            try:
                pa.array([value], ASSET_TYPE)
            except (pa.ArrowInvalid, pa.ArrowTypeError) as item_exc:
                raise StacItemError(
                    f"asset for band {band!r} has a field of the wrong type ({item_exc})",
                    item_id=item["id"],
                    field=f"assets.{band}",
                ) from item_exc
        raise StacItemError(
            f"assets for band {band!r}: {exc}", item_id=page[0]["id"], field="assets"
        ) from exc
