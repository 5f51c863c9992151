"""Where an asset URL may point.

The engine reads whatever hrefs a catalog publishes. On a shared platform a careless or hostile
catalog could aim those reads at the cloud metadata service (instance credentials live there),
at other link-local services, or at local files such as ``/etc`` or a mounted secrets
directory. :class:`UrlPolicy` says which schemes, hosts/buckets and local roots are allowed,
and refuses link-local and metadata addresses whatever else it allows, with the permanent
error class ``forbidden_url``.

The router checks a URL after rewriting; the HTTP backend checks it again on every redirect
hop and checks the addresses a host name resolves to (see
:mod:`rasteret_assets.storage.resolver`), so neither a redirect nor a DNS name can reach what
a literal URL may not.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import socket
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

from rasteret_assets.storage.errors import StorageError
from rasteret_assets.storage.local import local_path

#: Host names of cloud instance-metadata services (GCP, AWS, Azure/OpenStack aliases).
METADATA_HOSTNAMES: frozenset[str] = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "instance-data",
        "instance-data.ec2.internal",
    }
)

#: Address blocks that are never read: link-local (where AWS, GCP, Azure, OCI and DigitalOcean
#: serve instance metadata) and metadata addresses outside it.
BLOCKED_NETWORKS: tuple[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str], ...] = (
    (ipaddress.ip_network("169.254.0.0/16"), "a link-local address (cloud metadata)"),
    (ipaddress.ip_network("fe80::/10"), "a link-local address"),
    (ipaddress.ip_network("fd00:ec2::254/128"), "the AWS instance metadata address"),
    (ipaddress.ip_network("100.100.100.200/32"), "the Alibaba Cloud metadata address"),
)

ALL_SCHEMES: frozenset[str] = frozenset({"http", "https", "s3", "s3a", "file"})


def blocked_address(address: str) -> str | None:
    """Why ``address`` (an IP literal) must never be read, or None if it may be.

    IPv4-mapped IPv6 (``::ffff:169.254.169.254``) is judged by its IPv4 address, and the legacy
    numeric forms the C resolver accepts (``2852039166``, ``0xa9fea9fe``, ``169.254.43518``) by
    the address they denote. Anything that is not an IP literal returns None.
    """
    ip = _parse_ip(address)
    if ip is None:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for network, reason in BLOCKED_NETWORKS:
        if ip in network:
            return f"{address} is {reason}"
    return None


@lru_cache(maxsize=4096)
def _parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    candidate = text.strip("[]").split("%", 1)[0]  # IPv6 zone ids: fe80::1%eth0
    try:
        return ipaddress.ip_address(candidate)
    except ValueError:
        pass
    try:
        # inet_aton is what getaddrinfo uses for IPv4 literals, legacy forms included.
        return ipaddress.IPv4Address(socket.inet_aton(candidate))
    except OSError:
        return None


@lru_cache(maxsize=4096)
def refused_host(host: str) -> str | None:
    """Why ``host`` is never contacted (a metadata name or blocked address), or None."""
    host = host.lower().rstrip(".")
    if host in METADATA_HOSTNAMES:
        return f"{host!r} is a cloud metadata host name"
    return blocked_address(host)


def url_origin(url: str) -> str:
    """``scheme://authority`` of a URL (``""`` for a local path): what a URL's verdict depends
    on, and which files are written alike (one bucket, one collection's server)."""
    start = url.find("://")
    if start < 0:
        return ""
    end = url.find("/", start + 3)
    return url if end < 0 else url[:end]


#: Origins whose verdict a policy keeps (a month reads from a handful).
MAX_CACHED_ORIGINS = 4096
_UNKNOWN = object()


@dataclass(frozen=True)
class UrlPolicy:
    """Allowed schemes, hosts/buckets and local roots; metadata addresses are always refused.

    * ``allowed_schemes``: of ``http``, ``https``, ``s3``, ``s3a``, ``file`` (plain paths count
      as ``file``).
    * ``allowed_hosts``: shell-style patterns (``*.example.com``, ``sentinel-cogs``) matched
      case-insensitively against the HTTP host name or the S3 bucket.
    * ``allowed_local_roots``: directories local files must lie under, compared after
      resolving symlinks and ``..``; ``None`` allows any local path.

    The default is the library's: every scheme, host and local path, minus the metadata and
    link-local addresses no legitimate COG lives at. The Dagster ``StorageResource`` builds a
    stricter one (local files only under configured roots).
    """

    allowed_schemes: frozenset[str] = ALL_SCHEMES
    allowed_hosts: tuple[str, ...] = ("*",)
    allowed_local_roots: tuple[Path, ...] | None = None
    _roots: tuple[Path, ...] | None = field(init=False, repr=False, compare=False)
    #: Verdicts by ``scheme://authority``: for a URL with an authority, the verdict depends on
    #: nothing else, and a run asks once per request for URLs of a handful of origins.
    _verdicts: dict[str, str | None] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )

    def __post_init__(self) -> None:
        schemes = frozenset(s.lower() for s in self.allowed_schemes)
        unknown = schemes - ALL_SCHEMES
        if unknown:
            raise ValueError(
                f"unknown URL schemes {sorted(unknown)}; choose from {sorted(ALL_SCHEMES)}"
            )
        object.__setattr__(self, "allowed_schemes", schemes)
        hosts = tuple(p.strip().lower().rstrip(".") for p in self.allowed_hosts if p.strip())
        object.__setattr__(self, "allowed_hosts", hosts)
        roots = self.allowed_local_roots
        if roots is not None:
            roots = tuple(Path(r).expanduser() for r in roots)
            object.__setattr__(self, "allowed_local_roots", roots)
        # Resolved once: the same directory compares equal however it was spelled.
        resolved = None if roots is None else tuple(r.resolve() for r in roots)
        object.__setattr__(self, "_roots", resolved)

    def violation(self, url: str) -> str | None:
        """Why ``url`` may not be read, or None when it may."""
        if url[:5].lower() == "file:":  # a file URL's verdict depends on its path
            return self._url_violation(url)
        origin = url_origin(url)
        if not origin:
            return self._local_violation(url)
        verdict = self._verdicts.get(origin, _UNKNOWN)
        if verdict is _UNKNOWN:
            if len(self._verdicts) >= MAX_CACHED_ORIGINS:
                self._verdicts.clear()
            verdict = self._verdicts[origin] = self._url_violation(origin)
        return verdict  # type: ignore[return-value]

    def _url_violation(self, url: str) -> str | None:
        try:
            parts = urlsplit(url)
            host = (parts.hostname or "").rstrip(".")
        except ValueError:
            return "the URL cannot be parsed"
        scheme = parts.scheme.lower()
        if scheme not in self.allowed_schemes:
            return f"scheme {scheme!r} is not allowed (allowed: {sorted(self.allowed_schemes)})"
        if scheme == "file":
            return self._local_violation(url)
        fixed = refused_host(host) if scheme in ("http", "https") else None  # buckets: any name
        if fixed is not None:
            return fixed
        if not self._host_allowed(host):
            what = "bucket" if scheme.startswith("s3") else "host"
            patterns = list(self.allowed_hosts)
            return f"{what} {host!r} matches none of the allowed patterns {patterns}"
        return None

    def check(self, url: str) -> None:
        """Raise ``StorageError(forbidden_url)`` naming the URL and the reason."""
        reason = self.violation(url)
        if reason is not None:
            raise StorageError("forbidden_url", url, reason)

    def _host_allowed(self, host: str) -> bool:
        if "*" in self.allowed_hosts:
            return True
        return any(fnmatch.fnmatchcase(host, pattern) for pattern in self.allowed_hosts)

    def _local_violation(self, url: str) -> str | None:
        if "file" not in self.allowed_schemes:
            return "local files are not allowed"
        if self._roots is None:
            return None
        path = local_path(url).resolve()
        if any(path.is_relative_to(root) for root in self._roots):
            return None
        roots = ", ".join(str(r) for r in self._roots) or "none configured"
        return f"{path} is outside the allowed local roots ({roots})"
