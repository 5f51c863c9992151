"""Shared pytest fixtures: real servers on 127.0.0.1 and the shared TIFF fixtures.

* ``range_server`` - an HTTP range server with fault injection and request counting
  (``tests/servers/range_server.py``); session-wide, reset before each test.
* ``moto_s3`` - a moto S3 server with public, private and requester-pays buckets
  (``tests/servers/moto_s3.py``); session-wide, dummy AWS env set per test.
* ``tiff_fixtures`` - ``../shared/fixtures/tiff`` (tests skip when it is absent).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from servers.moto_s3 import MotoS3, start_moto_s3
from servers.range_server import RangeServer

#: ``/work/main/../shared/fixtures``: the shared fixture tree next to the repository.
SHARED_FIXTURES = Path(__file__).resolve().parents[1] / ".." / "shared" / "fixtures"
TIFF_FIXTURES = SHARED_FIXTURES / "tiff"

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
