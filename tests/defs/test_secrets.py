"""No credential survives a run: planted secrets are searched for in everything it writes.

A record table whose hrefs are presigned (S3 ``X-Amz-Signature``, Azure SAS ``sig``) or carry
``user:password@`` goes through the whole graph against a real range server, with an S3
secret given to the storage resource as an ``EnvVar``. Afterwards every file under the
Dagster instance directory (run and event storage, SQLite) and the workspace (Parquet, read
back decoded, since its pages are compressed), and everything logged or printed, is searched
for each secret.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from month_records import scan_month
from servers.range_server import RangeServer

from rasteret_assets.defs.assets import build_source_assets
from rasteret_assets.defs.resources import (
    ConcurrencyResource,
    StorageResource,
    WorkspaceResource,
)
from rasteret_assets.ingest.normalize.credentials import strip_credentials
from rasteret_assets.sources import DEMO_CATALOG, SourceSpec, demo_source, resolve

SIGNATURE = "PLANTEDsignature0123456789abcdef"
ACCESS_KEY = "AKIAPLANTEDACCESSKEY"
SAS = "PLANTEDsas%2Bsig%3D"
PASSWORD = "PLANTEDpassw0rd"
S3_SECRET = "PLANTEDs3SecretKey/abc+def"
SECRETS = (SIGNATURE, ACCESS_KEY, "PLANTEDsas", PASSWORD, S3_SECRET)


def signed_records(server: RangeServer) -> pa.Table:
    """The demo's February records with hrefs onto the server, each band signed differently."""
    items = DEMO_CATALOG.parent / "items"
    server.add_directory("/cogs", items)
    table, _ = scan_month(
        resolve(demo_source()), datetime(2024, 2, 1, tzinfo=UTC), datetime(2024, 3, 1, tzinfo=UTC)
    )
    assert table is not None
    host = server.base_url.split("://", 1)[1]
    signing = {
        "red": lambda path: (
            f"http://{host}{path}?X-Amz-Credential={ACCESS_KEY}%2F20240201"
            f"&X-Amz-Signature={SIGNATURE}&versionId=7"
        ),
        "green": lambda path: f"http://reader:{PASSWORD}@{host}{path}",
        "nir": lambda path: f"http://{host}{path}?sv=2021-08-06&sig={SAS}&se=2030-01-01",
    }
    assets = table.column("assets").combine_chunks()
    bands = []
    for band in assets.type:
        child = assets.field(band.name)
        paths = [
            "/cogs/" + str(Path(h).relative_to(items))
            for h in pc.struct_field(child, "href").to_pylist()
        ]
        hrefs = pa.array([signing[band.name](p) for p in paths])
        bands.append(
            pa.StructArray.from_arrays([hrefs, child.field("band_index")], ["href", "band_index"])
        )
    signed = pa.StructArray.from_arrays(bands, [b.name for b in assets.type])
    table = table.set_column(table.column_names.index("assets"), "assets", signed)
    return table.drop_columns([c for c in ("year", "month") if c in table.column_names])


def every_text_written(root: Path) -> str:
    """Raw bytes of every file, plus Parquet decoded (its pages are compressed)."""
    texts = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        texts.append(path.read_bytes().decode("latin-1"))
        if path.suffix == ".parquet" or path.name.endswith(".parquet.staged"):
            texts.append(repr(pq.read_table(path).to_pylist()))
    return "\n".join(texts)


def test_a_run_writes_and_logs_no_credential(
    range_server: RangeServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    table_path = tmp_path / "input" / "records.parquet"
    table_path.parent.mkdir()
    pq.write_table(signed_records(range_server), table_path)
    monkeypatch.setenv("PLANTED_S3_SECRET", S3_SECRET)
    source = resolve(
        SourceSpec(
            name="signed",
            kind="record_table",
            location=str(table_path),
            band_map={"red": "red", "green": "green", "nir": "nir"},
            start_month="2024-01",
        )
    )
    written = tmp_path / "written"
    resources = {
        "workspace": WorkspaceResource(root=str(written / "workspace")),
        "storage": StorageResource(key="AKIAEXAMPLE", secret=dg.EnvVar("PLANTED_S3_SECRET")),
        "concurrency": ConcurrencyResource(max_concurrent=4, max_per_host=4),
    }
    home = written / "dagster_home"
    home.mkdir(parents=True)
    with dg.DagsterInstance.local_temp(tempdir=str(home)) as instance:
        for _ in range(2):  # the second run reuses the stored headers
            result = dg.materialize(
                build_source_assets(source),
                partition_key="2024-02-01",
                resources=resources,
                instance=instance,
            )
            assert result.success
        records = result.asset_materializations_for_node("signed__records")
        assert records[0].metadata["hrefs_credentials_removed"].value == 6

    published = written / "workspace" / "signed" / "collection"
    collection = pq.read_table(next(published.rglob("*.parquet")))
    assert collection.num_rows == 2
    for band in ("red", "green", "nir"):
        assert collection.column(f"{band}_metadata").null_count == 0, band
    red = pc.struct_field(pc.struct_field(collection.column("assets"), "red"), "href")
    assert all(h.endswith("?versionId=7") for h in red.to_pylist())

    out, err = capfd.readouterr()
    everything = "\n".join([every_text_written(written), caplog.text, out, err])
    assert everything.count("/cogs/") > 0  # the search does see what the run wrote
    for secret in SECRETS:
        for form in {secret, quote(secret, safe="")}:
            assert form not in everything, f"planted secret {form!r} found in run output"


@pytest.mark.parametrize(
    ("href", "expected"),
    [
        (
            "https://b.s3.amazonaws.com/k.tif?X-Amz-Algorithm=A&X-Amz-Signature=s&partNumber=1",
            "https://b.s3.amazonaws.com/k.tif?partNumber=1",
        ),
        (
            "https://a.blob.core.windows.net/c/k.tif?sv=1&SIG=x&se=2",
            "https://a.blob.core.windows.net/c/k.tif",
        ),
        ("https://u:p@host:8443/k.tif#frag", "https://host:8443/k.tif#frag"),
        ("https://host/k.tif?version=2", "https://host/k.tif?version=2"),
        ("/data/odd?name@x.tif", "/data/odd?name@x.tif"),
    ],
)
def test_strip_credentials_keeps_the_address(href: str, expected: str) -> None:
    assert strip_credentials(href) == expected
