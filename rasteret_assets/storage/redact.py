"""Make URLs safe to log.

Signed and presigned URLs carry credentials in their query string (``X-Amz-Signature``, SAS
tokens) and sometimes in userinfo (``https://user:pass@host``). Anything that ends up in a log
line, an exception message or a ``cog_headers`` row goes through here first, because those
places are read by people and systems that must not be able to replay the request.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

# A URL-looking token inside free text (exception messages from aiohttp/botocore embed them);
# punctuation right after it ("... http://h:9000: refused") belongs to the sentence.
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>()]+(?<![:;,.])")


def redact_url(url: str) -> str:
    """Return ``url`` without query string, fragment and userinfo.

    Plain paths (no scheme) are returned unchanged: they cannot carry credentials, and a ``?``
    in a file name is part of the name.
    """
    if "://" not in url:
        return url
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        # Unparseable: keep only the scheme so nothing secret can slip through.
        return url.split("://", 1)[0] + "://<unparseable>"
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port is not None else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def scrub_text(text: str) -> str:
    """Redact every URL embedded in free text (e.g. a third-party exception message)."""
    return _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)
