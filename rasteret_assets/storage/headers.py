"""Parsing of the few HTTP header values range reads depend on.

Shared by the HTTP and S3 backends (S3 is HTTP underneath and botocore hands back the same
header strings), so both agree on object size, ETag freshness and back-off hints.
"""

from __future__ import annotations

import functools
import re
import time
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import NamedTuple

_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(?:(\d+)-(\d+)|\*)\s*/\s*(\d+|\*)\s*$", re.IGNORECASE)


class ContentRange(NamedTuple):
    """A parsed ``Content-Range``; ``start``/``end`` are None for ``bytes */total`` (416)."""

    start: int | None
    end: int | None  # inclusive, as on the wire
    total: int | None  # None when the server sends ``*`` (size unknown)


def parse_content_range(value: str | None) -> ContentRange | None:
    """Parse ``bytes a-b/total``, ``bytes a-b/*`` or ``bytes */total``; None if malformed."""
    if not value:
        return None
    match = _CONTENT_RANGE.match(value)
    if match is None:
        return None
    first, last, total = match.groups()
    start = int(first) if first is not None else None
    end = int(last) if last is not None else None
    if start is not None and end is not None and end < start:
        return None
    return ContentRange(start, end, None if total == "*" else int(total))


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta-seconds or an HTTP-date).

    Returns None when absent or unparseable, so callers fall back to their own back-off
    instead of trusting garbage.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if seconds == seconds else None  # reject NaN
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def to_iso_timestamp(value: str | datetime | None) -> str | None:
    """Normalise ``Last-Modified`` (HTTP-date string or datetime) to ISO 8601 UTC.

    HTTP, S3 and local files report modification times in three shapes; one shape lets the
    engine compare them and store them in one column.
    """
    if value is None:
        return None
    if isinstance(value, datetime):
        return _iso_utc(value)
    return _http_date_to_iso(value)


@functools.lru_cache(maxsize=4096)
def _http_date_to_iso(value: str) -> str | None:
    """Cached: the files of a collection were mostly written within a few seconds of each
    other, and ``email.utils`` took 2 % of a header run's CPU parsing the same dates."""
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return value.strip() or None
    return _iso_utc(when)


def _iso_utc(when: datetime) -> str:
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).isoformat()
