"""``max_concurrent`` means one thing everywhere: URLs in flight, each with its own pooled
connection, with one default for the library, the builders and the Dagster resource."""

from __future__ import annotations

import inspect

import pytest

from rasteret_assets.defs.resources import ConcurrencyResource
from rasteret_assets.ingest import (
    RecordTableBuilder,
    StacCollectionBuilder,
    enrich_table_with_cog_metadata,
)
from rasteret_assets.ingest.headers.engine import DEFAULT_MAX_CONCURRENT, fetch_headers
from rasteret_assets.ingest.headers.enrich import default_backend
from rasteret_assets.sources.registry import CloudConfig


@pytest.mark.parametrize(
    "entry",
    [fetch_headers, enrich_table_with_cog_metadata, RecordTableBuilder, StacCollectionBuilder],
)
def test_every_door_has_the_same_default(entry: object) -> None:
    default = inspect.signature(entry).parameters["max_concurrent"].default
    assert default == DEFAULT_MAX_CONCURRENT == ConcurrencyResource().max_concurrent


def test_the_pool_follows_max_concurrent_unless_a_host_cap_is_set() -> None:
    assert ConcurrencyResource(max_concurrent=12).connections_per_host() == 12
    assert ConcurrencyResource(max_concurrent=12, max_per_host=3).connections_per_host() == 3


def test_the_default_backend_carries_the_sources_cloud_settings() -> None:
    router = default_backend(40, CloudConfig(anon=True, region="us-west-2"))
    options = router.options
    assert (options.anon, options.region) == (True, "us-west-2")
    assert (options.max_connections, options.max_connections_per_host) == (40, 40)
    assert default_backend(5).options.anon is None
