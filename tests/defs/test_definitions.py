"""The code location as Dagster loads it: the daily schedule's partition and run keys, its job,
and the lineage page's descriptions, owners, kinds and code references."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest

from rasteret_assets.definitions import build_definitions
from rasteret_assets.defs.automation import new_items_sensor, refresh_schedule
from rasteret_assets.defs.partitions import monthly_partitions
from rasteret_assets.defs.resources import LOCAL_ROOTS_ENV
from rasteret_assets.sources import DEMO_CATALOG, SOURCES_ENV, demo_source, resolve
from rasteret_assets.storage import StorageError

#: The demo source without its catalog's end: partitions run through the current month.
OPEN_ENDED = demo_source().model_copy(update={"end_month": "2099-12"})


def requests_at(moment: datetime) -> list[dg.RunRequest]:
    schedule = refresh_schedule(resolve(OPEN_ENDED))
    with dg.instance_for_test() as instance:
        context = dg.build_schedule_context(instance=instance, scheduled_execution_time=moment)
        return list(schedule(context))


def test_a_tick_requests_the_current_and_the_previous_month() -> None:
    requests = requests_at(datetime(2024, 3, 15, 3, tzinfo=UTC))
    assert [r.partition_key for r in requests] == ["2024-02-01", "2024-03-01"]
    assert [r.run_key for r in requests] == ["2024-02-01@2024-03-15", "2024-03-01@2024-03-15"]


def test_the_first_day_of_a_month_already_includes_it() -> None:
    requests = requests_at(datetime(2024, 5, 1, 3, tzinfo=UTC))
    assert [r.partition_key for r in requests] == ["2024-04-01", "2024-05-01"]


def test_the_start_month_has_no_previous_month_to_refresh() -> None:
    requests = requests_at(datetime(2024, 1, 20, 3, tzinfo=UTC))
    assert [r.partition_key for r in requests] == ["2024-01-01"]


def test_the_schedule_targets_the_sources_partitioned_job(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(SOURCES_ENV, raising=False)  # the demo source, whatever the shell says
    defs = build_definitions()
    schedule = defs.get_schedule_def("demo_daily_refresh")
    assert schedule.job_name == "demo_monthly"
    assert schedule.cron_schedule == "0 3 * * *"
    job = defs.resolve_job_def("demo_monthly")
    assert job.executor_def.name == "in_process"  # three steps in a line: one process
    assert job.partitions_def is not None
    keys = job.partitions_def.get_partition_keys(current_time=datetime(2024, 3, 2, tzinfo=UTC))
    assert keys == ["2024-01-01", "2024-02-01", "2024-03-01"]


def test_assets_explain_themselves_in_the_ui(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SOURCES_ENV, raising=False)
    graph = build_definitions().resolve_asset_graph()
    for name in ("records", "cog_headers", "collection"):
        spec = graph.get(dg.AssetKey(["demo", name]))
        assert spec.description and spec.owners == ["team:data-platform"]
        assert "parquet" in spec.kinds
        references = spec.metadata["dagster/code_references"].code_references
        assert any(r.file_path.endswith("defs/assets.py") for r in references)


def test_local_roots_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SOURCES_ENV, raising=False)
    monkeypatch.setenv(LOCAL_ROOTS_ENV, f"/data/cogs{os.pathsep}/mnt/archive")
    storage = build_definitions().resources["storage"]
    assert storage.allowed_local_roots == ["/data/cogs", "/mnt/archive"]
    policy = storage.url_policy()
    policy.check("/data/cogs/a.tif")
    with pytest.raises(StorageError) as refused:
        policy.check("/etc/passwd")
    assert refused.value.error_class == "forbidden_url"


def test_automation_and_descriptions_explain_themselves(monkeypatch: pytest.MonkeyPatch) -> None:
    """Schedules and sensors say what they do; asset descriptions carry no install path (the
    location is the source asset's ``dagster/uri``)."""
    monkeypatch.delenv(SOURCES_ENV, raising=False)
    defs = build_definitions()
    assert "03:00 UTC" in (defs.get_schedule_def("demo_daily_refresh").description or "")
    stac = resolve(OPEN_ENDED.model_copy(update={"kind": "stac_api", "location": "https://x"}))
    assert "STAC API" in (new_items_sensor(stac).description or "")
    graph = defs.resolve_asset_graph()
    install = str(Path(__file__).resolve().parents[2])
    for key in graph.get_all_asset_keys():
        assert install not in (graph.get(key).description or ""), key
    source = graph.get(dg.AssetKey(["demo", "source"]))
    assert source.is_external
    assert source.metadata["dagster/uri"].value == DEMO_CATALOG.as_uri()
    records = graph.get(dg.AssetKey(["demo", "records"]))
    assert records.parent_keys == {dg.AssetKey(["demo", "source"])}
    schema = records.metadata["dagster/column_schema"]
    assert all(c.description for c in schema.columns)


def test_the_demo_partitions_are_the_catalogs_extent() -> None:
    """The static catalog's collection spans 2024-01-08 .. 2024-03-21: three months, not
    three months plus every month since."""
    partitions = monthly_partitions(resolve(demo_source()))
    assert partitions.get_partition_keys(current_time=datetime(2026, 12, 1, tzinfo=UTC)) == [
        "2024-01-01",
        "2024-02-01",
        "2024-03-01",
    ]
    later = resolve(demo_source().model_copy(update={"start_month": "2024-02"}))
    assert monthly_partitions(later).get_partition_keys()[0] == "2024-02-01"
