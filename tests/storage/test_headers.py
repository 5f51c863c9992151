"""Header parsing shared by the HTTP and S3 backends."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import formatdate

import pytest

from rasteret_assets.storage.headers import (
    ContentRange,
    parse_content_range,
    parse_retry_after,
    to_iso_timestamp,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("bytes 0-99/1000", ContentRange(0, 99, 1000)),
        ("bytes 10-19/*", ContentRange(10, 19, None)),
        ("bytes */1000", ContentRange(None, None, 1000)),
        ("BYTES 5-5/6", ContentRange(5, 5, 6)),
        ("bytes 9-3/100", None),
        ("items 0-1/2", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_content_range(value: str | None, expected: ContentRange | None) -> None:
    assert parse_content_range(value) == expected


def test_retry_after_seconds() -> None:
    assert parse_retry_after("0") == 0.0
    assert parse_retry_after(" 7 ") == 7.0
    assert parse_retry_after("1.5") == 1.5
    assert parse_retry_after("-3") == 0.0


def test_retry_after_http_date() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after(formatdate(now + 30, usegmt=True), now=now) == pytest.approx(30)
    assert parse_retry_after(formatdate(now - 30, usegmt=True), now=now) == 0.0


@pytest.mark.parametrize("value", [None, "", "soon", "nan"])
def test_retry_after_garbage_is_ignored(value: str | None) -> None:
    assert parse_retry_after(value) is None


def test_to_iso_timestamp() -> None:
    assert to_iso_timestamp("Wed, 21 Oct 2015 07:28:00 GMT") == "2015-10-21T07:28:00+00:00"
    naive = datetime(2015, 10, 21, 7, 28)
    assert to_iso_timestamp(naive) == "2015-10-21T07:28:00+00:00"
    assert to_iso_timestamp(datetime(2015, 10, 21, 7, 28, tzinfo=UTC)) == (
        "2015-10-21T07:28:00+00:00"
    )
    assert to_iso_timestamp(None) is None
    assert to_iso_timestamp("not a date") == "not a date"
