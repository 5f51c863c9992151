"""Resources: where bytes come from (storage), how hard to pull (concurrency), where Parquet
lands (workspace). Every field can come from the launchpad or an ``EnvVar``; secrets are
never echoed into metadata or logs.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Mapping
from typing import Any

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import Field

from rasteret_assets.collection.store import STAGED_SUFFIX, Store, resolve_filesystem
from rasteret_assets.storage import RetryPolicy, StorageOptions


class StorageResource(dg.ConfigurableResource):
    """Options for every asset URL the engine reads (HTTP, S3, local)."""

    anon: bool | None = Field(default=None, description="S3: unsigned requests (public data)")
    key: str | None = Field(default=None, description="S3 access key id")
    secret: str | None = Field(default=None, description="S3 secret key (use an EnvVar)")
    token: str | None = Field(default=None, description="S3 session token (use an EnvVar)")
    requester_pays: bool = False
    region: str | None = None
    endpoint_url: str | None = Field(default=None, description="S3-compatible endpoint")
    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    url_rewrite_patterns: dict[str, str] = Field(default_factory=dict)

    def options(
        self, max_connections: int, per_host: int, overrides: Mapping[str, Any] | None = None
    ) -> StorageOptions:
        """``StorageOptions`` for one source: resource settings, then the source's own."""
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
            "max_connections": max_connections,
            "max_connections_per_host": per_host,
        }
        source = dict(overrides or {})
        rewrites = {**self.url_rewrite_patterns, **source.pop("url_rewrite_patterns", {})}
        settings.update(source)
        return StorageOptions(**settings, url_rewrite_patterns=rewrites)


class ConcurrencyResource(dg.ConfigurableResource):
    """Request limits and the retry policy of header reads."""

    max_concurrent: int = Field(default=64, description="URLs in flight per run")
    max_per_host: int = Field(default=64, description="Open connections per host")
    max_attempts: int = 5
    base_delay: float = 0.2
    max_delay: float = 10.0

    def retry(self) -> RetryPolicy:
        return RetryPolicy(
            max_attempts=self.max_attempts, base_delay=self.base_delay, max_delay=self.max_delay
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

    def read_table(self, *parts: str) -> pa.Table | None:
        """The Parquet file at ``parts`` (``None`` when it does not exist)."""
        store = self.store(*parts[:-1])
        path = store.path(parts[-1])
        store.fs.invalidate_cache(store.root)
        if not store.fs.exists(path):
            return None
        with store.fs.open(path, "rb") as handle:
            return pq.read_table(io.BytesIO(handle.read()))

    def write_table(self, table: pa.Table, *parts: str) -> str:
        """Write ``table`` to ``parts`` atomically (stage, then swap); return its URI."""
        store = self.store(*parts[:-1])
        final = store.path(parts[-1])
        staged = store.path(f".{parts[-1]}.{uuid.uuid4().hex}{STAGED_SUFFIX}")
        try:
            with store.open_output(staged) as sink:
                pq.write_table(table, sink, compression="zstd")
            store.swap_in(staged, final)
        except BaseException:
            store.discard(staged)
            raise
        return store.uri(final)

    def remove(self, *parts: str) -> bool:
        """Delete a directory/prefix (a month that no longer has data); True if it existed."""
        store = self.store(*parts)
        store.fs.invalidate_cache(store.root)
        if not store.fs.exists(store.root):
            return False
        store.fs.rm(store.root, recursive=True)
        return True
