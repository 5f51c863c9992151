"""Prefix rewriting of asset URLs.

Catalogs often publish ``https://`` hrefs for objects that are cheaper or only possible to
read through another route (``s3://`` with requester-pays credentials, a mirror). A single
prefix table, the reference API's ``url_rewrite_patterns``, maps one onto the other.
"""

from __future__ import annotations

from collections.abc import Mapping


def rewrite_url(url: str, patterns: Mapping[str, str] | None) -> str:
    """Replace the longest matching prefix of ``url``; applied once, never chained.

    Longest-first makes specific rules (one bucket) override general ones (one host)
    regardless of dict order; applying once keeps rules that map onto each other from
    looping.
    """
    if not patterns:
        return url
    best = max(
        (prefix for prefix in patterns if prefix and url.startswith(prefix)), key=len, default=None
    )
    if best is None:
        return url
    return patterns[best] + url[len(best) :]
