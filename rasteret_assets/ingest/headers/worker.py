"""One header worker process: its own event loop, connection pool and engine.

The parent (:mod:`.pool`) sends chunks of numbered URLs down ``tasks`` and reads header
rows back from ``results`` as Arrow tables, each with the numbers of the URLs it answers,
so the parent always knows which URLs a worker still holds. Rows are sent when a batch is
full or has waited :data:`FLUSH_SECONDS`, so a run's tail is not held back by a half batch.

Messages, parent to worker: ``("urls", ([number, ...], [href, ...]))`` and ``("end", None)``.
Worker to parent: ``("rows", numbers)`` followed by the rows as one serialized Arrow record
batch of :data:`~rasteret_assets.contract.COG_HEADERS_SCHEMA` (raw bytes: pickling a table
cost 0.3-0.6 ms per message, the Arrow IPC message 0.02 ms), ``("done", cpu_seconds)`` (what
the worker used, so a run's CPU can be summed over its processes) and ``("failed", text)`` for
a bug (never for a bad asset: that is a row).
"""

from __future__ import annotations

import asyncio
import resource
import threading
import traceback
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection

from rasteret_assets.ingest.headers.collector import collector_tuned
from rasteret_assets.ingest.headers.engine import HeaderOutcome, fetch_headers
from rasteret_assets.ingest.headers.rows import outcomes_batch
from rasteret_assets.storage import RetryPolicy, StorageOptions, StorageRouter

#: Longest a finished outcome waits in a half-full batch before it is sent.
FLUSH_SECONDS = 0.2
#: How long a worker with no URL left to start gathers rows before sending them: the parent
#: refills only what it knows is answered, but a message per row (the run's tail, 0 ms
#: latency) cost more than the headers in it.
STARVING_FLUSH_SECONDS = 0.005


@dataclass(frozen=True)
class WorkerConfig:
    """What a worker needs to read headers like the parent would (all of it picklable)."""

    options: StorageOptions
    retry: RetryPolicy
    max_concurrent: int
    batch_size: int
    engine: dict[str, int]


class UrlFeed:
    """URLs arriving from the parent, awaited by all of the engine's tasks at once."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[str | None] = asyncio.Queue()

    def add(self, urls: list[str]) -> None:
        for url in urls:
            self._queue.put_nowait(url)

    def close(self) -> None:
        self._queue.put_nowait(None)

    def empty(self) -> bool:
        """No URL waiting to be started."""
        return self._queue.empty()

    def __aiter__(self) -> UrlFeed:
        return self

    async def __anext__(self) -> str:
        url = await self._queue.get()
        if url is None:
            self._queue.put_nowait(None)  # every waiting task must see the end
            raise StopAsyncIteration
        return url


def _receive(tasks: Connection, on_message: Callable[[str, object], None]) -> None:
    """Reader thread: pass each parent message to the loop; a closed pipe ends the feed."""
    while True:
        try:
            kind, payload = tasks.recv()
        except (EOFError, OSError):
            on_message("end", None)
            return
        on_message(kind, payload)
        if kind == "end":
            return


class _Batcher:
    """Outcomes to ``("rows", numbers)`` + record batch messages, sent from the loop's thread.

    Handing each send to a thread cost 0.1-0.3 ms of CPU per header in GIL switches (A/B at
    2,000 URLs, c=256). A parent that stops reading blocks the send and so pauses the
    worker: the back-pressure that keeps memory flat.
    """

    def __init__(self, results: Connection, batch_size: int) -> None:
        self.results = results
        self.batch_size = batch_size
        self.outcomes: list[HeaderOutcome] = []
        self.numbers: list[int] = []
        self._soon: asyncio.TimerHandle | None = None

    def add(self, outcome: HeaderOutcome, number: int, *, starving: bool) -> None:
        """Queue one row; send the batch when full, or soon when the worker has no URL left
        to start (``starving``), so the parent learns what is answered and refills."""
        self.outcomes.append(outcome)
        self.numbers.append(number)
        if len(self.outcomes) >= self.batch_size:
            self.flush()
        elif starving and self._soon is None:
            loop = asyncio.get_running_loop()
            self._soon = loop.call_later(STARVING_FLUSH_SECONDS, self.flush)

    def flush(self) -> None:
        if self._soon is not None:
            self._soon.cancel()
            self._soon = None
        if not self.outcomes:
            return
        outcomes, numbers = self.outcomes, self.numbers
        self.outcomes, self.numbers = [], []
        self.results.send(("rows", numbers))
        self.results.send_bytes(outcomes_batch(outcomes).serialize())


async def _serve(tasks: Connection, results: Connection, config: WorkerConfig) -> None:
    loop = asyncio.get_running_loop()
    feed = UrlFeed()
    numbers: defaultdict[str, list[int]] = defaultdict(list)

    def on_message(kind: str, payload: object) -> None:
        if kind == "urls":
            given, urls = payload  # type: ignore[misc]
            for number, url in zip(given, urls, strict=True):
                numbers[url].append(number)
            feed.add(urls)
        else:
            feed.close()

    reader = threading.Thread(
        target=_receive,
        args=(tasks, lambda k, p: loop.call_soon_threadsafe(on_message, k, p)),
        daemon=True,
    )
    reader.start()
    batcher = _Batcher(results, config.batch_size)

    async def tick() -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            batcher.flush()

    ticker = asyncio.create_task(tick())
    backend = StorageRouter(config.options)
    try:
        stream = fetch_headers(
            feed,
            backend,
            max_concurrent=config.max_concurrent,
            retry=config.retry,
            **config.engine,
        )
        async for outcome in stream:
            waiting = numbers[outcome.url]
            number = waiting.pop()
            if not waiting:
                del numbers[outcome.url]
            batcher.add(outcome, number, starving=feed.empty())
    finally:
        ticker.cancel()
        await backend.close()
    batcher.flush()


def run_worker(tasks: Connection, results: Connection, config: WorkerConfig) -> None:
    """Process entry point: read headers until the parent says ``end``, then say ``done``."""
    try:
        with collector_tuned():
            asyncio.run(_serve(tasks, results, config))
    except BaseException:
        results.send(("failed", traceback.format_exc()))
        raise
    usage = resource.getrusage(resource.RUSAGE_SELF)
    results.send(("done", usage.ru_utime + usage.ru_stime))
