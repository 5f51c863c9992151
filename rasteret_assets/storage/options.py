"""One settings object for every backend.

A collection can mix local, HTTP and S3 URLs; users should describe credentials and limits
once and let the router hand each backend the part it needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rasteret_assets.storage.policy import UrlPolicy

#: Signs Azure blob hrefs with Planetary Computer SAS tokens at read time.
PLANETARY_COMPUTER = "planetary-computer"
URL_SIGNERS = frozenset({PLANETARY_COMPUTER})


@dataclass(frozen=True)
class StorageOptions:
    """Credentials, network limits and the URL policy shared by all backends.

    ``anon=None`` lets S3 use the default AWS credential chain; ``True`` sends unsigned
    requests (public buckets); ``False`` requires credentials. ``secret``, ``token`` and
    ``pc_subscription_key`` are excluded from ``repr`` so the options can be logged.
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
    # URL signing (HTTP(S) only; the signed URL is used for the request and never stored)
    #: ``"planetary-computer"``: Azure blob hrefs get a Planetary Computer SAS token.
    url_signer: str | None = None
    #: PC's token endpoint; ``None``: ``PC_SDK_SAS_URL``, else PC's public endpoint.
    pc_sas_url: str | None = None
    #: PC API subscription key (higher rate limits); ``None``: ``PC_SDK_SUBSCRIPTION_KEY``.
    pc_subscription_key: str | None = field(default=None, repr=False)
    #: Seconds before its expiry a SAS token is replaced (at most half its lifetime).
    sas_renew_before: float = 300.0
    #: Path-style blob endpoints (``{endpoint}/{account}/{container}/{blob}``, e.g. Azurite).
    azure_blob_endpoints: tuple[str, ...] = ()
    #: Where URLs may point, checked before every request and on every redirect hop.
    url_policy: UrlPolicy = field(default_factory=UrlPolicy)

    def __post_init__(self) -> None:
        if self.max_connections < 1 or self.max_connections_per_host < 0:
            raise ValueError("max_connections must be >= 1 and max_connections_per_host >= 0")
        if self.connect_timeout <= 0 or self.read_timeout <= 0:
            raise ValueError("timeouts must be positive")
        if self.max_redirects < 0:
            raise ValueError("max_redirects must be >= 0")
        if self.url_signer is not None and self.url_signer not in URL_SIGNERS:
            raise ValueError(
                f"unknown url_signer {self.url_signer!r}; choose from {sorted(URL_SIGNERS)}"
            )
        if self.sas_renew_before < 0:
            raise ValueError("sas_renew_before must be >= 0")
        endpoints = self.azure_blob_endpoints
        object.__setattr__(
            self,
            "azure_blob_endpoints",
            (endpoints,) if isinstance(endpoints, str) else tuple(endpoints),
        )
