"""The concurrent header engine: URLs in, one :class:`HeaderOutcome` per URL out, streaming.

A fixed pool of workers pulls URLs from a shared iterator, so at most ``max_concurrent`` URLs
are in flight and there is no batch barrier: a slow URL holds one worker, not a whole batch.
Each URL costs one speculative first read plus, only when the parser asks for more, one merged
follow-up read per round. Failures become outcomes with an error class; nothing is raised for
a bad asset. ``RetryPolicy.url_deadline`` bounds each URL's total time (attempts, back-off and
rounds together), so a trickling server costs one worker a bounded time, ending as ``timeout``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from dataclasses import dataclass

from rasteret_assets.ingest.headers.read_size import LearnedFirstReads
from rasteret_assets.storage import RetryPolicy, StorageBackend, StorageError, redact_url
from rasteret_assets.storage.base import read_range_with_info
from rasteret_assets.tiff import TiffError, TiffHeader
from rasteret_assets.tiff.driver import (
    DEFAULT_FIRST_READ,
    DEFAULT_MAX_HEADER_BYTES,
    DEFAULT_MIN_READ,
    MAX_ROUNDS,
    HeaderReadDriver,
)

__all__ = [
    "DEFAULT_FIRST_READ",
    "DEFAULT_MAX_CONCURRENT",
    "DEFAULT_MAX_HEADER_BYTES",
    "DEFAULT_MIN_READ",
    "MAX_ROUNDS",
    "HeaderOutcome",
    "ProgressLog",
    "fetch_header",
    "fetch_headers",
]

logger = logging.getLogger(__name__)

#: URLs in flight at once, everywhere (library functions, builders, the Dagster resource):
#: the reference's default. Each URL in flight gets its own pooled connection.
DEFAULT_MAX_CONCURRENT = 300


@dataclass(frozen=True, slots=True)
class HeaderOutcome:
    """What happened to one URL: its parsed header, or why there is none."""

    url: str
    status: str
    error: str | None
    attempts: int
    requests: int
    bytes_read: int
    elapsed: float
    etag: str | None = None
    size: int | None = None
    header: TiffHeader | None = None
    #: How far into the file the parsed header reached (what a first read had to cover).
    header_extent: int | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass
class _Tally:
    attempts: int = 0
    requests: int = 0
    bytes_read: int = 0


async def fetch_header(
    url: str,
    backend: StorageBackend,
    *,
    retry: RetryPolicy,
    first_read: int = DEFAULT_FIRST_READ,
    min_read: int = DEFAULT_MIN_READ,
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
) -> HeaderOutcome:
    """Read and parse one URL's header; every failure ends as an outcome, never an exception.

    A header that would need more than ``max_header_bytes`` ends as ``unsupported`` before
    the oversized read is sent.
    """
    started = time.perf_counter()
    loop = asyncio.get_running_loop()
    deadline = None if retry.url_deadline is None else loop.time() + retry.url_deadline
    # Built before the try: a bad first_read/max_header_bytes is a caller bug, not an outcome.
    driver = HeaderReadDriver(
        first_read=first_read, min_read=min_read, max_header_bytes=max_header_bytes
    )
    tally = _Tally()
    etag = size = None
    try:
        ((start, length),) = driver.next_reads()
        first, tries = await retry.call(
            lambda: read_range_with_info(backend, url, start, length), url=url, deadline=deadline
        )
        tally.attempts += tries
        tally.requests += tries
        tally.bytes_read += len(first.data)
        etag, size = first.info.etag, first.info.size
        header = driver.feed([(start, length)], [first.data], file_size=size)
        if header is None:  # the first read did not hold the whole header
            header = await _complete(url, backend, driver, retry, tally, deadline)
    except (StorageError, TiffError) as error:
        # A storage failure cost the tries of the call that gave up; a parse failure none.
        failed_tries = (error.attempts or 1) if isinstance(error, StorageError) else 0
        return HeaderOutcome(
            url=url,
            status=error.error_class,
            error=_message(error, url),
            attempts=tally.attempts + failed_tries,
            requests=tally.requests + failed_tries,
            bytes_read=tally.bytes_read,
            elapsed=time.perf_counter() - started,
            etag=etag,
            size=size,
        )
    return HeaderOutcome(
        url=url,
        status="ok",
        error=None,
        attempts=tally.attempts,
        requests=tally.requests,
        bytes_read=tally.bytes_read,
        elapsed=time.perf_counter() - started,
        etag=etag,
        size=size,
        header=header,
        header_extent=driver.buffer.extent,
    )


async def _complete(
    url: str,
    backend: StorageBackend,
    driver: HeaderReadDriver,
    retry: RetryPolicy,
    tally: _Tally,
    deadline: float | None,
) -> TiffHeader:
    """Send the follow-up reads the driver asks for until it has a header.

    The driver decides everything about them (planning, round limit, byte budget); this only
    does the I/O and counts attempts, requests and bytes.
    """
    while reads := driver.next_reads():
        chunks, tries = await retry.call(
            lambda r=reads: backend.get_ranges(url, r), url=url, deadline=deadline
        )
        tally.attempts += tries
        tally.requests += tries * len(reads)
        tally.bytes_read += sum(len(data) for data in chunks)
        driver.feed(reads, chunks)
    assert driver.header is not None
    return driver.header


def _message(error: Exception, url: str) -> str:
    """Error text that names the URL without its query string (signed URLs stay secret)."""
    text = str(error)
    safe = redact_url(url)
    return text if safe in text else f"{safe}: {text}"


class ProgressLog:
    """Logs done/total, rate and errors so far at a steady cadence (Dagster shows these)."""

    def __init__(self, total: int, *, every_seconds: float = 5.0, label: str = "headers"):
        self.total = total
        self.every = every_seconds
        self.label = label
        self.done = 0
        self.errors: Counter[str] = Counter()
        self.started = time.monotonic()
        self._last = self.started

    def record(self, outcome: HeaderOutcome) -> None:
        self.record_many(1, {} if outcome.ok else {outcome.status: 1})

    def record_many(self, done: int, errors: dict[str, int]) -> None:
        """Count ``done`` URLs at once (a batch of rows from a worker process)."""
        self.done += done
        self.errors.update(errors)
        now = time.monotonic()
        if now - self._last >= self.every or self.done == self.total:
            self._last = now
            self.log(now)

    def log(self, now: float | None = None) -> None:
        elapsed = max((now or time.monotonic()) - self.started, 1e-9)
        errors = ", ".join(f"{k}={v}" for k, v in sorted(self.errors.items())) or "none"
        logger.info(
            "%s: %d/%d done (%.0f/s), errors: %s",
            self.label,
            self.done,
            self.total,
            self.done / elapsed,
            errors,
        )


class _SyncFeed:
    """A plain iterable shared by the pool's tasks as an async iterator (never awaits)."""

    def __init__(self, urls: Iterable[str]) -> None:
        self._urls: Iterator[str] = iter(urls)

    def __aiter__(self) -> _SyncFeed:
        return self

    async def __anext__(self) -> str:
        try:
            return next(self._urls)
        except StopIteration:
            raise StopAsyncIteration from None


async def fetch_headers(
    urls: Iterable[str] | AsyncIterable[str],
    backend: StorageBackend,
    *,
    max_concurrent: int = DEFAULT_MAX_CONCURRENT,
    retry: RetryPolicy | None = None,
    first_read: int | None = None,
    min_read: int = DEFAULT_MIN_READ,
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
    progress: ProgressLog | None = None,
) -> AsyncIterator[HeaderOutcome]:
    """Yield one outcome per URL, in completion order, with at most ``max_concurrent`` in flight.

    ``urls`` may be an async iterable that several tasks can await at once (a worker
    process's feed, which receives URLs while the run goes on). ``first_read=None`` learns
    each host's first read size from the headers read so far (:mod:`.read_size`); a number
    fixes it.
    """
    if max_concurrent < 1:
        raise ValueError(f"max_concurrent must be >= 1, got {max_concurrent}")
    policy = retry or RetryPolicy()
    pending = urls if isinstance(urls, AsyncIterable) else _SyncFeed(urls)
    results: asyncio.Queue[HeaderOutcome | None] = asyncio.Queue(maxsize=max_concurrent * 2)

    failures: list[BaseException] = []
    learned = None if first_read is not None else LearnedFirstReads(ceiling=max_header_bytes)

    async def worker() -> None:
        try:
            async for url in pending:
                outcome = await fetch_header(
                    url,
                    backend,
                    retry=policy,
                    first_read=first_read if learned is None else learned.size_for(url),
                    min_read=min_read,
                    max_header_bytes=max_header_bytes,
                )
                if learned is not None and outcome.header_extent:
                    learned.record(url, outcome.header_extent)
                await results.put(outcome)
        except Exception as error:  # a bug, not a bad asset: surface it after the pool stops
            failures.append(error)
        await results.put(None)

    workers = [asyncio.create_task(worker()) for _ in range(max_concurrent)]
    running = len(workers)
    try:
        while running:
            outcome = await results.get()
            if outcome is None:
                running -= 1
                continue
            if progress is not None:
                progress.record(outcome)
            yield outcome
    finally:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
    if failures:
        raise failures[0]
