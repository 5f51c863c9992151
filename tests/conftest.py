"""Shared pytest fixtures: real servers on 127.0.0.1 and the shared TIFF fixtures.

* ``range_server`` - an HTTP range server with fault injection and request counting
  (``tests/servers/range_server.py``); session-wide, reset before each test.
* ``moto_s3`` - a moto S3 server with public, private and requester-pays buckets
  (``tests/servers/moto_s3.py``); session-wide, dummy AWS env set per test.
* ``tiff_fixtures`` - ``../shared/fixtures/tiff`` (tests skip when it is absent).
* ``rustac_server`` - ``rustac serve`` (a real STAC API) loaded with the shared Earth Search
  and Planetary Computer items (``tests/servers/rustac_server.py``); ``rustac_mixed_server``
  holds the mixed-collection Earth Search search pages and items with a null ``datetime``.
  Without rustac these tests skip, except under ``CI=true`` where they fail.
* ``stac_proxy`` - a forwarding proxy in front of ``rustac_server`` that injects HTTP errors
  and logs requests (``tests/servers/stac_proxy.py``); session-wide, reset per test.
* ``rasteret_python`` - a Python 3.12 interpreter with ``rasteret==0.4.1`` (``$RASTERET_PYTHON``
  or the repository's ``.venv-rasteret``, which ``.ci/run`` creates) for round trips with the
  reference itself. Skips when missing, except under ``CI=true`` where it fails.
* ``pgstac_api`` - stac-fastapi-pgstac with the transactions extension on a private
  PostgreSQL + PostGIS cluster, pgstac loaded with the shared Planetary Computer and Earth
  Search items (``tests/servers/pgstac_server.py``): ``query``, CQL2 ``filter``, token
  paging, and ``add_item`` between searches. Skips without PostgreSQL/PostGIS or the Python
  packages, except under ``CI=true`` where it fails.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from servers.moto_s3 import MotoS3, start_moto_s3
from servers.pgstac_server import (
    PgstacApi,
    PgstacUnavailableError,
    fixture_catalog,
    start_pgstac_api,
)
from servers.range_server import RangeServer
from servers.rustac_server import RustacServer, find_rustac, start_rustac
from servers.stac_proxy import StacProxy

#: ``/work/main/../shared/fixtures``: the shared fixture tree next to the repository.
SHARED_FIXTURES = Path(__file__).resolve().parents[1] / ".." / "shared" / "fixtures"
TIFF_FIXTURES = SHARED_FIXTURES / "tiff"
STAC_FIXTURES = SHARED_FIXTURES / "stac"
GEOPARQUET_FIXTURES = SHARED_FIXTURES / "geoparquet"

#: The reference implementation the round-trip tests run, and where ``.ci/run`` installs it.
RASTERET_VERSION = "0.4.1"
RASTERET_VENV_PYTHON = Path(__file__).resolve().parents[1] / ".venv-rasteret" / "bin" / "python"

#: Fixture files the storage tests and the S3 buckets use.
SAMPLE_TIFFS = ("rio-tiler/cog.tif", "cogeotiff/cog.tiff")


@pytest.fixture(scope="session")
def tiff_fixtures() -> Path:
    """The shared real-world TIFF fixtures; skip the test when they are not checked out."""
    if not TIFF_FIXTURES.is_dir():
        pytest.skip(f"shared TIFF fixtures not found at {TIFF_FIXTURES}")
    return TIFF_FIXTURES


@pytest.fixture(scope="session")
def range_server_session() -> Iterator[RangeServer]:
    """One range server for the whole run; shared fixtures served under ``/fixtures/``."""
    server = RangeServer().start()
    if TIFF_FIXTURES.is_dir():
        server.add_directory("/fixtures/", TIFF_FIXTURES)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def range_server(range_server_session: RangeServer) -> Iterator[RangeServer]:
    """The session range server with faults, counters and latency reset for this test."""
    range_server_session.reset()
    yield range_server_session
    range_server_session.reset()


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoS3]:
    """moto S3 for the whole run; sample TIFFs uploaded to every bucket when available."""
    # werkzeug logs every request at INFO; keep test output and caplog focused.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    moto = start_moto_s3()
    if TIFF_FIXTURES.is_dir():
        for name in SAMPLE_TIFFS:
            data = (TIFF_FIXTURES / name).read_bytes()
            for bucket in (moto.public_bucket, moto.private_bucket, moto.requester_pays_bucket):
                moto.put(bucket, f"cogs/{name}", data)
    try:
        yield moto
    finally:
        moto.stop()


@pytest.fixture
def moto_s3(moto_server: MotoS3, monkeypatch: pytest.MonkeyPatch) -> MotoS3:
    """moto S3 with dummy AWS credentials in the environment for this test only.

    Real credentials (env, profiles, instance metadata) are masked so that nothing a test
    does can reach or leak them.
    """
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", moto_server.key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", moto_server.secret)
    monkeypatch.setenv("AWS_DEFAULT_REGION", moto_server.region)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws-credentials")
    for name in ("AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_PROFILE", "AWS_ROLE_ARN"):
        monkeypatch.delenv(name, raising=False)
    return moto_server


def _missing_requirement(reason: str) -> None:
    """Skip locally; under CI a missing server is a broken setup, so fail loudly instead."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: required, not skipped)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def rasteret_python() -> str:
    """The interpreter of a Python 3.12 environment with ``rasteret==0.4.1`` installed."""
    python = os.environ.get("RASTERET_PYTHON") or str(RASTERET_VENV_PYTHON)
    if not Path(python).is_file():
        _missing_requirement(
            f"no rasteret {RASTERET_VERSION} environment at {python} (set RASTERET_PYTHON or "
            "create .venv-rasteret as .ci/run does)"
        )
    probe = subprocess.run(
        [python, "-c", "import rasteret; print(rasteret.__version__)"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    found = probe.stdout.strip()
    if probe.returncode != 0 or found != RASTERET_VERSION:
        _missing_requirement(
            f"{python} does not provide rasteret {RASTERET_VERSION} "
            f"(found {found or probe.stderr.strip()[-200:]!r})"
        )
    return python


@pytest.fixture(scope="session")
def stac_fixtures() -> Path:
    """The shared real-world STAC JSON fixtures (``../shared/fixtures/stac``)."""
    if not STAC_FIXTURES.is_dir():
        _missing_requirement(f"shared STAC fixtures not found at {STAC_FIXTURES}")
    return STAC_FIXTURES


@pytest.fixture(scope="session")
def rustac_executable() -> str:
    executable = find_rustac()
    if executable is None:
        _missing_requirement("rustac is not installed (pip install rustac)")
    assert executable is not None
    return executable


@pytest.fixture(scope="session")
def rustac_server(
    rustac_executable: str, stac_fixtures: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RustacServer]:
    """rustac with Earth Search ``sentinel-2-c1-l2a`` (10 items, with their Collection) and
    Planetary Computer ``sentinel-2-l2a`` / ``landsat-c2-l2`` (100 items each, geoparquet)."""
    hrefs = [
        stac_fixtures / "earth-search" / "sentinel-2-c1-l2a_collection.json",
        stac_fixtures / "earth-search" / "sentinel-2-c1-l2a_item-collection_10.json",
        GEOPARQUET_FIXTURES / "pc_sentinel-2-l2a_100.parquet",
        GEOPARQUET_FIXTURES / "pc_landsat-c2-l2_100.parquet",
    ]
    server = start_rustac(rustac_executable, hrefs, log_dir=tmp_path_factory.mktemp("rustac"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def rustac_mixed_server(
    rustac_executable: str, stac_fixtures: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RustacServer]:
    """rustac with the two real Earth Search search pages (sentinel-1-grd, sentinel-2-l1c,
    -l2a and -c1-l2a items: properties differ in presence and type between collections) and
    the Planetary Computer IO LULC items, whose ``datetime`` is null."""
    work = tmp_path_factory.mktemp("rustac-mixed")
    # The PC file is a bare JSON array of Items; rustac loads ItemCollections.
    lulc = json.loads(
        (stac_fixtures / "planetary-computer" / "io-lulc-annual-v02_items_4.json").read_text()
    )
    lulc_path = work / "io-lulc-annual-v02.json"
    lulc_path.write_text(json.dumps({"type": "FeatureCollection", "features": lulc}))
    hrefs = [
        stac_fixtures / "earth-search" / "search_cql2_page1.json",
        stac_fixtures / "earth-search" / "search_cql2_page2.json",
        lulc_path,
    ]
    server = start_rustac(rustac_executable, hrefs, log_dir=work)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def stac_proxy_session(rustac_server: RustacServer) -> Iterator[StacProxy]:
    proxy = StacProxy(rustac_server.url).start()
    try:
        yield proxy
    finally:
        proxy.stop()


@pytest.fixture
def stac_proxy(stac_proxy_session: StacProxy) -> Iterator[StacProxy]:
    """The proxy in front of ``rustac_server`` with no failures and an empty log."""
    stac_proxy_session.reset()
    yield stac_proxy_session
    stac_proxy_session.reset()


@pytest.fixture(scope="session")
def pgstac_api(stac_fixtures: Path) -> Iterator[PgstacApi]:
    """stac-fastapi-pgstac (transactions enabled) serving ``servers.pgstac_server.FIXTURE_SETS``.

    Session-wide because a cluster plus pgstac costs seconds; tests that add items use
    collections of their own (``unique_collection_id``) so searches of the fixture
    collections see the same items in any test order.
    """
    collections, items = fixture_catalog(stac_fixtures)
    try:
        api = start_pgstac_api(collections, items)
    except PgstacUnavailableError as exc:
        _missing_requirement(f"pgstac test server unavailable: {exc}")
        raise  # unreachable: _missing_requirement skips or fails
    logging.getLogger(__name__).info(
        "pgstac %s (%s) API at %s, up in %.1fs",
        api.pgstac_version,
        api.cluster.binaries.version,
        api.url,
        api.startup_seconds,
    )
    try:
        yield api
    finally:
        api.stop()
