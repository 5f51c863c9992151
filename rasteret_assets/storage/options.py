"""One settings object for every backend.

A collection can mix local, HTTP and S3 URLs; users should describe credentials and limits
once and let the router hand each backend the part it needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rasteret_assets.storage.policy import UrlPolicy


@dataclass(frozen=True)
class StorageOptions:
    """Credentials, network limits and the URL policy shared by all backends.

    ``anon=None`` lets S3 use the default AWS credential chain; ``True`` sends unsigned
    requests (public buckets); ``False`` requires credentials. ``secret`` and ``token`` are
    excluded from ``repr`` so the options can be logged.
    """

    # S3
    anon: bool | None = None
    key: str | None = None
    secret: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    requester_pays: bool = False
    region: str | None = None
    endpoint_url: str | None = None
    # Network (HTTP and S3)
    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    max_connections: int = 64
    max_connections_per_host: int = 64
    dns_cache_ttl: int = 300
    keepalive_timeout: float = 30.0
    #: Most bytes read from a server that answers a range request with the full object (200).
    ignored_range_cap: int = 16 * 1024 * 1024
    #: Ranges of one object closer than this many bytes are fetched in one request.
    coalesce_gap: int = 64 * 1024
    #: HTTP redirects followed per request; each hop is checked against ``url_policy``.
    max_redirects: int = 5
    #: Where URLs may point, checked before every request and on every redirect hop.
    url_policy: UrlPolicy = field(default_factory=UrlPolicy)

    def __post_init__(self) -> None:
        if self.max_connections < 1 or self.max_connections_per_host < 0:
            raise ValueError("max_connections must be >= 1 and max_connections_per_host >= 0")
        if self.connect_timeout <= 0 or self.read_timeout <= 0:
            raise ValueError("timeouts must be positive")
        if self.max_redirects < 0:
            raise ValueError("max_redirects must be >= 0")
