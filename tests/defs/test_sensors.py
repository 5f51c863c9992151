"""The STAC sensor against a real STAC API (rustac): cursor handling and exact month keys."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest
from servers.pgstac_server import PgstacApi, collection_from_items, unique_collection_id
from servers.rustac_server import RustacServer

from rasteret_assets.defs.automation import new_items_sensor
from rasteret_assets.sources import ResolvedSource, SourceSpec, resolve

GEOPARQUET = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "geoparquet"


def landsat_source(url: str) -> ResolvedSource:
    return resolve(
        SourceSpec(
            name="landsat",
            kind="stac_api",
            location=url,
            collection="landsat-c2-l2",
            band_map={"red": "red"},
            start_month="2023-01",
        )
    )


def evaluate(source: ResolvedSource, cursor: str | None) -> dg.SensorResult:
    sensor = new_items_sensor(source)
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


def test_items_added_between_ticks_trigger_exactly_their_months(
    pgstac_api: PgstacApi, stac_fixtures: Path
) -> None:
    """stac-fastapi-pgstac with transactions: the test adds items between two ticks."""
    template = json.loads(
        (stac_fixtures / "planetary-computer" / "sentinel-2-l2a_items_4.json").read_text()
    )[0]
    collection_id = unique_collection_id("sensor")

    def item(suffix: str, acquired: str, updated: datetime) -> dict:
        properties = {**template["properties"], "datetime": acquired}
        properties["updated"] = updated.isoformat().replace("+00:00", "Z")
        return {**template, "id": f"{collection_id}-{suffix}", "properties": properties}

    seed = item("seed", "2024-01-15T10:00:00Z", datetime(2024, 1, 16, tzinfo=UTC))
    pgstac_api.add_collection(collection_from_items(collection_id, [seed], "sensor test"))
    pgstac_api.add_item(seed, collection_id)
    source = resolve(
        SourceSpec(
            name="pgstac",
            kind="stac_api",
            location=pgstac_api.url,
            collection=collection_id,
            band_map={"red": "B04"},
            start_month="2024-01",
        )
    )
    first = evaluate(source, None)
    assert not first.run_requests
    since = datetime.fromisoformat(json.loads(first.cursor)["since"])

    stamp = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=5)
    pgstac_api.add_item(item("march", "2024-03-02T10:00:00Z", stamp), collection_id)
    pgstac_api.add_item(
        item("july", "2024-07-09T10:00:00Z", stamp + timedelta(seconds=1)), collection_id
    )
    assert stamp > since

    second = evaluate(source, first.cursor)
    newest = stamp + timedelta(seconds=1)
    assert [(r.partition_key, r.run_key) for r in second.run_requests] == [
        ("2024-03-01", f"2024-03-01@{newest.isoformat()}"),
        ("2024-07-01", f"2024-07-01@{newest.isoformat()}"),
    ]
    assert json.loads(second.cursor) == {"since": newest.isoformat()}

    third = evaluate(source, second.cursor)
    assert not third.run_requests
    assert third.cursor == second.cursor
