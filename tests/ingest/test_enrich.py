"""The enrichment engine against a real HTTP range server on 127.0.0.1.

Faults are produced by the server itself (status codes, resets, short bodies, HTML pages);
nothing in the engine or the backends is mocked.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from prefix_backend import PrefixBackend
from servers.range_server import Fault, RangeServer

from rasteret_assets.contract import BandHeader, band_metadata_array
from rasteret_assets.ingest import (
    add_band_metadata_columns,
    build_url_index_from_assets,
    enrich_table,
    enrich_table_with_cog_metadata,
)
from rasteret_assets.ingest.headers.read_size import START_READ
from rasteret_assets.storage import RetryPolicy, StorageOptions, StorageRouter
from rasteret_assets.tiff import HeaderReadDriver, parse_tiff_bytes

COGS = (
    "rio-tiler/cog.tif",
    "rio-tiler/cog_int16.tif",
    "rasterio/cogeo.tif",
    "cogeotiff/sparse.tiff",
    "rio-tiler/cog_ovr.tif",
)
FAST_RETRY = RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=0.05)


@pytest.fixture(autouse=True)
def _needs_shared_tiffs(tiff_fixtures: Path) -> None:
    """Every test here serves the shared real-world COGs (``/fixtures/`` on the server)."""


def record_table(urls: list[str], band: str = "B01") -> pa.Table:
    return pa.table(
        {
            "id": [f"rec-{i}" for i in range(len(urls))],
            "assets": [{band: {"href": url, "band_index": 0}} for url in urls],
        }
    )


def expected_metadata(tiff_fixtures: Path, name: str) -> dict:
    header = parse_tiff_bytes((tiff_fixtures / name).read_bytes())
    value = band_metadata_array([BandHeader(header)])[0].as_py()
    return {k: v for k, v in value.items() if k not in ("source_etag", "source_size")}


def without_source(value: dict) -> dict:
    return {k: v for k, v in value.items() if k not in ("source_etag", "source_size")}


def run(table: pa.Table, band_codes: list[str], **kwargs):
    index = build_url_index_from_assets(table)
    kwargs.setdefault("retry", FAST_RETRY)
    return asyncio.run(enrich_table(table, index, band_codes, **kwargs))


def header_extent(path: Path) -> int:
    """How far into the file the header reaches (read locally, 1 KiB at a time)."""
    data = path.read_bytes()
    driver = HeaderReadDriver(first_read=1024, min_read=1024)
    while reads := driver.next_reads():
        driver.feed(reads, [data[start : start + n] for start, n in reads], file_size=len(data))
    return driver.buffer.extent


def test_clean_run_reads_each_cog_in_one_request_when_its_header_fits_the_start_read(
    range_server: RangeServer, tiff_fixtures: Path
) -> None:
    extents = {name: header_extent(tiff_fixtures / name) for name in COGS}
    assert any(e > START_READ for e in extents.values())  # both cases are exercised
    assert any(e <= START_READ for e in extents.values())
    urls = [range_server.url(f"/fixtures/{name}") for name in COGS]
    result = run(record_table(urls), ["B01"])
    assert result.status_counts == {"ok": len(COGS)}
    column = result.table.column("B01_metadata").to_pylist()
    for name, value in zip(COGS, column, strict=True):
        assert without_source(value) == expected_metadata(tiff_fixtures, name)
        assert value["source_size"] == (tiff_fixtures / name).stat().st_size
        assert value["source_etag"]
        # A header past the start read costs one follow-up read, never more.
        expected = 1 if extents[name] <= START_READ else 2
        assert range_server.stats(f"/fixtures/{name}").requests == expected, name
    outcomes = result.outcomes.to_pylist()
    assert sorted(o["url"] for o in outcomes) == sorted(urls)
    assert all(o["requests"] == o["attempts"] <= 2 for o in outcomes)
    assert all(len(o["ifds"]) >= 1 for o in outcomes)


def test_shared_urls_are_fetched_once_and_rows_never_swap(range_server: RangeServer) -> None:
    a = range_server.url("/fixtures/rio-tiler/cog.tif")
    b = range_server.url("/fixtures/rio-tiler/cog_int16.tif")
    table = pa.table(
        {
            "id": ["x", "y", "z"],
            "assets": [
                {"red": {"href": a, "band_index": 0}, "nir": {"href": b, "band_index": 0}},
                {"red": {"href": b, "band_index": 0}, "nir": {"href": a, "band_index": 0}},
                {"red": {"href": a, "band_index": 0}, "nir": None},
            ],
        }
    )
    result = run(table, ["red", "nir"], max_concurrent=2)
    assert range_server.stats("/fixtures/rio-tiler/cog.tif").requests == 1
    assert range_server.stats("/fixtures/rio-tiler/cog_int16.tif").requests == 1
    dtypes = {
        band: pc.struct_field(result.table.column(f"{band}_metadata"), "dtype").to_pylist()
        for band in ("red", "nir")
    }
    assert dtypes == {"red": ["uint16", "int16", "uint16"], "nir": ["int16", "uint16", None]}
    assert result.outcomes.num_rows == 2


@pytest.mark.parametrize(
    ("fault", "attempts"),
    [
        (Fault("503", times=2, retry_after=0), 3),
        (Fault("429", times=1, retry_after=0), 2),
        (Fault("500", times=2), 3),
        (Fault("reset", times=1), 2),
        (Fault("truncate", times=2), 3),
    ],
    ids=["503", "429", "500", "reset", "truncate"],
)
def test_transient_faults_end_ok_with_identical_results(
    range_server: RangeServer, tiff_fixtures: Path, fault: Fault, attempts: int
) -> None:
    path = "/fixtures/rio-tiler/cog_int16.tif"
    range_server.set_fault(path, fault)
    result = run(record_table([range_server.url(path)]), ["B01"])
    outcome = result.outcomes.to_pylist()[0]
    assert outcome["status"] == "ok", outcome["error"]
    assert outcome["attempts"] == attempts
    value = result.table.column("B01_metadata")[0].as_py()
    assert without_source(value) == expected_metadata(tiff_fixtures, "rio-tiler/cog_int16.tif")


@pytest.mark.parametrize(
    ("fault", "status"),
    [
        (Fault("404"), "not_found"),
        (Fault("403"), "forbidden"),
        (Fault("html"), "not_tiff"),
    ],
    ids=["404", "403", "html"],
)
def test_permanent_faults_fail_after_one_attempt_and_the_run_goes_on(
    range_server: RangeServer, fault: Fault, status: str
) -> None:
    bad = "/fixtures/rio-tiler/cog_ovr.tif"
    good = "/fixtures/rio-tiler/cog.tif"
    range_server.set_fault(bad, fault)
    result = run(record_table([range_server.url(bad), range_server.url(good)]), ["B01"])
    by_url = {o["url"]: o for o in result.outcomes.to_pylist()}
    failed = by_url[range_server.url(bad)]
    assert failed["status"] == status
    assert failed["attempts"] == 1
    assert range_server.stats(bad).requests == 1
    assert failed["error"] and range_server.url(bad) in failed["error"]
    assert by_url[range_server.url(good)]["status"] == "ok"
    assert result.table.column("B01_metadata").is_null().to_pylist() == [True, False]


def test_persistent_throttling_gives_up_with_its_class(range_server: RangeServer) -> None:
    path = "/fixtures/rio-tiler/cog.tif"
    range_server.set_fault(path, Fault("503", retry_after=0))
    result = run(record_table([range_server.url(path)]), ["B01"])
    outcome = result.outcomes.to_pylist()[0]
    assert outcome["status"] == "throttled"
    assert outcome["attempts"] == FAST_RETRY.max_attempts
    assert range_server.stats(path).requests == FAST_RETRY.max_attempts


def test_striped_and_corrupt_files_are_outcomes_not_exceptions(range_server: RangeServer) -> None:
    striped = range_server.url("/fixtures/rio-tiler/nocog.tif")
    range_server.add_bytes("/empty.tif", b"")
    range_server.add_bytes("/garbage.tif", b"II*\x00" + b"\xff" * 60)
    urls = [striped, range_server.url("/empty.tif"), range_server.url("/garbage.tif")]
    result = run(record_table(urls), ["B01"])
    statuses = {o["url"]: o["status"] for o in result.outcomes.to_pylist()}
    assert statuses[striped] == "not_tiled"
    assert statuses[range_server.url("/empty.tif")] == "not_tiff"
    assert statuses[range_server.url("/garbage.tif")] == "truncated"
    assert result.table.column("B01_metadata").null_count == 3


def test_ifd_at_the_end_needs_one_follow_up_read(range_server: RangeServer) -> None:
    path = "/fixtures/rasterio/shade.tif"
    result = run(record_table([range_server.url(path)]), ["B01"], first_read=16384)
    outcome = result.outcomes.to_pylist()[0]
    assert outcome["status"] == "ok"
    assert outcome["requests"] == 2
    assert range_server.stats(path).requests == 2


def test_concurrency_is_bounded_and_connections_are_reused(
    range_server: RangeServer, tiff_fixtures: Path
) -> None:
    range_server.latency = 0.02
    cog = (tiff_fixtures / "rio-tiler/cog_ovr.tif").read_bytes()
    names = [f"/many/{i}.tif" for i in range(40)]
    for name in names:
        range_server.add_bytes(name, cog)
    backend = StorageRouter(StorageOptions(max_connections=5, max_connections_per_host=5))
    result = run(
        record_table([range_server.url(n) for n in names]),
        ["B01"],
        max_concurrent=5,
        backend=backend,
    )
    asyncio.run(backend.close())
    assert result.status_counts == {"ok": 40}
    assert 1 < range_server.max_in_flight <= 5
    assert range_server.connections_accepted <= 5


def test_progress_is_logged(range_server: RangeServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="rasteret_assets")
    urls = [range_server.url(f"/fixtures/{name}") for name in COGS[:2]]
    run(record_table(urls), ["B01"], progress_every=0.0)
    lines = [r.getMessage() for r in caplog.records if "done" in r.getMessage()]
    assert lines and lines[-1].startswith("headers: 2/2 done")


def test_misuse_raises_clear_errors(range_server: RangeServer) -> None:
    url = range_server.url("/fixtures/rio-tiler/cog.tif")
    duplicated = pa.table({"id": ["a", "a"], "assets": [{"B01": url}, {"B01": url}]})
    with pytest.raises(ValueError, match=r"duplicate record ids.*'a'"):
        build_url_index_from_assets(duplicated)
    table = record_table([url])
    with pytest.raises(ValueError, match="no asset URLs for bands"):
        run(table, ["B99"])
    with pytest.raises(ValueError, match="band_codes is empty"):
        run(table, [])


def test_band_index_past_the_samples_is_reported(range_server: RangeServer) -> None:
    url = range_server.url("/fixtures/rio-tiler/cog.tif")
    table = pa.table({"id": ["a"], "assets": [{"B01": {"href": url, "band_index": 3}}]})
    result = run(table, ["B01"])
    assert result.table.column("B01_metadata").null_count == 1
    assert result.band_index_errors and "band_index 3" in result.band_index_errors[0]


def test_reference_signature_returns_the_table(range_server: RangeServer) -> None:
    url = range_server.url("/fixtures/rio-tiler/cog.tif")
    table = record_table([url])
    index = build_url_index_from_assets(table)
    enriched = asyncio.run(
        enrich_table_with_cog_metadata(table, index, ["B01"], max_concurrent=3, batch_size=1)
    )
    assert enriched.column_names == ["id", "assets", "B01_metadata", "proj:epsg", "crs"]
    assert enriched.column("B01_metadata")[0]["image_width"].as_py() == 2658
    # Row-level CRS comes from the header where the table has none (rasteret 0.4.1 does this;
    # without it rasteret cannot read the collection).
    header_crs = enriched.column("B01_metadata")[0]["crs"].as_py()
    assert header_crs and header_crs.startswith("EPSG:")
    assert enriched.column("crs").to_pylist() == [header_crs]
    assert enriched.column("proj:epsg").to_pylist() == [int(header_crs.split(":")[1])]


def test_reference_function_keeps_declared_crs(range_server: RangeServer) -> None:
    url = range_server.url("/fixtures/rio-tiler/cog.tif")
    table = record_table([url, url + "?copy=2"]).append_column(
        "proj:epsg", pa.array([4326, None], pa.int64())
    )
    enriched = asyncio.run(
        enrich_table_with_cog_metadata(table, build_url_index_from_assets(table), ["B01"])
    )
    header_epsg = enriched.column("B01_metadata")[1]["crs"].as_py().split(":")[1]
    assert header_epsg != "4326"
    assert enriched.column("proj:epsg").to_pylist() == [4326, int(header_epsg)]
    assert enriched.column("crs").to_pylist() == ["EPSG:4326", f"EPSG:{header_epsg}"]


def test_add_band_metadata_columns_from_parsed_headers(tiff_fixtures: Path) -> None:
    header = parse_tiff_bytes((tiff_fixtures / "rio-tiler/cog.tif").read_bytes())
    table = pa.table({"id": ["a", "b"]})
    out = add_band_metadata_columns(
        table, ["red"], [{"record_id": "b", "band": "red", "header": header}]
    )
    assert out.column("red_metadata").is_null().to_pylist() == [True, False]


def test_mixed_local_http_and_rewritten_urls(
    range_server: RangeServer, tiff_fixtures: Path
) -> None:
    local = str(tiff_fixtures / "rio-tiler/cog_int16.tif")
    http = range_server.url("/fixtures/rio-tiler/cog.tif")
    rewritten = "https://example.invalid/bucket/rio-tiler/cog_ovr.tif"
    backend = PrefixBackend("https://example.invalid/bucket/", f"{tiff_fixtures}/")
    result = run(record_table([local, http, rewritten]), ["B01"], backend=backend)
    asyncio.run(backend.close())
    assert result.status_counts == {"ok": 3}
    widths = pc.struct_field(result.table.column("B01_metadata"), "image_width").to_pylist()
    assert widths == [2658, 2658, 2658]


def test_signed_query_strings_never_reach_outcomes_or_logs(
    range_server: RangeServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    path = "/fixtures/rio-tiler/cog.tif"
    range_server.set_fault(path, Fault("503", times=1, retry_after=0))
    signed = range_server.url(path) + "?X-Amz-Signature=PLANTEDSECRET&X-Amz-Credential=AKIA"
    missing = range_server.url("/nope.tif") + "?sig=PLANTEDSECRET"
    result = run(record_table([signed, missing]), ["B01"])
    assert result.status_counts == {"ok": 1, "not_found": 1}
    written = str(result.outcomes.to_pylist()) + str(result.table.column("B01_metadata"))
    assert "PLANTEDSECRET" not in written
    assert all("PLANTEDSECRET" not in r.getMessage() for r in caplog.records)


def test_extra_samples_is_null_in_header_rows_and_metadata_without_the_tag(
    range_server: RangeServer,
) -> None:
    urls = [range_server.url(f"/fixtures/{n}") for n in ("rio-tiler/cog.tif", "rasterio/alpha.tif")]
    result = run(record_table(urls), ["B01"])
    assert result.status_counts == {"ok": 2}
    metadata = result.table.column("B01_metadata")
    assert pc.struct_field(metadata, "extra_samples").to_pylist() == [None, [2]]
    by_url = {o["url"]: o["ifds"][0]["extra_samples"] for o in result.outcomes.to_pylist()}
    assert by_url == {urls[0]: None, urls[1]: [2]}
