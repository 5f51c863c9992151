"""SAS tokens from Planetary Computer's token endpoint, cached per container.

``GET {sas_url}/{account}/{container}`` answers ``{"msft:expiry": <RFC 3339>, "token":
<query string>}``: read access to one container for a while (about an hour on PC). A run
reads thousands of blobs from a few containers, so each container's token is fetched once,
shared by every concurrent read (one request even when hundreds start together), and renewed
ahead of its expiry so that no request leaves with a token about to run out.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import aiohttp

from rasteret_assets.storage.azure_blob import BlobContainer
from rasteret_assets.storage.errors import StorageError
from rasteret_assets.storage.http import raise_for_status, translate_client_error

logger = logging.getLogger(__name__)

DEFAULT_SAS_URL = "https://planetarycomputer.microsoft.com/api/sas/v1/token"
EXPIRY_KEY = "msft:expiry"
SUBSCRIPTION_KEY_HEADER = "Ocp-Apim-Subscription-Key"
#: Seconds after a refused token was dropped before another refusal may drop its successor.
FORCED_RENEWAL_INTERVAL = 10.0


@dataclass(frozen=True, slots=True)
class SasToken:
    """A container's token, its expiry and when to stop using it (``renew_at``)."""

    token: str
    expiry: datetime
    renew_at: datetime

    def usable(self, now: datetime | None = None) -> bool:
        return (now or datetime.now(UTC)) < self.renew_at


class SasTokenCache:
    """Tokens per container, fetched from ``sas_url`` on first use and before they expire.

    ``renew_before`` seconds before expiry a token is replaced (at most half its lifetime,
    so a short-lived token is not refetched for every request). The HTTP session is bound to
    the running loop and reopened when used from another one, as in ``HttpBackend``.
    """

    def __init__(
        self,
        sas_url: str = DEFAULT_SAS_URL,
        *,
        subscription_key: str | None = None,
        renew_before: float = 300.0,
        connect_timeout: float = 10.0,
        read_timeout: float = 30.0,
    ) -> None:
        if renew_before < 0:
            raise ValueError("renew_before must be >= 0")
        self.sas_url = sas_url.rstrip("/")
        self._subscription_key = subscription_key
        self._renew_before = timedelta(seconds=renew_before)
        self._timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=connect_timeout, sock_read=read_timeout
        )
        self._tokens: dict[BlobContainer, SasToken] = {}
        self._pending: dict[BlobContainer, asyncio.Future[SasToken]] = {}
        self._forced: dict[BlobContainer, float] = {}
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def endpoint(self, container: BlobContainer) -> str:
        """The token URL of ``container`` (no secret in it: the key goes in a header)."""
        return f"{self.sas_url}/{container.account}/{container.container}"

    async def token(self, container: BlobContainer) -> SasToken:
        """A usable token for ``container``.

        Raises ``StorageError`` naming the token URL, classified like a storage failure.
        """
        cached = self._tokens.get(container)
        if cached is not None and cached.usable():
            return cached
        self._bind_loop()
        pending = self._pending.get(container)
        if pending is None:
            pending = asyncio.ensure_future(self._fetch(container))
            self._pending[container] = pending
            pending.add_done_callback(lambda done: self._settle(container, done))
        # Shielded: one caller giving up must not cancel the fetch the others wait for.
        return await asyncio.shield(pending)

    def forget(self, container: BlobContainer, token: str) -> bool:
        """The server refused ``token``: drop it; ``True`` if a fresh token may be accepted.

        At most one refusal per container and ``FORCED_RENEWAL_INTERVAL`` drops a token: when
        its successor is refused too, the refusals are about the blobs, not the token, and
        renewing for each of thousands of refused blobs would flood the endpoint.
        """
        cached = self._tokens.get(container)
        if cached is None or cached.token != token:
            return True  # already dropped or replaced: signing again uses the newer one
        now = time.monotonic()
        last = self._forced.get(container)
        if last is not None and now - last < FORCED_RENEWAL_INTERVAL:
            return False
        self._forced[container] = now
        del self._tokens[container]
        return True

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None and not session.closed and self._loop is asyncio.get_running_loop():
            await session.close()

    def _bind_loop(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            # Futures and the session belong to the old loop; tokens are plain data and stay.
            self._pending.clear()
            self._session = None
            self._loop = loop

    def _settle(self, container: BlobContainer, done: asyncio.Future[SasToken]) -> None:
        if self._pending.get(container) is done:
            del self._pending[container]
        if not done.cancelled():
            done.exception()  # retrieved here, so a fetch nobody awaits any more stays quiet

    async def _fetch(self, container: BlobContainer) -> SasToken:
        url = self.endpoint(container)
        if self._session is None or self._session.closed:
            # trust_env: proxies and netrc apply; at one request per container per renewal
            # its per-request cost does not matter.
            self._session = aiohttp.ClientSession(timeout=self._timeout, trust_env=True)
        key = self._subscription_key
        headers = {SUBSCRIPTION_KEY_HEADER: key} if key else {}
        try:
            async with self._session.get(url, headers=headers) as resp:
                if resp.status == 404:
                    # No token for this account/container: it is not a PC dataset. The blob
                    # may well exist, so "not_found" would mislead.
                    raise StorageError("forbidden", url, "HTTP 404: no token for it", status=404)
                raise_for_status(resp.status, resp.headers, url)
                body = await resp.json(content_type=None)
        except StorageError:
            raise
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise translate_client_error(exc, url) from None
        except ValueError as exc:
            raise StorageError("server_error", url, f"answer is not JSON: {exc}") from None
        token = self._parse(url, body)
        self._tokens[container] = token
        logger.debug("SAS token for %s valid until %s", container, token.expiry.isoformat())
        return token

    def _parse(self, url: str, body: object) -> SasToken:
        if not isinstance(body, dict) or not isinstance(body.get("token"), str):
            raise StorageError("server_error", url, "answer has no 'token'")
        try:
            expiry = datetime.fromisoformat(str(body[EXPIRY_KEY]))
        except (KeyError, ValueError):
            raise StorageError("server_error", url, f"answer has no valid {EXPIRY_KEY!r}") from None
        if expiry.tzinfo is None:
            expiry = expiry.replace(tzinfo=UTC)
        lifetime = expiry - datetime.now(UTC)
        if lifetime <= timedelta(0):
            raise StorageError(
                "server_error",
                url,
                f"token expired at {expiry.isoformat()} on arrival (is the clock right?)",
            )
        margin = min(self._renew_before, lifetime / 2)
        return SasToken(body["token"].lstrip("?"), expiry, expiry - margin)
