"""The one way a run's URLs become header rows: in this process, or over worker processes.

Every door (the library functions, both builders, the ``cog_headers`` step) asks
:func:`header_rows`, which decides with :func:`plan_workers`:

* ``workers`` defaults to the CPUs this process may use (:func:`default_workers`);
* each worker must get enough URLs to pay for starting it. The first pool of a process
  starts the forkserver, which imports the engine (pyarrow, aiohttp, the storage backends):
  0.7 s on an idle 2-core box, 2-3 s on a loaded one, the time one process needs for
  2,500-10,000 headers. So a process's first pool needs :data:`COLD_URLS_PER_WORKER` URLs per
  worker: the break-even of ``N / r = start + N / (s r)`` (``s``, the speed-up of ``w``
  workers, ~1.8 on 2 cores against a remote store) is met from ~5,000 URLs on 2 workers.
  Later pools fork in ~0.02 s per worker; what is left is the run's tail (workers idle while
  the last URLs finish), so :data:`WARM_URLS_PER_WORKER` is enough. Below that one process is
  as fast and simpler to debug (a chunk of a streamed build, a small month);
* a backend that cannot be rebuilt in another process (injected backends, a custom
  ``StorageBackend``), a caller that is itself a daemon process and a platform without the
  forkserver start method keep the run here.

``max_concurrent`` is the whole run's, split between the workers.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
from collections.abc import AsyncIterator, Sequence

import pyarrow as pa

from rasteret_assets.ingest.headers.collector import collector_tuned
from rasteret_assets.ingest.headers.engine import ProgressLog, fetch_headers
from rasteret_assets.ingest.headers.pool import HeaderPool, pool_rows, workers_started
from rasteret_assets.ingest.headers.rows import outcome_batches
from rasteret_assets.ingest.headers.worker import WorkerConfig
from rasteret_assets.storage import RetryPolicy, StorageBackend, StorageOptions

#: Fewest URLs worth giving one worker process when the forkserver must be started first,
#: and once it runs (see the module docstring).
COLD_URLS_PER_WORKER = 2500
WARM_URLS_PER_WORKER = 500

logger = logging.getLogger(__name__)


def default_workers() -> int:
    """The CPUs this process may run on (its affinity mask, not the machine's count)."""
    counter = getattr(os, "process_cpu_count", None)  # Python 3.13+
    if counter is not None:
        return max(1, counter() or 1)
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def portable_options(backend: StorageBackend) -> StorageOptions | None:
    """The options a worker process can rebuild ``backend`` from, if it can."""
    return getattr(backend, "portable_options", None)


def plan_workers(
    workers: int | None,
    n_urls: int,
    max_concurrent: int,
    backend: StorageBackend,
    *,
    warm: bool | None = None,
) -> int:
    """How many processes read this run (1: this one, no worker processes).

    ``warm`` says whether this process has started a pool before (default: whether it has).
    """
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be >= 1 (or None for every CPU), got {workers}")
    wanted = default_workers() if workers is None else workers
    if (
        portable_options(backend) is None
        or mp.current_process().daemon  # a daemon process may not start processes
        or "forkserver" not in mp.get_all_start_methods()
    ):
        return 1
    warm = workers_started() if warm is None else warm
    per_worker = WARM_URLS_PER_WORKER if warm else COLD_URLS_PER_WORKER
    return max(1, min(wanted, n_urls // per_worker, max_concurrent))


async def header_rows(
    urls: Sequence[str],
    backend: StorageBackend,
    *,
    max_concurrent: int,
    retry: RetryPolicy | None = None,
    first_read: int | None = None,
    batch_size: int = 1000,
    workers: int | None = None,
    progress: ProgressLog | None = None,
) -> AsyncIterator[pa.Table]:
    """Header rows of ``urls`` (one per URL) in tables of about ``batch_size`` rows."""
    if max_concurrent < 1:
        raise ValueError(f"max_concurrent must be >= 1, got {max_concurrent}")
    engine = {} if first_read is None else {"first_read": first_read}
    policy = retry or RetryPolicy()
    count = plan_workers(workers, len(urls), max_concurrent, backend)
    if count == 1:
        stream = fetch_headers(
            urls, backend, max_concurrent=max_concurrent, retry=policy, progress=progress, **engine
        )
        with collector_tuned():
            async for rows in outcome_batches(stream, batch_size=batch_size):
                yield rows
        return
    options = portable_options(backend)
    assert options is not None
    config = WorkerConfig(
        options=options,
        retry=policy,
        max_concurrent=max_concurrent,
        batch_size=min(batch_size, 250),
        engine=engine,
    )
    logger.info("reading %d URLs with %d worker processes", len(urls), count)
    pool = HeaderPool(urls, config, count, batch_size=batch_size, progress=progress)
    async for rows in pool_rows(pool):
        yield rows
