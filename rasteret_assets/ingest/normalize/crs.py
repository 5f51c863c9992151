"""The raster CRS of each record as ``proj:epsg`` (int32) plus ``crs`` (string).

STAC has spelled the raster CRS several ways over the years: ``proj:epsg`` (projection
extension 1.x), ``proj:code`` (2.x, e.g. ``EPSG:32613`` or ``IAU_2015:49900``), ``proj:wkt2``
and ``proj:projjson``; record tables often just have ``crs``. They are read in that order of
preference — ``proj:code``, ``proj:epsg``, ``crs``, ``proj:wkt2``, ``proj:projjson`` — and the
first that names an EPSG code wins. ``crs`` becomes ``EPSG:n`` when a code is known, and
otherwise the first non-EPSG definition given (authority code, WKT or PROJJSON text), so a
CRS without an EPSG code is kept rather than lost. Only item-level columns are read.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import pyarrow as pa
import pyarrow.compute as pc

from rasteret_assets.contract import CRS, PROJ_EPSG, ContractError
from rasteret_assets.ingest.normalize.bad_values import example

PROJ_CODE = "proj:code"
PROJ_WKT2 = "proj:wkt2"
PROJ_PROJJSON = "proj:projjson"
SOURCE_COLUMNS = (PROJ_CODE, PROJ_EPSG, CRS, PROJ_WKT2, PROJ_PROJJSON)

#: ``EPSG:n``, ``EPSG::n``, OGC URNs and URIs: the spellings of an EPSG code in a string.
_EPSG_TEXT = (
    r"(?i)^\s*(?:EPSG::?|URN:OGC:DEF:CRS:EPSG:[^:]*:|"
    r"HTTPS?://WWW\.OPENGIS\.NET/DEF/CRS/EPSG/[^/]*/)(?P<code>\d+)\s*$"
)
#: ``proj:epsg`` written as text may be just the digits.
_EPSG_OR_DIGITS = _EPSG_TEXT.replace("(?:EPSG::?", "(?:|EPSG::?")
#: The top-level ``ID["EPSG",n]`` (WKT2) or ``AUTHORITY["EPSG","n"]`` (WKT1) closes a WKT.
_EPSG_WKT = r'(?s)(?:ID|AUTHORITY)\[\s*"EPSG"\s*,\s*"?(?P<code>\d+)"?\s*\]\s*\]\s*$'


def raster_crs(columns: Mapping[str, pa.Array], ids: pa.Array) -> tuple[pa.Array, pa.Array]:
    """``(proj:epsg int32, crs string)`` from whichever CRS columns ``columns`` has.

    ``ids`` name the records in errors (and give the row count).
    """
    n = len(ids)
    epsg_candidates: list[pa.Array] = []
    text_candidates: list[pa.Array] = []
    for name in SOURCE_COLUMNS:
        values = columns.get(name)
        if values is None or pa.types.is_null(values.type):
            continue
        if name == PROJ_EPSG and not _is_text(values.type):
            epsg_candidates.append(_integer_codes(values, ids, name))
            continue
        text = _as_text(values, ids, name)
        if name == PROJ_PROJJSON:
            epsg_candidates.append(_projjson_codes(text))
        else:
            pattern = {PROJ_WKT2: _EPSG_WKT, PROJ_EPSG: _EPSG_OR_DIGITS}.get(name, _EPSG_TEXT)
            epsg_candidates.append(_extract_code(text, pattern))
        text_candidates.append(text)
    if not epsg_candidates:
        return pa.nulls(n, pa.int32()), pa.nulls(n, pa.string())
    epsg = pc.coalesce(*epsg_candidates)
    from_code = pc.binary_join_element_wise("EPSG:", epsg.cast(pa.string()), "")
    crs = pc.coalesce(from_code, *text_candidates) if text_candidates else from_code
    return epsg, crs


def _is_text(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


def _integer_codes(values: pa.Array, ids: pa.Array, name: str) -> pa.Array:
    """Integer (or integral float, as pandas writes them) EPSG codes → int32."""
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    if not (pa.types.is_integer(values.type) or pa.types.is_floating(values.type)):
        raise ContractError(
            f"column {name!r}: expected integer EPSG codes, got {values.type}"
            f"{example(values, ids)}",
            column=name,
        )
    try:
        return values.cast(pa.int32())
    except pa.ArrowInvalid as exc:
        if pa.types.is_floating(values.type):
            bad = pc.not_equal(values, pc.floor(values))
        else:
            bad = pc.not_equal(values, values.cast(pa.int32(), safe=False).cast(values.type))
        raise ContractError(
            f"column {name!r}: not an integer EPSG code{example(values, ids, bad)} ({exc})",
            column=name,
        ) from exc


def _as_text(values: pa.Array, ids: pa.Array, name: str) -> pa.Array:
    """The column as strings; a PROJJSON struct is serialised (rare, so row by row)."""
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    if _is_text(values.type):
        return values.cast(pa.string())
    if pa.types.is_integer(values.type):
        return pc.binary_join_element_wise("EPSG:", values.cast(pa.string()), "")
    if pa.types.is_struct(values.type) or pa.types.is_map(values.type):
        return pa.array(
            [None if v is None else json.dumps(v) for v in values.to_pylist()], pa.string()
        )
    raise ContractError(
        f"column {name!r}: cannot read {values.type} as a CRS{example(values, ids)}", column=name
    )


def _extract_code(text: pa.Array, pattern: str) -> pa.Array:
    codes = pc.struct_field(pc.extract_regex(text, pattern), "code")
    return codes.cast(pa.int32())


def _projjson_codes(text: pa.Array) -> pa.Array:
    """``id: {authority: EPSG, code: n}`` at the top of a PROJJSON object."""
    codes: list[int | None] = []
    for value in text.to_pylist():
        code = None
        try:
            ident = json.loads(value).get("id") if value else None
        except (json.JSONDecodeError, AttributeError):
            ident = None
        if isinstance(ident, dict) and str(ident.get("authority", "")).upper() == "EPSG":
            code = int(ident["code"]) if str(ident.get("code", "")).isdigit() else None
        codes.append(code)
    return pa.array(codes, pa.int32())
