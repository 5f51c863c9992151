"""Byte-range I/O for COG header parsing: local files, HTTP(S) and S3 behind one protocol.

Backends make one attempt per call and raise :class:`StorageError` with an error class;
:class:`RetryPolicy` is the single place that retries. URLs are redacted before they reach
logs or messages.
"""

from rasteret_assets.storage.base import (
    ObjectInfo,
    RangeRead,
    StorageBackend,
    read_range_with_info,
)
from rasteret_assets.storage.coalesce import coalesce_ranges
from rasteret_assets.storage.errors import ERROR_CLASSES, TRANSIENT_CLASSES, StorageError
from rasteret_assets.storage.http import HttpBackend
from rasteret_assets.storage.local import LocalBackend
from rasteret_assets.storage.options import StorageOptions
from rasteret_assets.storage.redact import redact_url, scrub_text
from rasteret_assets.storage.retry import RetryPolicy
from rasteret_assets.storage.rewrite import rewrite_url
from rasteret_assets.storage.router import StorageRouter, url_kind
from rasteret_assets.storage.s3 import S3Backend
from rasteret_assets.storage.signing import (
    PlanetaryComputerSigner,
    SigningError,
    UrlSigner,
    signer_for,
)

__all__ = [
    "ERROR_CLASSES",
    "TRANSIENT_CLASSES",
    "HttpBackend",
    "LocalBackend",
    "ObjectInfo",
    "PlanetaryComputerSigner",
    "RangeRead",
    "RetryPolicy",
    "S3Backend",
    "SigningError",
    "StorageBackend",
    "StorageError",
    "StorageOptions",
    "StorageRouter",
    "UrlSigner",
    "coalesce_ranges",
    "read_range_with_info",
    "redact_url",
    "rewrite_url",
    "scrub_text",
    "signer_for",
    "url_kind",
]
