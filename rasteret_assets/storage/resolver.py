"""DNS resolution that refuses metadata and link-local addresses.

A URL policy that looks only at the host name is bypassed by any DNS name pointing at
169.254.169.254. Checking the addresses a name resolves to, in the resolver aiohttp connects
with, closes that hole: the connection is never opened. Names under the reserved ``.invalid``
TLD fail at once without a query, as RFC 6761 asks of resolver libraries, so a typo'd
placeholder host costs nothing and behaves the same with or without network.
"""

from __future__ import annotations

import socket

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from rasteret_assets.storage.policy import blocked_address

# getaddrinfo's "this name does not exist", as opposed to EAI_AGAIN (a resolver hiccup).
_NO_SUCH_HOST = frozenset(
    code for code in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", None)) if code is not None
)


class ForbiddenAddressError(OSError):
    """A host name resolved to an address the policy never allows.

    An ``OSError`` so that aiohttp wraps it like any resolution failure
    (``ClientConnectorDNSError.os_error``) instead of crashing the connector.
    """

    def __init__(self, host: str, reason: str) -> None:
        super().__init__(f"{host!r} resolves to {reason}")
        self.host = host
        self.reason = reason


class PolicyResolver(AbstractResolver):
    """Wrap another resolver and reject results in blocked address ranges."""

    def __init__(self, inner: AbstractResolver | None = None) -> None:
        # DefaultResolver binds the running loop, so this must be built inside it.
        self._inner = inner if inner is not None else DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """Resolve ``host``; raise if any address it maps to is blocked."""
        name = host.rstrip(".").lower()
        if name == "invalid" or name.endswith(".invalid"):
            raise socket.gaierror(socket.EAI_NONAME, f"{host} is in the reserved .invalid TLD")
        results = await self._inner.resolve(host, port, family)
        for result in results:
            reason = blocked_address(result["host"])
            if reason is not None:
                raise ForbiddenAddressError(host, reason)
        return results

    async def close(self) -> None:
        """Release the wrapped resolver."""
        await self._inner.close()


def classify_resolution_failure(host: str, error: BaseException | None) -> tuple[str, str]:
    """``(error class, reason)`` for a host that could not be resolved.

    A refused address is ``forbidden_url``; a name that does not exist is ``not_found``
    (permanent: asking again gives the same answer); anything else, such as a resolver
    timeout, is a transient ``server_error``.
    """
    if isinstance(error, ForbiddenAddressError):
        return "forbidden_url", str(error)
    if isinstance(error, socket.gaierror) and error.errno in _NO_SUCH_HOST:
        return "not_found", f"host {host!r} does not resolve ({error.strerror})"
    return "server_error", f"cannot resolve host {host!r}: {error}"
