"""URL redaction: nothing that can replay a signed request may survive."""

from __future__ import annotations

import pytest

from rasteret_assets.storage import redact_url, scrub_text


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "https://bucket.s3.amazonaws.com/a/b.tif?X-Amz-Signature=SECRET&X-Amz-Credential=AK",
            "https://bucket.s3.amazonaws.com/a/b.tif",
        ),
        ("https://user:SECRET@host.example/p.tif", "https://host.example/p.tif"),
        ("https://host.example:8443/p.tif?sig=SECRET#frag", "https://host.example:8443/p.tif"),
        ("http://[::1]:9000/p.tif?token=SECRET", "http://[::1]:9000/p.tif"),
        ("s3://bucket/key.tif", "s3://bucket/key.tif"),
        ("file:///data/x.tif", "file:///data/x.tif"),
        ("/data/odd?name.tif", "/data/odd?name.tif"),  # a plain path: '?' is part of the name
        ("relative/x.tif", "relative/x.tif"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_redact_is_idempotent() -> None:
    url = "https://u:p@h/x?y=1#z"
    assert redact_url(redact_url(url)) == redact_url(url)


def test_unparseable_url_keeps_nothing_but_the_scheme() -> None:
    assert redact_url("http://[bad-ipv6/x?sig=SECRET") == "http://<unparseable>"


def test_scrub_text_redacts_every_embedded_url() -> None:
    text = (
        "Cannot connect to host https://h/a.tif?X-Amz-Signature=SECRET "
        "(redirected to 'https://u:SECRET@other/b.tif?sig=SECRET')"
    )
    scrubbed = scrub_text(text)
    assert "SECRET" not in scrubbed
    assert "https://h/a.tif" in scrubbed
    assert "https://other/b.tif" in scrubbed
