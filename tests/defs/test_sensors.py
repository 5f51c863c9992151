"""The STAC sensor against a real STAC API (rustac): cursor handling and exact month keys."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest
from servers.rustac_server import RustacServer

from rasteret_assets.defs.automation import new_items_sensor, source_job
from rasteret_assets.defs.config import SourceConfig

GEOPARQUET = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "geoparquet"


def landsat_source(url: str) -> SourceConfig:
    return SourceConfig(
        name="landsat",
        kind="stac_api",
        location=url,
        collection="landsat-c2-l2",
        band_map={"red": "red"},
        start_month="2023-01",
    )


def evaluate(source: SourceConfig, cursor: str | None) -> dg.SensorResult:
    sensor = new_items_sensor(source, source_job(source))
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(cursor=cursor, instance=instance)
        return sensor(context)


def test_first_tick_only_sets_the_cursor(rustac_server: RustacServer) -> None:
    before = datetime.now(UTC)
    result = evaluate(landsat_source(rustac_server.url), None)
    assert not result.run_requests
    since = datetime.fromisoformat(json.loads(result.cursor)["since"])
    assert since >= before


def test_a_tick_requests_exactly_the_months_of_newer_items(rustac_server: RustacServer) -> None:
    if not (GEOPARQUET / "pc_landsat-c2-l2_100.parquet").exists():
        pytest.skip("shared geoparquet fixtures not available")
    since = datetime(2024, 6, 1, tzinfo=UTC)
    items = pq.read_table(GEOPARQUET / "pc_landsat-c2-l2_100.parquet", columns=["datetime"])
    expected = sorted(
        {
            f"{d:%Y-%m}-01"
            for d in items.column("datetime").to_pylist()
            if d.astimezone(UTC) >= since
        }
    )
    result = evaluate(landsat_source(rustac_server.url), json.dumps({"since": since.isoformat()}))
    keys = [r.partition_key for r in result.run_requests]
    assert keys == expected and len(keys) >= 2
    newest = datetime.fromisoformat(json.loads(result.cursor)["since"])
    assert newest > since
    assert all(r.run_key.endswith(newest.isoformat()) for r in result.run_requests)
    # Without CQL2 (rustac) the newest item is seen again (datetime >= since); it comes back
    # with the same run key, which Dagster never launches twice.
    again = evaluate(landsat_source(rustac_server.url), result.cursor)
    assert [(r.partition_key, r.run_key) for r in again.run_requests] == [
        (keys[-1], f"{keys[-1]}@{newest.isoformat()}")
    ]
