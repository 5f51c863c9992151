"""A storage backend a user might write: reads one URL prefix from somewhere else.

Rewrites belong to sources (applied once, when records are made), so the storage layer has
none; a caller who keeps unreadable hrefs in a table brings a backend that knows the way.
"""

from __future__ import annotations

from rasteret_assets.storage import StorageBackend, StorageRouter


class PrefixBackend(StorageRouter):
    """A router that reads ``prefix…`` URLs from ``target…``."""

    def __init__(self, prefix: str, target: str) -> None:
        super().__init__()
        self.prefix, self.target = prefix, target

    def resolve(self, url: str) -> tuple[str, StorageBackend]:
        if url.startswith(self.prefix):
            url = self.target + url[len(self.prefix) :]
        return super().resolve(url)
