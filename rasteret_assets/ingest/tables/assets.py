"""The ``assets`` column of a record table, from whatever the table has to the contract's shape.

Record tables carry assets in three ways the builder accepts: a stac-geoparquet ``assets``
struct (or map / JSON), or one column of hrefs (``href_column``) that holds a multi-band
file whose samples are the bands (``band_index_map``). All of them end as
``struct<{band}: struct<href, band_index, STAC fields>>`` (:func:`~.assets.normalize_assets`),
and then

* ``band_index_map`` sets which sample of its file each band is,
* ``url_rewrite_patterns`` rewrite every href *in the table*: the collection stores the URL
  that is actually read, so a reader of the collection needs no rewrite rules of its own,
* the band fields are put in one fixed order, so every record batch of a build has the
  same schema (a map or JSON column only reveals a batch's own keys).

Everything is vectorised over Arrow arrays: a million hrefs are rewritten with a handful of
compute kernels, not a million Python calls.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rasteret_assets.contract import ASSET_TYPE, ContractError
from rasteret_assets.ingest.normalize.assets import asset_array, reject_records, with_asset_field
from rasteret_assets.ingest.normalize.bad_values import example

_MAX_BINARY = int(np.iinfo(np.int32).max)


def assets_from_hrefs(
    values: pa.Array, band_index_map: Mapping[str, int], ids: pa.Array, column: str
) -> pa.StructArray:
    """One asset per band of ``band_index_map``, all pointing at the row's href.

    A record without an href would have no asset at all; it is rejected by id rather than
    written as a record nobody can read.
    """
    hrefs = _strings(values, column, ids)
    missing = pc.fill_null(hrefs.is_null(), True)
    empty = pc.fill_null(pc.equal(hrefs, ""), False)
    reject_records(ids, pc.or_(missing, empty), column, "no href", what="href_column")
    children = [
        asset_array(hrefs, pa.array(np.full(len(hrefs), index, dtype=np.int64)))
        for index in band_index_map.values()
    ]
    return pa.StructArray.from_arrays(
        children, fields=[pa.field(band, ASSET_TYPE) for band in band_index_map]
    )


def set_band_indexes(assets: pa.StructArray, band_index_map: Mapping[str, int]) -> pa.StructArray:
    """Normalised ``assets`` with ``band_index`` of each listed band set (null assets stay)."""
    if not band_index_map:
        return assets
    bands = _bands(assets)
    unknown = sorted(set(band_index_map) - set(bands))
    if unknown:
        raise ContractError(
            f"band_index_map names band(s) {unknown} that the assets do not have; "
            f"assets have {list(bands)}",
            column="assets",
        )
    for band, index in band_index_map.items():
        child = bands[band]
        indexes = pa.array(np.full(len(child), index, dtype=np.int64))
        bands[band] = with_asset_field(child, "band_index", indexes)
    return _assemble(bands, assets)


def rewrite_asset_hrefs(
    assets: pa.StructArray, patterns: Mapping[str, str] | None
) -> pa.StructArray:
    """Normalised ``assets`` with every href rewritten (see :func:`rewrite_strings`)."""
    if not patterns:
        return assets
    bands = _bands(assets)
    for band, child in bands.items():
        hrefs = rewrite_strings(pc.struct_field(child, "href"), patterns)
        bands[band] = with_asset_field(child, "href", hrefs)
    return _assemble(bands, assets)


def rewrite_strings(values: pa.Array, patterns: Mapping[str, str]) -> pa.Array:
    """Vectorised :func:`rasteret_assets.storage.rewrite_url` over a string array.

    Same rule: the longest matching prefix is replaced, once, never chained. Prefixes are
    tried longest first and a value that matched is not touched by shorter ones.
    """
    values = _strings(values, "href")
    result = values
    done = pa.array(np.zeros(len(values), dtype=bool))
    for prefix in sorted((p for p in patterns if p), key=len, reverse=True):
        hit = pc.and_not(pc.fill_null(pc.starts_with(values, prefix), False), done)
        if not pc.any(hit).as_py():
            continue
        matching = values.filter(hit).cast(pa.binary())
        # Slice bytes, not characters: the prefix is whole UTF-8 sequences, so the rest is too.
        # (An explicit stop: pyarrow 26's binary_slice without one fails on some inputs.)
        rest = pc.binary_slice(matching, len(prefix.encode()), _MAX_BINARY).cast(pa.string())
        replaced = pc.binary_join_element_wise(patterns[prefix], rest, "")
        result = pc.replace_with_mask(result, hit, replaced)
        done = pc.or_(done, hit)
    return result


def conform_assets(assets: pa.StructArray, bands: Sequence[str]) -> pa.StructArray:
    """``assets`` with exactly ``bands`` as fields, in that order (absent bands all null).

    Raises :class:`ContractError` for a band outside ``bands``: the caller collected the
    bands of the whole table first, so an unknown one means the table changed under it.
    """
    present = _bands(assets)
    extra = sorted(set(present) - set(bands))
    if extra:
        raise ContractError(
            f"assets have band(s) {extra} that the first scan of the table did not see; "
            "was the table modified during the build?",
            column="assets",
        )
    if list(present) == list(bands):
        return assets
    children = [
        present[band] if band in present else pa.nulls(len(assets), ASSET_TYPE) for band in bands
    ]
    return pa.StructArray.from_arrays(children, fields=[pa.field(b, ASSET_TYPE) for b in bands])


def _bands(assets: pa.StructArray) -> dict[str, pa.Array]:
    return dict(zip([f.name for f in assets.type], assets.flatten(), strict=True))


def _assemble(bands: dict[str, pa.Array], like: pa.StructArray) -> pa.StructArray:
    return pa.StructArray.from_arrays(
        list(bands.values()),
        fields=[pa.field(band, child.type) for band, child in bands.items()],
        mask=like.is_null() if like.null_count else None,
    )


def _strings(values: pa.Array, column: str, ids: pa.Array | None = None) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    kind = values.type
    if not (
        pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind)
    ):
        shown = example(values, ids) if ids is not None else ""
        raise ContractError(
            f"column {column!r}: hrefs must be strings, got {kind}{shown}", column=column
        )
    return values.cast(pa.string())
