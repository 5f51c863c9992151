"""The one retry policy for every backend.

Backends make exactly one attempt per call and classify failures; this module alone decides
whether and when to try again. Keeping the decision in one place is what makes
"permanent errors are tried once, transient ones back off" true for HTTP, S3 and local
alike, and lets the engine record an honest attempt count per URL.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from rasteret_assets.storage.errors import StorageError
from rasteret_assets.storage.redact import redact_url

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential back-off with full jitter that honours ``Retry-After``.

    ``url_deadline`` is the most seconds one URL may take in the header engine, across all
    attempts, back-off waits and read rounds; ``None`` means no limit. Socket timeouts alone
    cannot bound that: a server trickling one byte per second never trips a read timeout.
    The engine turns it into the ``deadline`` of each :meth:`call`.

    ``sleep`` and ``random`` are injectable so tests can run the policy on a fake clock.
    """

    max_attempts: int = 5
    base_delay: float = 0.2
    max_delay: float = 10.0
    jitter: bool = True
    url_deadline: float | None = 120.0
    sleep: Callable[[float], Awaitable[None]] = field(
        default=asyncio.sleep, repr=False, compare=False
    )
    random: Callable[[], float] = field(default=random.random, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        if self.base_delay < 0 or self.max_delay < 0:
            raise ValueError("delays must be >= 0")
        if self.url_deadline is not None and self.url_deadline <= 0:
            raise ValueError("url_deadline must be positive (or None for no limit)")

    def delay(self, attempt: int, error: StorageError) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based).

        A server's ``Retry-After`` wins over our own schedule (it knows its load), but is
        capped by ``max_delay`` so one hostile header cannot stall a whole month's build.
        Full jitter (uniform in ``[0, ceiling]``) spreads retries of many concurrent reads
        that failed together.
        """
        if error.retry_after is not None:
            return min(self.max_delay, max(0.0, error.retry_after))
        ceiling = min(self.max_delay, self.base_delay * 2.0 ** min(attempt - 1, 60))
        return self.random() * ceiling if self.jitter else ceiling

    async def call(
        self, fn: Callable[[], Awaitable[T]], *, url: str, deadline: float | None = None
    ) -> tuple[T, int]:
        """Run ``fn`` until it succeeds or fails for good; return ``(result, attempts)``.

        On final failure the ``StorageError`` is re-raised with ``attempts`` set. Anything
        that is not a ``StorageError`` is a bug, not weather, and propagates immediately.

        ``deadline`` (event-loop time) bounds attempts and waits together: an attempt still
        running at the deadline ends as ``timeout``, and a back-off that would end past it
        is skipped, giving up with the last error instead of sleeping to certain failure.
        """
        loop = asyncio.get_running_loop()
        attempt = 0
        while True:
            attempt += 1
            try:
                result = await _attempt(fn, url, deadline)
            except StorageError as exc:
                if not exc.transient or attempt >= self.max_attempts:
                    exc.attempts = attempt
                    raise
                wait = self.delay(attempt, exc)
                if deadline is not None and loop.time() + wait >= deadline:
                    exc.attempts = attempt
                    raise
                logger.info(
                    "%s reading %s (attempt %d of %d); retrying in %.2fs",
                    exc.error_class,
                    redact_url(url),
                    attempt,
                    self.max_attempts,
                    wait,
                )
                await self.sleep(wait)
            else:
                return result, attempt


async def _attempt(fn: Callable[[], Awaitable[T]], url: str, deadline: float | None) -> T:
    if deadline is None:
        return await fn()
    try:
        async with asyncio.timeout_at(deadline):
            return await fn()
    except TimeoutError:
        # Only the deadline raises a bare TimeoutError here: backends translate their own.
        raise StorageError("timeout", url, "per-URL deadline reached") from None
