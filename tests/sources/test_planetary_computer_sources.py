"""The Planetary Computer registry entries: band maps that match PC's real items, and the
signer they select wherever storage is built (source resolution, both builders)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rasteret_assets.ingest import RecordTableBuilder, StacCollectionBuilder
from rasteret_assets.ingest.headers.enrich import default_backend
from rasteret_assets.sources import CloudConfig, SourceSpec, get_source, resolve
from rasteret_assets.storage import PlanetaryComputerSigner

PC_ITEMS = (
    Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "stac" / "planetary-computer"
)
PC_STAC = "https://planetarycomputer.microsoft.com/api/stac/v1"


@pytest.mark.parametrize(
    ("source_id", "items"),
    [
        ("pc/sentinel-2-l2a", "sentinel-2-l2a_items_4.json"),
        ("pc/landsat-c2-l2", "landsat-c2-l2_items_4.json"),
        ("pc/io-lulc-annual-v02", "io-lulc-annual-v02_items_4.json"),
    ],
)
def test_band_maps_name_assets_of_real_pc_items(source_id: str, items: str) -> None:
    path = PC_ITEMS / items
    if not path.exists():
        pytest.skip(f"shared fixture {path} not found")
    source = get_source(source_id)
    assert source.stac_api == PC_STAC and source.cloud.url_signer == "planetary-computer"
    for item in json.loads(path.read_text()):
        assert item["collection"] == source.collection
        missing = set(source.band_map.values()) - set(item["assets"])
        assert not missing, f"{item['id']}: no asset {sorted(missing)}"


def test_sentinel2_band_codes_are_pc_asset_keys() -> None:
    band_map = get_source("pc/sentinel-2-l2a").band_map
    assert band_map["B04"] == "B04" and band_map["B8A"] == "B8A" and band_map["SCL"] == "SCL"
    assert len(band_map) == 13


def test_a_source_searching_pc_signs_without_a_registry_entry() -> None:
    spec = SourceSpec(
        name="lulc",
        kind="stac_api",
        location=PC_STAC,
        collection="io-lulc-annual-v02",
        band_map={"LULC": "data"},
        start_month="2022-01",
    )
    assert resolve(spec).storage_options["url_signer"] == "planetary-computer"
    earth_search = spec.model_copy(update={"location": "https://earth-search.aws.element84.com/v1"})
    assert "url_signer" not in resolve(earth_search).storage_options


def test_resolved_pc_source_signs_and_keeps_its_own_settings() -> None:
    resolved = resolve(
        SourceSpec(
            name="landsat_pc",
            kind="stac_api",
            location=PC_STAC,
            data_source="pc/landsat-c2-l2",
            start_month="2024-01",
            storage_options={"sas_renew_before": 120},
        )
    )
    assert resolved.collection == "landsat-c2-l2"
    assert dict(resolved.storage_options) == {
        "url_signer": "planetary-computer",
        "sas_renew_before": 120,
    }


def test_builders_sign_pc_sources_and_only_them(tmp_path: Path) -> None:
    def signer(cloud: CloudConfig | None) -> object:
        return default_backend(1, cloud).signer

    pc = StacCollectionBuilder(data_source="pc/sentinel-2-l2a", stac_api="")
    assert pc.stac_api == PC_STAC
    assert isinstance(signer(pc.cloud_config), PlanetaryComputerSigner)
    earth_search = StacCollectionBuilder(data_source="sentinel-2-l2a", stac_api="")
    assert signer(earth_search.cloud_config) is None
    # Any search of PC's API is signed, registered source or not (as the reference does).
    custom = StacCollectionBuilder(data_source="", stac_api=PC_STAC, band_map={"red": "B04"})
    assert isinstance(signer(custom.cloud_config), PlanetaryComputerSigner)

    table = RecordTableBuilder(
        tmp_path / "t.parquet", data_source="pc/landsat-c2-l2", enrich_cog=True
    )
    assert isinstance(signer(table._cloud()), PlanetaryComputerSigner)
    unregistered = RecordTableBuilder(tmp_path / "t.parquet", enrich_cog=True)
    assert signer(unregistered._cloud()) is None
