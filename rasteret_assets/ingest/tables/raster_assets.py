"""Which assets of a record look like rasters worth a header read.

A stac-geoparquet record lists every file of an item: the band COGs, but also thumbnails,
rendered previews, XML/JSON metadata and tile endpoints. When the caller names no band
codes, enriching "all assets" would spend a request on each of those and record an error
for every one. So an asset is read only when it looks like a raster, judged from what the
record says, strongest evidence first:

1. ``roles`` containing ``thumbnail``, ``overview`` or ``metadata``: not a raster (a preview
   PNG, or the XML describing the scene);
2. a media ``type``: a raster when it says TIFF (``image/tiff``, ``…geotiff``,
   ``…cloud-optimized``), not one otherwise (``image/png``, ``application/json`` …);
3. ``roles`` containing ``data``: a raster unless the href's extension says otherwise
   (``.xml``, ``.json``, ``.jpg``, ``.png``, ``.html`` …);
4. otherwise only an href ending in ``.tif`` / ``.tiff`` (query string ignored).

The rules were checked against the Planetary Computer Sentinel-2, Landsat and NAIP
stac-geoparquet fixtures: every band COG is kept (Landsat ``qa_radsat`` has no ``data`` role
but a COG media type), and ``rendered_preview``, ``thumbnail``, ``tilejson``,
``*-metadata``, ``mtl.*`` and ``ang`` are skipped.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

RASTER_MEDIA_HINTS = ("image/tiff", "geotiff", "cloud-optimized")
NON_RASTER_ROLES = ("thumbnail", "overview", "metadata")
RASTER_EXTENSIONS = (".tif", ".tiff")
NON_RASTER_EXTENSIONS = (
    ".xml",
    ".json",
    ".jpg",
    ".jpeg",
    ".png",
    ".html",
    ".htm",
    ".txt",
)


def raster_mask(asset: pa.Array) -> np.ndarray:
    """Per record, does this asset (struct with href/type/roles, or an href) look like a raster?

    Null assets are ``False``.
    """
    n = len(asset)
    if isinstance(asset, pa.ChunkedArray):
        asset = asset.combine_chunks()
    kind = asset.type
    if pa.types.is_null(kind):
        return np.zeros(n, dtype=bool)
    if pa.types.is_dictionary(kind):
        return raster_mask(asset.dictionary_decode())
    if _is_text(kind):
        return _extension_is(asset, RASTER_EXTENSIONS)
    if not pa.types.is_struct(kind):
        return np.zeros(n, dtype=bool)
    fields = dict(zip([f.name for f in kind], asset.flatten(), strict=True))
    present = asset.is_valid().to_numpy(zero_copy_only=False)
    href = fields.get("href")
    if href is None or not _is_text(href.type):
        return np.zeros(n, dtype=bool)
    excluded = _has_role(fields.get("roles"), NON_RASTER_ROLES, n)
    is_data = _has_role(fields.get("roles"), ("data",), n)
    media = fields.get("type")
    if media is not None and _is_text(media.type):
        media_known = media.is_valid().to_numpy(zero_copy_only=False)
        media_raster = _contains_any(media, RASTER_MEDIA_HINTS)
    else:
        media_known = media_raster = np.zeros(n, dtype=bool)
    by_role = is_data & ~_extension_is(href, NON_RASTER_EXTENSIONS)
    by_extension = _extension_is(href, RASTER_EXTENSIONS)
    guess = np.where(media_known, media_raster, by_role | by_extension)
    return present & href.is_valid().to_numpy(zero_copy_only=False) & ~excluded & guess


def _is_text(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


def _lower_path(href: pa.Array) -> pa.Array:
    """The href lower-cased, without query string or fragment (signed URLs end in ``?sig``)."""
    return pc.utf8_lower(pc.replace_substring_regex(href.cast(pa.string()), r"[?#].*$", ""))


def _extension_is(href: pa.Array, extensions: tuple[str, ...]) -> np.ndarray:
    path = _lower_path(href)
    hit = np.zeros(len(href), dtype=bool)
    for extension in extensions:
        hit |= pc.fill_null(pc.ends_with(path, extension), False).to_numpy(zero_copy_only=False)
    return hit


def _contains_any(text: pa.Array, needles: tuple[str, ...]) -> np.ndarray:
    lowered = pc.utf8_lower(text.cast(pa.string()))
    hit = np.zeros(len(text), dtype=bool)
    for needle in needles:
        found = pc.match_substring(lowered, needle)
        hit |= pc.fill_null(found, False).to_numpy(zero_copy_only=False)
    return hit


def _has_role(roles: pa.Array | None, wanted: tuple[str, ...], n: int) -> np.ndarray:
    """Per record, does its ``roles`` list contain any of ``wanted`` (case-insensitive)?"""
    hit = np.zeros(n, dtype=bool)
    if roles is None or not (pa.types.is_list(roles.type) or pa.types.is_large_list(roles.type)):
        return hit
    if not _is_text(roles.type.value_type):
        return hit
    flat = pc.list_flatten(roles)
    if len(flat) == 0:
        return hit
    parents = pc.list_parent_indices(roles).to_numpy()
    matches = pc.fill_null(pc.is_in(pc.utf8_lower(flat), pa.array(wanted)), False)
    hit[parents[matches.to_numpy(zero_copy_only=False)]] = True
    return hit
