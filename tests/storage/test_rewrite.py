"""Prefix rewriting of asset URLs."""

from __future__ import annotations

from rasteret_assets.storage import rewrite_url

PATTERNS = {
    "https://sentinel-cogs.s3.us-west-2.amazonaws.com/": "s3://sentinel-cogs/",
    "https://sentinel-cogs.s3.us-west-2.amazonaws.com/sentinel-s2-l2a-cogs/": "s3://mirror/",
    "s3://mirror/": "https://sentinel-cogs.s3.us-west-2.amazonaws.com/",
}


def test_longest_prefix_wins_regardless_of_order() -> None:
    url = "https://sentinel-cogs.s3.us-west-2.amazonaws.com/sentinel-s2-l2a-cogs/a/B04.tif"
    assert rewrite_url(url, PATTERNS) == "s3://mirror/a/B04.tif"
    assert rewrite_url(url, dict(reversed(PATTERNS.items()))) == "s3://mirror/a/B04.tif"


def test_general_rule_applies_when_specific_does_not() -> None:
    url = "https://sentinel-cogs.s3.us-west-2.amazonaws.com/other/B04.tif"
    assert rewrite_url(url, PATTERNS) == "s3://sentinel-cogs/other/B04.tif"


def test_applied_once_not_chained() -> None:
    # s3://mirror/ -> https://...amazonaws.com/ would match the first rule again if chained.
    assert rewrite_url("s3://mirror/x.tif", PATTERNS) == (
        "https://sentinel-cogs.s3.us-west-2.amazonaws.com/x.tif"
    )


def test_no_match_and_no_patterns() -> None:
    assert rewrite_url("https://elsewhere/x.tif", PATTERNS) == "https://elsewhere/x.tif"
    assert rewrite_url("https://elsewhere/x.tif", None) == "https://elsewhere/x.tif"
    assert rewrite_url("https://elsewhere/x.tif", {"": "s3://b/"}) == "https://elsewhere/x.tif"


def test_query_string_is_carried_over() -> None:
    assert rewrite_url("https://h/a.tif?sig=1", {"https://h/": "https://mirror/"}) == (
        "https://mirror/a.tif?sig=1"
    )
