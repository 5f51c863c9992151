"""The storage resource's URL policy in real Dagster runs: local files outside the allowed roots
end as ``forbidden_url`` rows (never an aborted run), and configuring a root admits them."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from rasteret_assets.collection.staged import StagedParquet
from rasteret_assets.collection.store import Store, resolve_filesystem
from rasteret_assets.contract import COG_HEADERS_SCHEMA
from rasteret_assets.defs.assets import build_source_assets
from rasteret_assets.defs.checks import FAILED_URLS
from rasteret_assets.defs.resources import (
    ConcurrencyResource,
    StorageResource,
    WorkspaceResource,
)
from rasteret_assets.ingest.headers.rows import add_urls
from rasteret_assets.ingest.steps import HEADERS_FILE, HeaderStats, write_header_rows
from rasteret_assets.sources import DEMO_CATALOG, ResolvedSource, demo_source, resolve
from rasteret_assets.storage import StorageRouter

MONTH = "2024-02-01"


@pytest.fixture
def copied_source(tmp_path: Path) -> ResolvedSource:
    """The demo catalog copied outside the package: same COGs, a root nobody allowed yet."""
    catalog = tmp_path / "catalog"
    shutil.copytree(DEMO_CATALOG.parent, catalog)
    return resolve(
        demo_source().model_copy(
            update={"name": "copied", "location": str(catalog / "catalog.json")}
        )
    )


def materialize(
    source: ResolvedSource, root: Path, storage: StorageResource
) -> tuple[dg.ExecuteInProcessResult, pq.ParquetFile]:
    result = dg.materialize(
        build_source_assets(source),
        partition_key=MONTH,
        resources={
            "workspace": WorkspaceResource(root=str(root)),
            "storage": storage,
            "concurrency": ConcurrencyResource(max_concurrent=4, max_per_host=4),
        },
        raise_on_error=False,
    )
    # Refused URLs are rows: the header step succeeds whatever the policy refused.
    assert result.is_node_success(f"{source.name}__cog_headers")
    headers = root / source.name / "cog_headers" / "year=2024" / "month=2" / "headers.parquet"
    return result, pq.ParquetFile(headers)


def test_local_files_outside_the_allowed_roots_are_forbidden_rows(
    copied_source: ResolvedSource, tmp_path: Path
) -> None:
    result, headers_file = materialize(copied_source, tmp_path / "ws", StorageResource())
    headers = headers_file.read()
    assert headers.num_rows == 6
    assert set(headers.column("status").to_pylist()) == {"forbidden_url"}
    errors = headers.column("error").to_pylist()
    assert all("outside the allowed local roots" in e for e in errors)
    coverage = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert coverage["header_coverage"] is False  # so the month is not published
    # cog_headers' own check names the failures by class, with a few example URLs.
    (failed,) = [c for c in result.get_asset_check_evaluations() if c.check_name == FAILED_URLS]
    assert not failed.passed and failed.severity == dg.AssetCheckSeverity.WARN
    assert failed.metadata["by_class"].value == {"forbidden_url": 6}
    examples = failed.metadata["examples"].value["forbidden_url"]
    assert len(examples) == 3 and all(e.startswith(str(tmp_path / "catalog")) for e in examples)
    assert not (tmp_path / "ws" / "copied" / "collection" / "year=2024").exists()


def test_an_allowed_root_admits_the_same_files(
    copied_source: ResolvedSource, tmp_path: Path
) -> None:
    storage = StorageResource(allowed_local_roots=[str(tmp_path / "catalog")])
    result, headers = materialize(copied_source, tmp_path / "ws", storage)
    assert result.success
    assert pc.all(pc.equal(headers.read().column("status"), "ok")).as_py()


def test_the_demo_source_is_allowed_by_default(tmp_path: Path) -> None:
    result, headers = materialize(resolve(demo_source()), tmp_path / "ws", StorageResource())
    assert result.success
    assert set(headers.read().column("status").to_pylist()) == {"ok"}


def test_a_source_cannot_loosen_the_policy() -> None:
    with pytest.raises(ValueError, match="cannot set url_policy"):
        StorageResource().options(4, 4, {"url_policy": None})


def test_failed_url_examples_carry_no_query_string(tmp_path: Path) -> None:
    """The check's examples are for people: ``?`` and everything after it is dropped, signing
    parameters and object-addressing ones alike."""
    hrefs = [f"http://127.0.0.1:1/cogs/{n}.tif?version=3&X-Amz-Signature=secret" for n in "ab"]
    urls: dict[str, str] = {}
    add_urls(urls, pa.array(hrefs))
    storage = StorageResource(allowed_hosts=["cogs.example.org"])
    fs, root = resolve_filesystem(str(tmp_path))

    async def run() -> HeaderStats:
        backend = StorageRouter(storage.options(4, 4))
        try:
            with StagedParquet(Store(fs, root), HEADERS_FILE, schema=COG_HEADERS_SCHEMA) as sink:
                stats = await write_header_rows(urls, None, backend, sink, max_concurrent=4)
                sink.commit()
                return stats
        finally:
            await backend.close()

    stats = asyncio.run(run())
    assert stats.errors == {"forbidden_url": 2}
    assert sorted(stats.examples["forbidden_url"]) == [
        "http://127.0.0.1:1/cogs/a.tif",
        "http://127.0.0.1:1/cogs/b.tif",
    ]
