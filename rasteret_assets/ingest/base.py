"""The common shape of every builder, and the one way to run async work from sync code.

Builders are called from scripts (no event loop), from Jupyter and from Dagster ops (an
event loop may already run in the calling thread, where ``asyncio.run`` refuses to start).
:func:`run_sync` covers all three, so each builder's sync ``build()`` is a one-liner over its
async implementation.
"""

from __future__ import annotations

import asyncio
import contextvars
from abc import ABC, abstractmethod
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from rasteret_assets.collection import Collection

T = TypeVar("T")


def run_sync(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` to completion from synchronous code and return its result.

    Without a running loop in this thread it is plain ``asyncio.run``. With one (Jupyter
    cells, async Dagster code calling sync helpers) the coroutine runs on a fresh loop in a
    worker thread while this thread waits: blocking the caller's loop for the duration is
    what a sync call means, and nesting loops (``nest_asyncio``) would let other tasks of
    that loop run re-entrantly in the middle of ours. Context variables are carried over so
    logging and tracing context follows the work.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    context = contextvars.copy_context()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="run-sync") as pool:
        return pool.submit(context.run, asyncio.run, coroutine).result()


class CollectionBuilder(ABC):
    """Base class of all collection builders (the reference API's ``CollectionBuilder``).

    Subclasses read records from their source, enrich and normalise them, and return a
    :class:`~rasteret_assets.collection.Collection`, persisted when ``workspace_dir`` is set.
    """

    def __init__(
        self, *, name: str = "", data_source: str = "", workspace_dir: str | Path | None = None
    ) -> None:
        self.name = name
        self.data_source = data_source
        self.workspace_dir = workspace_dir

    @abstractmethod
    def build(self, **kwargs: Any) -> Collection:
        """Acquire, enrich and normalise the records; return the Collection."""
