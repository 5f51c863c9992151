"""The collector tuning of a header run is scoped: the process gets its settings back."""

from __future__ import annotations

import asyncio
import gc
import weakref
from pathlib import Path
from typing import ClassVar

import pytest
from servers.range_server import RangeServer

from rasteret_assets.ingest.headers.collector import YOUNG_THRESHOLD, collector_tuned
from rasteret_assets.ingest.headers.enrich import read_header_rows
from rasteret_assets.storage import StorageOptions, StorageRouter


@pytest.fixture(autouse=True)
def _plain_collector():
    before = gc.get_threshold()
    gc.unfreeze()
    yield
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_overlapping_runs_restore_the_settings_when_the_last_one_ends() -> None:
    before = gc.get_threshold()
    with collector_tuned():
        assert gc.get_threshold()[0] == YOUNG_THRESHOLD
        assert gc.get_freeze_count() > 0
        with collector_tuned():
            assert gc.get_threshold()[0] == YOUNG_THRESHOLD
        assert gc.get_threshold()[0] == YOUNG_THRESHOLD  # the outer run is still going
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_a_failing_run_restores_the_settings_too() -> None:
    before = gc.get_threshold()
    with pytest.raises(RuntimeError), collector_tuned():
        raise RuntimeError("boom")
    assert gc.get_threshold() == before


def test_a_process_that_froze_objects_itself_keeps_them_frozen() -> None:
    gc.freeze()  # as a pre-forking server does before it forks its workers
    frozen = gc.get_freeze_count()
    assert frozen > 0
    try:
        with collector_tuned():
            assert gc.get_threshold()[0] == YOUNG_THRESHOLD
        assert gc.get_freeze_count() == frozen
    finally:
        gc.unfreeze()


def test_cyclic_garbage_made_before_a_run_is_freed_after_it() -> None:
    class Node:
        pass

    node = Node()
    node.cycle = node  # only the collector can free it
    ref = weakref.ref(node)
    with collector_tuned():
        del node
        gc.collect()
        assert ref() is not None  # frozen with the heap the run found
    gc.collect()
    assert ref() is None


class WatchedRouter(StorageRouter):
    """A real router that notes the collector threshold while it serves a read."""

    thresholds: ClassVar[list[int]] = []

    async def get_range_with_info(self, url: str, start: int, length: int):
        self.thresholds.append(gc.get_threshold()[0])
        return await super().get_range_with_info(url, start, length)


def test_an_in_process_header_run_is_tuned_and_leaves_the_process_as_it_was(
    range_server: RangeServer, tiff_fixtures: Path
) -> None:
    urls = [
        range_server.url(f"/fixtures/{name}")
        for name in ("rio-tiler/cog.tif", "rasterio/cogeo.tif")
    ]

    async def run() -> int:
        backend = WatchedRouter(StorageOptions())
        try:
            rows = await read_header_rows(urls, backend, max_concurrent=4, workers=1)
        finally:
            await backend.close()
        return rows.num_rows

    assert asyncio.run(run()) == 2
    assert WatchedRouter.thresholds == [YOUNG_THRESHOLD] * 2
