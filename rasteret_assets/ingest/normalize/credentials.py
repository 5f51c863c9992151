"""Keep credentials out of written hrefs.

A record table or catalog may hold presigned URLs (S3 ``X-Amz-Signature``, Azure SAS ``sig``,
GCS ``X-Goog-Signature``) or ``user:password@`` hosts. Written into Parquet they would hand
replayable access to anyone who can read the collection, and they expire anyway. So the
records step stores every href without userinfo and without signing parameters; other query
parameters (a ``version=2`` say) stay, because they are part of the object's address. Access
to private objects comes from the storage resource's credentials instead.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pyarrow as pa
import pyarrow.compute as pc

from rasteret_assets.contract import ASSETS
from rasteret_assets.ingest.normalize.columns import with_column

#: Query parameters that sign or authorise a request (compared case-insensitively).
SIGNING_PARAMETERS = frozenset(
    {
        # Azure SAS
        "sig", "se", "st", "sp", "sv", "sr", "spr", "sip", "ss", "srt", "skoid", "sktid",
        "skt", "ske", "sks", "skv", "saoid", "suoid", "scid",
        # CloudFront and legacy S3 query auth
        "signature", "expires", "key-pair-id", "policy", "awsaccesskeyid",
        "x-amz-security-token",
        # GCS legacy
        "googleaccessid",
        # Bearer-style
        "token", "access_token", "api_key", "apikey", "code",
    }
)  # fmt: skip
_SIGNING_PREFIXES = ("x-amz-", "x-goog-")


def is_signing_parameter(name: str) -> bool:
    lowered = name.lower()
    return lowered in SIGNING_PARAMETERS or lowered.startswith(_SIGNING_PREFIXES)


def strip_credentials(href: str) -> str:
    """``href`` without userinfo and signing query parameters (anything else unchanged)."""
    if "://" not in href:
        return href
    parts = urlsplit(href)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    kept = [(k, v) for k, v in pairs if not is_signing_parameter(k)]
    query = parts.query if len(kept) == len(pairs) else urlencode(kept)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def strip_href_array(hrefs: pa.Array) -> tuple[pa.Array, int]:
    """``hrefs`` stripped of credentials, and how many changed.

    Only hrefs with a ``?`` or ``@`` can carry credentials, so only those are parsed.
    """
    suspect = pc.fill_null(pc.match_substring_regex(hrefs, r"[?@]"), False)
    if not pc.any(suspect).as_py():
        return hrefs, 0
    originals = hrefs.filter(suspect).to_pylist()
    cleaned = [strip_credentials(h) for h in originals]
    changed = sum(a != b for a, b in zip(originals, cleaned, strict=True))
    if not changed:
        return hrefs, 0
    return pc.replace_with_mask(hrefs, suspect, pa.array(cleaned, hrefs.type)), changed


def strip_asset_credentials(table: pa.Table) -> tuple[pa.Table, int]:
    """``table`` with every asset href stripped; also how many hrefs changed."""
    assets = table.column(ASSETS).combine_chunks()
    children, changed = [], 0
    for band in assets.type:
        child = assets.field(band.name)
        hrefs, count = strip_href_array(pc.struct_field(child, "href"))
        if not count:
            children.append(child)
            continue
        changed += count
        fields = [hrefs if f.name == "href" else child.field(f.name) for f in child.type]
        children.append(
            pa.StructArray.from_arrays(fields, fields=list(child.type), mask=child.is_null())
        )
    if not changed:
        return table, 0
    stripped = pa.StructArray.from_arrays(children, fields=list(assets.type), mask=assets.is_null())
    return with_column(table, ASSETS, stripped), changed
