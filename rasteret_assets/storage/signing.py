"""Signing asset URLs at read time.

Planetary Computer's blobs are readable only with a SAS token in the query string. Tokens
expire and are credentials, so hrefs are stored unsigned and signed per request, just before
it is sent: the router asks the signer for the URL to request, while stored hrefs, header
rows, logs and errors keep the unsigned (redacted) URL.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Protocol

from rasteret_assets.storage.azure_blob import blob_container, has_sas_signature
from rasteret_assets.storage.errors import StorageError
from rasteret_assets.storage.options import PLANETARY_COMPUTER, StorageOptions
from rasteret_assets.storage.sas_tokens import DEFAULT_SAS_URL, SasTokenCache


class SigningError(StorageError):
    """An asset URL could not be signed: the token endpoint was down, slow or refused.

    Classified like the token request's own failure, so the retry policy retries a
    transient outage and a refusal ends the URL at once.
    """


class UrlSigner(Protocol):
    """Turns the URL to read into the URL to request."""

    async def sign(self, url: str) -> str:
        """``url`` with credentials added, or unchanged if it needs none."""
        ...

    def refused(self, url: str, signed: str) -> bool:
        """The server refused ``signed``: drop its credential; ``True`` if signing ``url``
        afresh may succeed."""
        ...

    async def close(self) -> None:
        """Release connections (used again, the signer reconnects)."""
        ...


class PlanetaryComputerSigner:
    """Appends the container's Planetary Computer SAS token to Azure blob URLs.

    Other URLs, and blob URLs already carrying a signature, pass unchanged.
    """

    def __init__(self, tokens: SasTokenCache, *, path_style_endpoints: Iterable[str] = ()):
        self.tokens = tokens
        self._endpoints = tuple(path_style_endpoints)

    async def sign(self, url: str) -> str:
        container = blob_container(url, self._endpoints)
        if container is None or has_sas_signature(url):
            return url
        try:
            token = await self.tokens.token(container)
        except StorageError as exc:
            hint = (
                "; a subscription key (PC_SDK_SUBSCRIPTION_KEY) raises the rate limit"
                if exc.error_class == "throttled"
                else ""
            )
            raise SigningError(
                exc.error_class,
                url,
                f"no SAS token for {container} from {exc.url}: {exc.detail}{hint}",
                retry_after=exc.retry_after,
                status=exc.status,
            ) from None
        return f"{url}{'&' if '?' in url else '?'}{token.token}"

    def refused(self, url: str, signed: str) -> bool:
        container = blob_container(url, self._endpoints)
        if container is None or signed == url:
            return False
        return self.tokens.forget(container, signed[len(url) + 1 :])

    async def close(self) -> None:
        await self.tokens.close()


def signer_for(options: StorageOptions) -> UrlSigner | None:
    """The signer ``options.url_signer`` names, or ``None``.

    Unset token settings fall back to the ``planetary-computer`` package's environment
    variables, so a machine configured for that package works unchanged.
    """
    if options.url_signer != PLANETARY_COMPUTER:
        return None
    tokens = SasTokenCache(
        options.pc_sas_url or os.environ.get("PC_SDK_SAS_URL") or DEFAULT_SAS_URL,
        subscription_key=options.pc_subscription_key or os.environ.get("PC_SDK_SUBSCRIPTION_KEY"),
        renew_before=options.sas_renew_before,
        connect_timeout=options.connect_timeout,
        read_timeout=options.read_timeout,
    )
    return PlanetaryComputerSigner(tokens, path_style_endpoints=options.azure_blob_endpoints)
