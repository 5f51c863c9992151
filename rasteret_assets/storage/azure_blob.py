"""Which Azure Blob Storage container a URL points into.

SAS tokens are issued per container (storage account + container), so the signer needs that
pair for every href. Azure addresses blobs two ways: virtual-host style,
``https://{account}.blob.core.windows.net/{container}/{blob}`` (what Planetary Computer
publishes), and path style, ``{endpoint}/{account}/{container}/{blob}``, which the Azurite
emulator and custom endpoints use; path style applies only under endpoints named explicitly.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

BLOB_HOST_SUFFIX = ".blob.core.windows.net"


@dataclass(frozen=True, slots=True)
class BlobContainer:
    """One storage account's container: the unit a SAS token grants access to."""

    account: str
    container: str

    def __str__(self) -> str:
        return f"{self.account}/{self.container}"


def blob_container(url: str, path_style_endpoints: Iterable[str] = ()) -> BlobContainer | None:
    """The container ``url`` addresses, or ``None`` if it is no blob URL.

    ``path_style_endpoints`` are base URLs (``http://127.0.0.1:10000``) under which the first
    two path segments are account and container.
    """
    if "://" not in url:
        return None
    for endpoint in path_style_endpoints:
        base = endpoint.rstrip("/") + "/"
        if url.startswith(base):
            return _pair(url[len(base) :].split("?", 1)[0].split("/"))
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("http", "https") or not host.endswith(BLOB_HOST_SUFFIX):
        return None
    account = host[: -len(BLOB_HOST_SUFFIX)]
    if not account or "." in account:
        return None
    return _pair([account, *parts.path.lstrip("/").split("/")])


def _pair(segments: list[str]) -> BlobContainer | None:
    # A blob needs a name after the container; a bare container URL is not an asset.
    if len(segments) < 3 or not segments[0] or not segments[1] or not segments[2]:
        return None
    return BlobContainer(segments[0], segments[1])


def has_sas_signature(url: str) -> bool:
    """Whether ``url`` already carries a SAS signature (``sig``): signing it again would
    send two conflicting tokens."""
    query = urlsplit(url).query
    return any(name.lower() == "sig" for name, _ in parse_qsl(query, keep_blank_values=True))
