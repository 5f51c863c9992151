"""Header reading spread over worker processes, one outcome row per URL whatever happens.

One process parses headers on one core, and parsing, not the network, is what limits a run
(see the README's benchmark section). :class:`HeaderPool` starts ``workers`` processes
(:mod:`.worker`), each with its own event loop, connection pool and share of
``max_concurrent``, and hands them numbered URLs a chunk at a time as they finish earlier
ones, so a slow worker gets fewer. Rows come back as Arrow tables and are passed on in
tables of about ``batch_size`` rows, at the pace the caller consumes them: a caller that
stops reading stops the workers too, so memory stays flat.

A worker that dies (OOM kill, segfault, ``kill -9``) loses nothing: the URLs it held
without answering go to another worker, and one replacement process is started per death,
up to ``max_respawns``. A URL held by two workers that died is not tried a third time (it
may be what kills them): it gets a :data:`WORKER_LOST` row, as does every URL still
unanswered when no worker is left.
"""

from __future__ import annotations

import asyncio
import math
import multiprocessing as mp
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess

import pyarrow as pa

from rasteret_assets.contract import COG_HEADERS_SCHEMA
from rasteret_assets.ingest.headers.engine import HeaderOutcome, ProgressLog
from rasteret_assets.ingest.headers.rows import outcomes_table, status_counts
from rasteret_assets.ingest.headers.worker import WorkerConfig, run_worker

#: Status of a URL whose header could not be read because worker processes died holding it.
WORKER_LOST = "worker_lost"
#: The longest a worker has to shut down cleanly after ``end`` before it is killed.
JOIN_SECONDS = 10.0


class HeaderPoolError(RuntimeError):
    """A worker process hit a bug (not a bad asset, which is a row); carries its traceback."""


_spawned = 0


def workers_started() -> bool:
    """Whether this process has started a header worker (so its forkserver is running)."""
    return _spawned > 0


def worker_context() -> mp.context.BaseContext:
    """Forkserver: workers fork from a clean server process that has the engine imported.

    Forking the caller directly would copy its threads' locks (Dagster, aiohttp, test
    servers); spawning re-imports everything for every worker (about a second each). As with
    spawn, each worker still imports the caller's ``__main__`` script (not a ``python -m``
    module's ``__main__``), so a script should keep heavy imports out of its top level.
    """
    context = mp.get_context("forkserver")
    context.set_forkserver_preload(["rasteret_assets.ingest.headers.worker"])
    return context


@dataclass(eq=False)
class _Worker:
    process: BaseProcess
    tasks: Connection
    results: Connection
    held: set[int] = field(default_factory=set)


def split_concurrency(config: WorkerConfig, workers: int) -> WorkerConfig:
    """One worker's share of ``max_concurrent`` and of the connection limits."""
    options = config.options
    per_host = options.max_connections_per_host
    return replace(
        config,
        max_concurrent=math.ceil(config.max_concurrent / workers),
        options=replace(
            options,
            max_connections=math.ceil(options.max_connections / workers),
            max_connections_per_host=math.ceil(per_host / workers) if per_host else 0,
        ),
    )


class HeaderPool:
    """Reads the headers of ``urls`` with ``workers`` processes; :meth:`rows` yields the rows.

    ``config`` is the whole run's (its ``max_concurrent`` and connection limits are split
    between the workers). ``on_spawn`` is called with each process started, for monitoring.
    """

    def __init__(
        self,
        urls: Sequence[str],
        config: WorkerConfig,
        workers: int,
        *,
        batch_size: int = 1000,
        progress: ProgressLog | None = None,
        max_respawns: int | None = None,
        on_spawn: Callable[[BaseProcess], None] | None = None,
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.urls = urls
        self.workers = workers
        self.config = split_concurrency(config, workers)
        self.batch_size = batch_size
        self.progress = progress
        self.respawns_left = workers if max_respawns is None else max_respawns
        self.on_spawn = on_spawn
        # A worker sends rows a batch at a time, so it must hold its URLs in flight, the URLs
        # of the batch it is filling and more, or it runs dry waiting for the parent's refill.
        per_worker = self.config.max_concurrent
        self.config = replace(self.config, batch_size=min(self.config.batch_size, per_worker))
        self.chunk = max(16, per_worker // 2)
        self.high_water = 3 * per_worker + self.chunk
        self.context = worker_context()
        self.live: list[_Worker] = []
        self.deaths = 0
        #: CPU seconds the workers that ended cleanly reported using.
        self.worker_cpu = 0.0
        self._fresh = iter(range(len(urls)))
        self._retry: deque[int] = deque()
        self._lost_once: set[int] = set()
        self._unanswered = len(urls)

    # -- the run -------------------------------------------------------------------------

    def rows(self) -> Iterator[pa.Table]:
        """Header rows of every URL exactly once, in tables of about ``batch_size`` rows."""
        buffered: list[pa.Table] = []
        held_rows = 0
        try:
            for _ in range(min(self.workers, len(self.urls))):
                self._spawn()
            for table in self._answers():
                buffered.append(table)
                held_rows += table.num_rows
                if held_rows >= self.batch_size:
                    yield pa.concat_tables(buffered)
                    buffered, held_rows = [], 0
            if buffered:
                yield pa.concat_tables(buffered)
            self._finish()
        finally:
            self._stop()

    def _answers(self) -> Iterator[pa.Table]:
        while self._unanswered:
            if not self.live:
                yield from self._give_up()
                return
            self._dispatch()
            owners = {}
            for worker in self.live:
                owners[worker.results] = owners[worker.process.sentinel] = worker
            for ready in wait(list(owners)):
                worker = owners[ready]
                if worker not in self.live:
                    continue  # both its pipe and its sentinel were ready
                yield from self._drain(worker, block=ready is worker.results)
                if not worker.process.is_alive() and worker in self.live:
                    yield from self._drain(worker, block=False)
                    yield from self._lose(worker)

    def _drain(self, worker: _Worker, *, block: bool) -> Iterator[pa.Table]:
        """Messages waiting on ``worker``'s pipe; an end of pipe means it died."""
        while block or worker.results.poll():
            block = False
            try:
                kind, *payload = worker.results.recv()
            except (EOFError, OSError):
                yield from self._lose(worker)
                return
            if kind == "rows":
                try:
                    rows = pa.ipc.read_record_batch(worker.results.recv_bytes(), COG_HEADERS_SCHEMA)
                except (EOFError, OSError):
                    yield from self._lose(worker)
                    return
                worker.held.difference_update(payload[0])
                yield self._answered(pa.Table.from_batches([rows]))
            elif kind == "failed":
                raise HeaderPoolError(f"header worker {worker.process.pid} failed:\n{payload[0]}")

    def _answered(self, table: pa.Table) -> pa.Table:
        self._unanswered -= table.num_rows
        if self.progress is not None:
            counts = status_counts(table)
            errors = {status: n for status, n in counts.items() if status != "ok"}
            self.progress.record_many(table.num_rows, errors)
        return table

    def _dispatch(self) -> None:
        """Top every worker up to ``high_water`` held URLs, a chunk at a time."""
        for worker in list(self.live):
            while len(worker.held) + self.chunk <= self.high_water:
                numbers = self._take(self.chunk)
                if not numbers:
                    return
                try:
                    worker.tasks.send(("urls", (numbers, [self.urls[n] for n in numbers])))
                except OSError:  # it died; its sentinel tells the loop in a moment
                    self._retry.extendleft(reversed(numbers))
                    break
                worker.held.update(numbers)

    def _take(self, count: int) -> list[int]:
        numbers = []
        while self._retry and len(numbers) < count:
            numbers.append(self._retry.popleft())
        numbers.extend(n for _, n in zip(range(count - len(numbers)), self._fresh, strict=False))
        return numbers

    def _lose(self, worker: _Worker) -> Iterator[pa.Table]:
        """``worker`` died: retry what it held once elsewhere; a second loss is a row."""
        self.live.remove(worker)
        self.deaths += 1
        worker.process.join(JOIN_SECONDS)
        worker.tasks.close()
        worker.results.close()
        code = worker.process.exitcode
        twice = sorted(worker.held & self._lost_once)
        self._lost_once |= worker.held
        self._retry.extend(sorted(worker.held - set(twice)))
        if self.respawns_left > 0:
            self.respawns_left -= 1
            self._spawn()
        reason = f"two worker processes died holding it (the last with exit code {code})"
        for start in range(0, len(twice), self.batch_size):
            yield self._answered(self._lost_rows(twice[start : start + self.batch_size], reason))

    def _give_up(self) -> Iterator[pa.Table]:
        """No worker left: every URL without a row gets a :data:`WORKER_LOST` row."""
        while numbers := self._take(self.batch_size):
            reason = f"no header worker process left after {self.deaths} died"
            yield self._answered(self._lost_rows(numbers, reason))

    def _lost_rows(self, numbers: list[int], reason: str) -> pa.Table:
        outcomes = [
            HeaderOutcome(
                url=self.urls[n],
                status=WORKER_LOST,
                error=reason,
                attempts=0,
                requests=0,
                bytes_read=0,
                elapsed=0.0,
            )
            for n in numbers
        ]
        return outcomes_table(outcomes)

    # -- processes -----------------------------------------------------------------------

    def _spawn(self) -> None:
        global _spawned
        task_out, task_in = self.context.Pipe(duplex=False)
        result_out, result_in = self.context.Pipe(duplex=False)
        process = self.context.Process(
            target=run_worker,
            args=(task_out, result_in, self.config),
            name="rasteret-header-worker",
            daemon=True,
        )
        process.start()
        _spawned += 1
        task_out.close()
        result_in.close()
        self.live.append(_Worker(process, task_in, result_out))
        if self.on_spawn is not None:
            self.on_spawn(process)

    def _finish(self) -> None:
        """Every URL answered: tell the workers to end and collect the CPU they used."""
        for worker in self.live:
            try:
                worker.tasks.send(("end", None))
            except OSError:
                continue
        for worker in self.live:
            try:
                kind, payload = worker.results.recv()
            except (EOFError, OSError):
                continue
            if kind == "done":
                self.worker_cpu += payload
            worker.process.join(JOIN_SECONDS)

    def _stop(self) -> None:
        for worker in self.live:
            if worker.process.is_alive():
                worker.process.kill()
            worker.process.join(JOIN_SECONDS)
            worker.tasks.close()
            worker.results.close()
        self.live.clear()


async def pool_rows(pool: HeaderPool) -> AsyncIterator[pa.Table]:
    """:meth:`HeaderPool.rows` for async callers.

    Each step runs in one helper thread, so the event loop stays free and the workers wait
    while the caller is busy with a batch; closing runs after any step still under way.
    """
    loop = asyncio.get_running_loop()
    rows = pool.rows()
    done = object()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="header-pool") as thread:
        try:
            while (table := await loop.run_in_executor(thread, next, rows, done)) is not done:
                yield table  # type: ignore[misc]
        finally:
            await asyncio.shield(loop.run_in_executor(thread, rows.close))
