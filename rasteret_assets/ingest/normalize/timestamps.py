"""Acquisition times as ``timestamp[us, UTC]``, whatever shape the source gave them in.

Sources disagree: stac-geoparquet stores ``timestamp[ms, UTC]``, STAC JSON gives RFC 3339
strings with ``Z`` or an offset, hand-made record tables carry naive timestamps or just a
year. Everything becomes one UTC instant so that partitions (``year``/``month``) and date
filters mean the same thing for every source. Naive values are taken as UTC because STAC
requires UTC and a local-time guess would silently shift records between months.
"""

from __future__ import annotations

import re
from typing import NoReturn

import pyarrow as pa
import pyarrow.compute as pc

from rasteret_assets.contract import DATETIME_TYPE, ContractError, describe_ids
from rasteret_assets.ingest.normalize.bad_values import example

#: A zone designator after the time of day: ``Z`` or ``±HH:MM`` (``±HHMM`` / ``±HH`` tolerated).
#: Anchored on the time so the day of a bare date (``2024-01-15``) is not read as an offset.
_ZONE_SUFFIX = r"\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}(:?\d{2})?)$"
#: Arrow parses at most microseconds for ``us``; RFC 3339 allows any number of digits.
_EXTRA_FRACTION = r"(\.\d{6})\d+"
_MIN_YEAR, _MAX_YEAR = 1, 9999


def normalize_datetime(values: pa.Array, ids: pa.Array, column: str) -> pa.Array:
    """``values`` as ``timestamp[us, UTC]``; nulls stay null (the caller decides about them).

    Accepts timestamps of any unit and zone (naive = UTC), dates, RFC 3339 / ISO 8601
    strings (with offset, ``Z`` or naive = UTC; digits past microseconds are truncated) and
    integer years (January 1st, 00:00 UTC). Anything else raises :class:`ContractError`
    naming the column and some of the offending records.
    """
    kind = values.type
    if pa.types.is_dictionary(kind):
        return normalize_datetime(values.dictionary_decode(), ids, column)
    if pa.types.is_null(kind):
        return pa.nulls(len(values), DATETIME_TYPE)
    if pa.types.is_timestamp(kind):
        return _timestamp_to_utc(values)
    if pa.types.is_date(kind):
        return _timestamp_to_utc(values.cast(pa.timestamp("us")))
    if pa.types.is_integer(kind):
        return _years_to_utc(values, ids, column)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return _strings_to_utc(values.cast(pa.string()), ids, column)
    raise ContractError(
        f"column {column!r}: cannot read {kind} as a datetime{example(values, ids)}; expected "
        "a timestamp, a date, an RFC 3339 string or an integer year",
        column=column,
    )


def _timestamp_to_utc(values: pa.Array) -> pa.Array:
    """Any timestamp → ``us`` UTC. Arrow stores zoned values as UTC already, and naive ones
    are taken as UTC, so only the unit changes; sub-microsecond digits are truncated."""
    unit_changed = values.cast(pa.timestamp("us", tz=values.type.tz), safe=False)
    return unit_changed.cast(DATETIME_TYPE)


def _years_to_utc(values: pa.Array, ids: pa.Array, column: str) -> pa.Array:
    valid = values.is_valid()
    out_of_range = pc.and_kleene(
        valid, pc.or_(pc.less(values, _MIN_YEAR), pc.greater(values, _MAX_YEAR))
    )
    if pc.any(out_of_range).as_py():
        bad = pc.filter(ids, out_of_range)
        sample = pc.filter(values, out_of_range)[0].as_py()
        raise ContractError(
            f"column {column!r}: integers are read as years ({_MIN_YEAR}-{_MAX_YEAR}); "
            f"out of range in {describe_ids(bad.to_pylist(), len(bad))} (e.g. {sample})",
            column=column,
            ids=bad.to_pylist()[:5],
        )
    years = pc.fill_null(values.cast(pa.int64()), 1970).to_numpy()
    instants = (years - 1970).astype("datetime64[Y]").astype("datetime64[us]")
    missing = pc.invert(valid).to_numpy(zero_copy_only=False)
    return pa.array(instants, type=pa.timestamp("us"), mask=missing).cast(DATETIME_TYPE)


def _strings_to_utc(values: pa.Array, ids: pa.Array, column: str) -> pa.Array:
    text = pc.utf8_upper(pc.utf8_trim_whitespace(values))
    text = pc.replace_substring_regex(text, _EXTRA_FRACTION, r"\1")
    zoned = pc.match_substring_regex(text, _ZONE_SUFFIX)
    with_zone = pc.if_else(zoned, text, pa.scalar(None, pa.string()))
    naive = pc.if_else(zoned, pa.scalar(None, pa.string()), text)
    try:
        from_zoned = with_zone.cast(DATETIME_TYPE)
        from_naive = naive.cast(pa.timestamp("us")).cast(DATETIME_TYPE)
    except pa.ArrowInvalid as exc:
        _raise_unparseable(values, text, ids, column, exc)
    return pc.coalesce(from_zoned, from_naive)


def _raise_unparseable(
    raw: pa.Array, text: pa.Array, ids: pa.Array, column: str, cause: pa.ArrowInvalid
) -> NoReturn:
    """Find which strings failed (error path only, so a per-value loop is fine)."""
    bad_ids: list[str] = []
    bad_values: list[str] = []
    for record_id, original, cleaned in zip(
        ids.to_pylist(), raw.to_pylist(), text.to_pylist(), strict=True
    ):
        if cleaned is None:
            continue
        target = DATETIME_TYPE if re.search(_ZONE_SUFFIX, cleaned) else pa.timestamp("us")
        try:
            pa.array([cleaned]).cast(target)
        except pa.ArrowInvalid:
            bad_ids.append(str(record_id))
            bad_values.append(original)
    if not bad_ids:  # every value parses alone; only the batch failed — report Arrow's reason
        raise ContractError(f"column {column!r}: {cause}", column=column) from cause
    raise ContractError(
        f"column {column!r}: not an RFC 3339 timestamp in {describe_ids(bad_ids)} "
        f"(e.g. {bad_values[0]!r}); expected e.g. '2024-01-31T10:00:00Z'",
        column=column,
        ids=bad_ids[:5],
    ) from cause
