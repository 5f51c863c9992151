"""Resources: where bytes come from (storage), how hard to pull (concurrency), where Parquet
lands (workspace). Every field can come from the launchpad or an ``EnvVar``; secrets are
never echoed into metadata or logs.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow.parquet as pq
from pydantic import Field

from rasteret_assets.collection.store import Store, resolve_filesystem
from rasteret_assets.ingest.headers.engine import DEFAULT_MAX_CONCURRENT
from rasteret_assets.sources import DEMO_CATALOG
from rasteret_assets.storage import RetryPolicy, StorageOptions
from rasteret_assets.storage.policy import ALL_SCHEMES, UrlPolicy

#: The demo source's COGs ship inside the package; reading them is always allowed.
DEMO_ROOT = DEMO_CATALOG.parent


class StorageResource(dg.ConfigurableResource):
    """Options for every asset URL the engine reads (HTTP, S3, local).

    The URL policy defaults suit a shared platform: any HTTP(S) host or S3 bucket, but local
    files only under ``allowed_local_roots`` (plus the package's demo catalog), and never
    link-local or cloud-metadata addresses. A refused URL is a ``forbidden_url`` row in
    ``cog_headers``. Sources cannot loosen the policy through their ``storage_options``: it
    belongs to whoever configures the deployment's resources.
    """

    anon: bool | None = Field(default=None, description="S3: unsigned requests (public data)")
    key: str | None = Field(default=None, description="S3 access key id")
    secret: str | None = Field(default=None, description="S3 secret key (use an EnvVar)")
    token: str | None = Field(default=None, description="S3 session token (use an EnvVar)")
    requester_pays: bool = False
    region: str | None = None
    endpoint_url: str | None = Field(default=None, description="S3-compatible endpoint")
    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    pc_sas_url: str | None = Field(
        default=None,
        description="Planetary Computer SAS token endpoint (default: PC_SDK_SAS_URL, else PC's)",
    )
    pc_subscription_key: str | None = Field(
        default=None,
        description="Planetary Computer API key for SAS tokens (use an EnvVar; default: "
        "PC_SDK_SUBSCRIPTION_KEY)",
    )
    allowed_schemes: list[str] = Field(
        default_factory=lambda: sorted(ALL_SCHEMES),
        description="URL schemes assets may use: http, https, s3, s3a, file (plain paths)",
    )
    allowed_hosts: list[str] = Field(
        default_factory=lambda: ["*"],
        description="Patterns for HTTP hosts and S3 buckets, e.g. '*.amazonaws.com'",
    )
    allowed_local_roots: list[str] = Field(
        default_factory=list,
        description="Directories local asset files may lie under (the demo is always allowed)",
    )

    def url_policy(self) -> UrlPolicy:
        """The policy every asset URL is checked against, after rewriting and per redirect."""
        return UrlPolicy(
            allowed_schemes=frozenset(self.allowed_schemes),
            allowed_hosts=tuple(self.allowed_hosts),
            allowed_local_roots=(DEMO_ROOT, *map(Path, self.allowed_local_roots)),
        )

    def options(
        self, max_connections: int, per_host: int, overrides: Mapping[str, Any] | None = None
    ) -> StorageOptions:
        """``StorageOptions`` for one source: resource settings, then the source's own.

        URL rewrites are not storage settings: a source's rewrites were applied once, when
        its records were made, so the stored href is the URL read here.
        """
        settings: dict[str, Any] = {
            "anon": self.anon,
            "key": self.key,
            "secret": self.secret,
            "token": self.token,
            "requester_pays": self.requester_pays,
            "region": self.region,
            "endpoint_url": self.endpoint_url,
            "connect_timeout": self.connect_timeout,
            "read_timeout": self.read_timeout,
            "pc_sas_url": self.pc_sas_url,
            "pc_subscription_key": self.pc_subscription_key,
            "max_connections": max_connections,
            "max_connections_per_host": per_host,
        }
        source = dict(overrides or {})
        if "url_policy" in source:
            raise ValueError(
                "a source's storage_options cannot set url_policy: the storage resource's "
                "allowed_schemes/allowed_hosts/allowed_local_roots apply to every source"
            )
        settings.update(source)
        return StorageOptions(**settings, url_policy=self.url_policy())


class ConcurrencyResource(dg.ConfigurableResource):
    """Request limits, worker processes and the retry policy of header reads."""

    max_concurrent: int = Field(
        default=DEFAULT_MAX_CONCURRENT,
        ge=1,
        description=(
            "URLs in flight per run, shared by its worker processes; the connection pools "
            "hold as many connections"
        ),
    )
    workers: int | None = Field(
        default=None,
        ge=1,
        description=(
            "Processes reading one run's headers (default: the CPUs the run may use); "
            "small runs stay in one process"
        ),
    )
    max_per_host: int | None = Field(
        default=None, ge=1, description="Open connections per host (default: max_concurrent)"
    )
    max_attempts: int = 5
    base_delay: float = 0.2
    max_delay: float = 10.0
    url_deadline: float = Field(
        default=120.0,
        gt=0,
        description="Seconds one URL may take in total (attempts, back-off, reads); then timeout",
    )

    def connections_per_host(self) -> int:
        return self.max_per_host or self.max_concurrent

    def retry(self) -> RetryPolicy:
        return RetryPolicy(
            max_attempts=self.max_attempts,
            base_delay=self.base_delay,
            max_delay=self.max_delay,
            url_deadline=self.url_deadline,
        )


class WorkspaceResource(dg.ConfigurableResource):
    """Where every asset's Parquet lands: a local directory or ``s3://bucket/prefix``.

    With an ``s3://`` root nothing is kept on local disk, so any run launcher or executor
    (several machines) works.
    """

    root: str = Field(default="rasteret_workspace", description="Directory or s3:// prefix")
    storage_options: dict[str, Any] = Field(
        default_factory=dict, description="fsspec options for an object-store root"
    )

    def uri(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *parts])

    def store(self, *parts: str) -> Store:
        fs, root = resolve_filesystem(self.uri(*parts), storage_options=self.storage_options)
        return Store(fs, root)

    def open_parquet(self, *parts: str) -> pq.ParquetFile | None:
        """The Parquet file at ``parts`` for streamed reads (``None`` when it does not exist)."""
        store = self.store(*parts[:-1])
        path = store.path(parts[-1])
        store.fs.invalidate_cache(store.root)
        if not store.fs.exists(path):
            return None
        if store.local:
            return pq.ParquetFile(path)
        return pq.ParquetFile(store.fs.open(path, "rb"))

    def remove(self, *parts: str) -> bool:
        """Delete a directory/prefix (a month that no longer has data); True if it existed."""
        store = self.store(*parts)
        store.fs.invalidate_cache(store.root)
        if not store.fs.exists(store.root):
            return False
        store.fs.rm(store.root, recursive=True)
        return True


WORKSPACE_ENV = "RASTERET_ASSETS_WORKSPACE"
LOCAL_ROOTS_ENV = "RASTERET_ASSETS_LOCAL_ROOTS"


def default_resources() -> dict[str, dg.ConfigurableResource]:
    """The resources every source's assets use, configured from the environment.

    One object per key for the same environment: each source component brings these, and
    Dagster merges components' definitions only when their resources are the same objects.
    """
    roots = tuple(p for p in os.environ.get(LOCAL_ROOTS_ENV, "").split(os.pathsep) if p)
    root = os.environ.get(WORKSPACE_ENV) or "rasteret_workspace"
    if "://" not in root:  # metadata and logs show where files are, wherever they are read
        root = str(Path(root).absolute())
    return dict(_resources(root, roots))


@functools.cache
def _resources(root: str, local_roots: tuple[str, ...]) -> dict[str, dg.ConfigurableResource]:
    return {
        "workspace": WorkspaceResource(root=root),
        "storage": StorageResource(allowed_local_roots=list(local_roots)),
        "concurrency": ConcurrencyResource(),
    }
