"""Storage failures, each tagged with one of DESIGN.md's error classes.

The enrichment engine records ``error_class`` per URL and the retry policy decides from
``transient`` alone, so every backend must translate its library's exceptions (aiohttp,
botocore, ``OSError``) into :class:`StorageError` instead of letting them escape.
"""

from __future__ import annotations

from typing import Any

from rasteret_assets.storage.redact import redact_url, scrub_text

#: The vocabulary shared with ``rasteret_assets.tiff`` and the ``cog_headers`` table.
#: ``forbidden_url`` is our own refusal (:mod:`rasteret_assets.storage.policy`), made before a
#: request is sent; unlike ``forbidden`` (the server said no) configuration fixes it, not
#: credentials, so it is permanent.
ERROR_CLASSES: frozenset[str] = frozenset(
    {
        "not_found",
        "forbidden",
        "forbidden_url",
        "throttled",
        "server_error",
        "timeout",
        "truncated",
        "not_tiff",
        "not_tiled",
        "unsupported",
        "corrupt",
    }
)

#: Classes worth retrying: the same request may succeed a moment later.
TRANSIENT_CLASSES: frozenset[str] = frozenset({"throttled", "server_error", "timeout", "truncated"})


class StorageError(Exception):
    """A range read, head or connection that failed for a classifiable reason.

    ``url`` is always stored redacted, so the exception can be logged or persisted as-is.
    ``attempts`` is filled in by :class:`~rasteret_assets.storage.retry.RetryPolicy` when it
    gives up, so the engine can record how hard it tried.
    """

    def __init__(
        self,
        error_class: str,
        url: str,
        message: str = "",
        *,
        retry_after: float | None = None,
        status: int | None = None,
    ) -> None:
        if error_class not in ERROR_CLASSES:
            raise ValueError(f"unknown error class {error_class!r}")
        self.error_class = error_class
        self.url = redact_url(url)
        self.detail = scrub_text(message)
        self.retry_after = retry_after
        self.status = status
        self.attempts: int | None = None
        text = f"{error_class}: {self.url}"
        if self.detail:
            text += f": {self.detail}"
        super().__init__(text)

    @property
    def transient(self) -> bool:
        """True when retrying the same request can reasonably succeed."""
        return self.error_class in TRANSIENT_CLASSES

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only state would be lost by the default Exception pickling (Dagster and
        # multiprocessing pickle exceptions across process boundaries).
        state = {"attempts": self.attempts}
        args = (self.error_class, self.url, self.detail)
        return (_rebuild, (type(self), args, self.retry_after, self.status), state)


def _rebuild(
    cls: type[StorageError],
    args: tuple[str, str, str],
    retry_after: float | None,
    status: int | None,
) -> StorageError:
    return cls(*args, retry_after=retry_after, status=status)
