"""The ``assets`` column as ``struct<{band}: struct<href, band_index, STAC asset fields>>``.

Sources hand assets over as stac-geoparquet structs (with title, roles, eo:bands …), maps,
bare href strings, Python dicts or JSON text. Readers need where each band lives and which
sample of the file it is; users also need what the catalog says about the asset (e.g. the
``raster:bands`` scale and offset that turn Landsat's stored values into reflectance). So
every shape becomes one typed struct per band (:data:`~rasteret_assets.contract.ASSET_TYPE`):
``href``, ``band_index`` (default 0, single-band files) and the STAC fields the contract
lists, null where the source has none. A band a record lacks is null.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rasteret_assets.contract import ASSET_TYPE, STAC_ASSET_FIELDS, ContractError, describe_ids
from rasteret_assets.ingest.normalize.bad_values import example


def normalize_assets(values: pa.Array, ids: pa.Array, column: str) -> pa.StructArray:
    """Every record's assets keyed by band; raises :class:`ContractError` naming records."""
    bands = asset_children(values, ids, column)
    if not bands:
        raise ContractError(f"column {column!r}: no record has any asset", column=column)
    children = [_asset(child, ids, column, band) for band, child in bands.items()]
    return pa.StructArray.from_arrays(
        children, fields=[pa.field(band, ASSET_TYPE) for band in bands]
    )


def asset_children(values: pa.Array, ids: pa.Array, column: str) -> dict[str, pa.Array]:
    """``{band: that band's raw asset per record}`` from any accepted shape of ``assets``.

    The children keep whatever the source gave (stac-geoparquet structs with ``type`` and
    ``roles``, bare hrefs …), for callers that need more than href and band index.
    """
    kind = values.type
    if pa.types.is_dictionary(kind):
        return asset_children(values.dictionary_decode(), ids, column)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return asset_children(_parse_json(values, ids, column), ids, column)
    reject_records(ids, values.is_null(), column, "null assets")
    if pa.types.is_map(kind):
        return _map_to_bands(values)
    if pa.types.is_struct(kind):
        return dict(zip([f.name for f in kind], values.flatten(), strict=True))
    raise ContractError(
        f"column {column!r}: cannot read {kind} as assets{example(values, ids)}; expected a "
        "struct or map keyed by band, or JSON objects",
        column=column,
    )


def _parse_json(values: pa.Array, ids: pa.Array, column: str) -> pa.Array:
    """JSON objects → Arrow structs (Arrow has no per-row JSON kernel; assets are small)."""
    parsed = []
    for record_id, text in zip(ids.to_pylist(), values.to_pylist(), strict=True):
        try:
            value = None if text is None else json.loads(text)
        except json.JSONDecodeError as exc:
            raise ContractError(
                f"column {column!r}: record {record_id!r} holds invalid JSON ({exc})",
                column=column,
                ids=[str(record_id)],
            ) from exc
        if value is not None and not isinstance(value, dict):
            raise ContractError(
                f"column {column!r}: record {record_id!r} holds JSON {type(value).__name__}, "
                "expected an object keyed by band",
                column=column,
                ids=[str(record_id)],
            )
        parsed.append(value)
    try:
        return pa.array(parsed)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise ContractError(
            f"column {column!r}: assets JSON mixes shapes across records ({exc}); give every "
            "band either an href string or an object with 'href'",
            column=column,
        ) from exc


def _map_to_bands(values: pa.MapArray) -> dict[str, pa.Array]:
    keys = pc.unique(values.keys).drop_null().to_pylist()
    return {str(key): pc.map_lookup(values, key, "first") for key in keys}


def _asset(child: pa.Array, ids: pa.Array, column: str, band: str) -> pa.StructArray:
    kind = child.type
    if pa.types.is_dictionary(kind):
        return _asset(child.dictionary_decode(), ids, column, band)
    where = f"{column}.{band}"
    if pa.types.is_null(kind):
        return pa.nulls(len(child), ASSET_TYPE)
    fields: dict[str, pa.Array] = {}
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        href = child.cast(pa.string())
        band_index = pa.array(np.zeros(len(child), np.int64))
    elif pa.types.is_struct(kind) and kind.get_field_index("href") >= 0:
        fields = dict(zip([f.name for f in kind], child.flatten(), strict=True))
        href = _href(fields["href"], ids, f"{where}.href")
        reject_records(
            ids, pc.and_kleene(child.is_valid(), href.is_null()), where, "an asset without href"
        )
        band_index = _band_index(fields.get("band_index"), len(child), ids, where)
    else:
        raise ContractError(
            f"column {where!r}: an asset must be an href string or a struct with 'href', "
            f"got {kind}{example(child, ids)}",
            column=where,
        )
    return asset_array(href, band_index, stac_fields(fields, ids, where), mask=href.is_null())


def asset_array(
    href: pa.Array,
    band_index: pa.Array,
    stac: Mapping[str, pa.Array] | None = None,
    *,
    mask: pa.Array | None = None,
) -> pa.StructArray:
    """One band's assets in the contract's type; STAC fields not in ``stac`` are null."""
    stac = stac or {}
    n = len(href)
    children = [href, band_index] + [
        stac[f.name] if f.name in stac else pa.nulls(n, f.type) for f in STAC_ASSET_FIELDS
    ]
    return pa.StructArray.from_arrays(children, fields=list(ASSET_TYPE), mask=mask)


def with_asset_field(assets: pa.StructArray, name: str, values: pa.Array) -> pa.StructArray:
    """One band's normalised assets with field ``name`` replaced (null assets stay null)."""
    children = [
        values if f.name == name else child
        for f, child in zip(assets.type, assets.flatten(), strict=True)
    ]
    return pa.StructArray.from_arrays(
        children, fields=list(assets.type), mask=assets.is_null() if assets.null_count else None
    )


def stac_fields(fields: Mapping[str, pa.Array], ids: pa.Array, where: str) -> dict[str, pa.Array]:
    """The contract's STAC asset fields among a raw asset's ``fields``, cast to their types.

    Nested structs are matched by field name (extra fields dropped, missing ones null);
    a value that cannot take its type (a list where a number belongs) is a
    :class:`ContractError` naming the field.
    """
    typed: dict[str, pa.Array] = {}
    for target in STAC_ASSET_FIELDS:
        values = fields.get(target.name)
        if values is None or pa.types.is_null(values.type):
            continue
        try:
            typed[target.name] = values.cast(target.type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
            column = f"{where}.{target.name}"
            raise ContractError(
                f"column {column!r}: cannot read {values.type} as {target.type}"
                f"{example(values, ids)} ({exc})",
                column=column,
            ) from exc
    return typed


def _href(values: pa.Array, ids: pa.Array, where: str) -> pa.Array:
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        raise ContractError(
            f"column {where!r}: href must be a string, got {values.type}{example(values, ids)}",
            column=where,
        )
    return values.cast(pa.string())


def _band_index(values: pa.Array | None, n: int, ids: pa.Array, where: str) -> pa.Array:
    if values is None or pa.types.is_null(values.type):
        return pa.array(np.zeros(n, np.int64))
    if not pa.types.is_integer(values.type):
        column = f"{where}.band_index"
        raise ContractError(
            f"column {column!r}: band_index must be an integer, got {values.type}"
            f"{example(values, ids)}",
            column=column,
        )
    index = pc.fill_null(values.cast(pa.int64()), 0)
    reject_records(ids, pc.less(index, 0), f"{where}.band_index", "a negative band_index")
    return index


def reject_records(
    ids: pa.Array, bad: pa.Array, column: str, cause: str, *, what: str = "column"
) -> None:
    """Raise ``ContractError`` naming the records where ``bad`` holds (null counts as fine)."""
    bad = pc.fill_null(bad, False)
    if pc.any(bad).as_py():
        names = [str(i) for i in pc.filter(ids, bad).to_pylist()]
        raise ContractError(
            f"{what} {column!r}: {cause} in {describe_ids(names)}",
            column=column,
            ids=names[:5],
        )
