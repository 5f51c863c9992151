"""A source whose COGs live on a real S3-compatible server (moto), with the workspace there
too: no state on local disk, so any executor or machine can run any month."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pyarrow.compute as pc
import pytest
from servers.moto_s3 import MotoS3

from rasteret_assets.collection import Collection
from rasteret_assets.defs.assets import build_source_assets
from rasteret_assets.defs.resources import (
    ConcurrencyResource,
    StorageResource,
    WorkspaceResource,
)
from rasteret_assets.sources import DEMO_CATALOG, SourceSpec, resolve


def test_assets_and_workspace_on_s3(
    moto_s3: MotoS3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # a relative local write would land here
    items = DEMO_CATALOG.parent / "items"
    for cog in items.rglob("*.tif"):
        moto_s3.put(moto_s3.private_bucket, f"demo/{cog.relative_to(items)}", cog.read_bytes())
    source = resolve(
        SourceSpec(
            name="demo_s3",
            kind="static_catalog",
            location=str(DEMO_CATALOG),
            band_map={"red": "red", "nir": "nir"},
            url_rewrite_patterns={f"{items}/": f"s3://{moto_s3.private_bucket}/demo/"},
            start_month="2024-01",
        )
    )
    s3 = {
        "key": moto_s3.key_id,
        "secret": moto_s3.secret,
        "client_kwargs": {"endpoint_url": moto_s3.endpoint_url, "region_name": moto_s3.region},
    }
    root = f"s3://{moto_s3.public_bucket}/workspace"
    resources = {
        "workspace": WorkspaceResource(root=root, storage_options=s3),
        "storage": StorageResource(
            key=moto_s3.key_id,
            secret=moto_s3.secret,
            endpoint_url=moto_s3.endpoint_url,
            region=moto_s3.region,
        ),
        "concurrency": ConcurrencyResource(max_concurrent=4, max_per_host=4),
    }
    result = dg.materialize(
        build_source_assets(source), partition_key="2024-03-01", resources=resources
    )
    assert result.success
    keys = {
        o["Key"] for o in moto_s3.client().list_objects_v2(Bucket=moto_s3.public_bucket)["Contents"]
    }
    assert "workspace/demo_s3/collection/year=2024/month=3/part-0.parquet" in keys
    assert "workspace/demo_s3/cog_headers/year=2024/month=3/headers.parquet" in keys
    assert not list(tmp_path.iterdir())
    table = Collection.open(f"{root}/demo_s3/collection", storage_options=s3).to_table()
    assert table.num_rows == 2
    hrefs = pc.struct_field(pc.struct_field(table.column("assets"), "red"), "href").to_pylist()
    assert all(h.startswith(f"s3://{moto_s3.private_bucket}/demo/") for h in hrefs)
    assert table.column("red_metadata").null_count == 0
    assert table.column("nir_metadata").null_count == 0
