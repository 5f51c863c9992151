"""A Planetary Computer source through the Dagster graph: the registry entry's signer signs
every header read, one token per container, and no token reaches anything the run writes.

The records are the real PC stac-geoparquet fixture (100 Sentinel-2 L2A items); their Azure
hrefs are rewritten to a local blob store that refuses unsigned requests (403), and the SAS
token endpoint is a local server playing PC's (``servers.planetary_computer``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import quote, urlsplit

import dagster as dg
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from servers.planetary_computer import SasTokenServer
from servers.range_server import RangeServer

from defs.test_secrets import every_text_written
from rasteret_assets.collection import Collection
from rasteret_assets.defs.assets import build_source_assets
from rasteret_assets.defs.resources import (
    ConcurrencyResource,
    StorageResource,
    WorkspaceResource,
)
from rasteret_assets.sources import SourceSpec, resolve
from rasteret_assets.storage import rewrite_url

S2_100 = (
    Path(__file__).resolve().parents[3] / "shared/fixtures/geoparquet/pc_sentinel-2-l2a_100.parquet"
)
BLOB_HOST = "https://sentinel2l2a01.blob.core.windows.net/"
BANDS = ("B04", "B08")
KEY = "PLANTEDpcSubscriptionKey42"


def test_pc_month_is_read_signed_and_stored_unsigned(
    tiff_fixtures: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    if not S2_100.exists():
        pytest.skip(f"shared fixture {S2_100} not found")
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("PLANTED_PC_KEY", KEY)
    table = pq.read_table(S2_100, columns=["assets"])
    with SasTokenServer() as tokens, RangeServer() as blobs:
        blobs.gate = tokens.blob_gate
        blobs.add_file("/cog.tif", tiff_fixtures / "rio-tiler/cog_ovr.tif")
        patterns = {BLOB_HOST: blobs.url("/sentinel2l2a01/")}
        for band in BANDS:
            hrefs = pc.struct_field(pc.struct_field(table.column("assets"), band), "href")
            for href in hrefs.to_pylist():
                blobs.add_alias(urlsplit(rewrite_url(href, patterns)).path, "/cog.tif")
        source = resolve(
            SourceSpec(
                name="pc_s2",
                kind="record_table",
                location=str(S2_100),
                data_source="pc/sentinel-2-l2a",
                band_map={band: band for band in BANDS},
                start_month="2024-03",
                url_rewrite_patterns=patterns,
                storage_options={"azure_blob_endpoints": [blobs.base_url]},
            )
        )
        assert source.storage_options["url_signer"] == "planetary-computer"
        written = tmp_path / "written"
        resources = {
            "workspace": WorkspaceResource(root=str(written / "workspace")),
            "storage": StorageResource(
                pc_sas_url=tokens.sas_url, pc_subscription_key=dg.EnvVar("PLANTED_PC_KEY")
            ),
            "concurrency": ConcurrencyResource(max_concurrent=8, max_per_host=8),
        }
        home = written / "dagster_home"
        home.mkdir(parents=True)
        with dg.DagsterInstance.local_temp(tempdir=str(home)) as instance:
            result = dg.materialize(
                build_source_assets(source),
                partition_key="2024-05-01",
                resources=resources,
                instance=instance,
            )
        assert result.success

    published = Collection.open(written / "workspace" / "pc_s2" / "collection").to_table()
    assert published.num_rows == 13
    for band in BANDS:
        assert published.column(f"{band}_metadata").null_count == 0, band
    assert tokens.issued == {("sentinel2l2a01", "sentinel2-l2"): 1}
    assert tokens.refused == [] and tokens.accepted >= 2 * 13
    assert tokens.subscription_keys == [KEY]

    out, err = capfd.readouterr()
    everything = "\n".join([every_text_written(written), caplog.text, out, err])
    assert everything.count("/sentinel2l2a01/sentinel2-l2/") > 0  # the search sees hrefs
    assert "sig=" not in everything and "sig%3D" not in everything
    for secret in [*tokens.signatures, KEY]:
        for form in {secret, quote(secret, safe="")}:
            assert form not in everything, f"{form!r} found in run output"
