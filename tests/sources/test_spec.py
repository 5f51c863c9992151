"""A source is resolved once: an entry plus the real data-source registry give every setting
the later steps use, entry values winning over registry presets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rasteret_assets.sources import (
    ResolvedSource,
    SourcesConfigError,
    SourceSpec,
    get_source,
    list_sources,
    load_sources,
    resolve,
)

S2_REWRITE = {"https://sentinel-cogs.s3.us-west-2.amazonaws.com/": "s3://sentinel-cogs/"}


def spec(**fields: Any) -> SourceSpec:
    base: dict[str, Any] = {
        "name": "s2",
        "kind": "stac_api",
        "location": "https://stac.example.test/v1",
        "data_source": "sentinel-2-l2a",
        "start_month": "2024-01",
    }
    return SourceSpec(**(base | fields))


def test_a_registered_data_source_alone_fills_in_bands_cloud_and_collection() -> None:
    source = resolve(spec())
    registry = get_source("sentinel-2-l2a")
    assert source.registry_entry == registry
    assert source.band_codes == (
        "B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12", "SCL",
    )  # fmt: skip
    assert dict(source.band_map or {}) == dict(registry.band_map)
    assert source.band_index_map == {}
    assert source.collection == "sentinel-2-l2a"
    assert source.data_source == "sentinel-2-l2a"
    assert dict(source.storage_options) == {"anon": True, "region": "us-west-2"}
    assert dict(source.url_rewrites) == S2_REWRITE


def test_requester_pays_is_carried_into_storage_options() -> None:
    source = resolve(spec(data_source="landsat-c2-l2"))
    assert dict(source.storage_options) == {
        "anon": False,
        "region": "us-west-2",
        "requester_pays": True,
    }
    assert "qa_pixel" in source.band_codes


def test_an_explicit_band_map_replaces_the_registrys_whole() -> None:
    source = resolve(spec(band_map={"red": "red", "nir": "nir"}))
    assert dict(source.band_map or {}) == {"red": "red", "nir": "nir"}
    assert source.band_codes == ("red", "nir")
    # the rest of the registry entry still applies
    assert dict(source.url_rewrites) == S2_REWRITE
    assert source.storage_options["anon"] is True


def test_storage_options_merge_key_by_key_with_the_entry_winning() -> None:
    source = resolve(spec(storage_options={"region": "eu-central-1", "read_timeout": 5.0}))
    assert dict(source.storage_options) == {
        "anon": True,
        "region": "eu-central-1",
        "read_timeout": 5.0,
    }


def test_url_rewrites_merge_key_by_key_with_the_entry_winning() -> None:
    registry_prefix = next(iter(S2_REWRITE))
    source = resolve(
        spec(
            url_rewrite_patterns={
                registry_prefix: "s3://mirror/",
                "https://other.example.test/": "s3://other/",
            }
        )
    )
    assert dict(source.url_rewrites) == {
        registry_prefix: "s3://mirror/",
        "https://other.example.test/": "s3://other/",
    }


def test_an_explicit_collection_wins_and_only_stac_apis_take_the_registrys() -> None:
    assert resolve(spec(collection="mine")).collection == "mine"
    static = resolve(spec(kind="static_catalog", location="catalog.json"))
    assert static.collection is None
    assert static.band_codes[0] == "B01"


def test_an_unknown_data_source_without_band_map_names_the_source_and_the_known_ids() -> None:
    with pytest.raises(SourcesConfigError) as caught:
        resolve(spec(name="mystery", data_source="no-such-source"))
    message = str(caught.value)
    assert "'mystery'" in message and "'no-such-source'" in message
    for known in list_sources():
        assert known in message


@pytest.mark.parametrize("kind", ["stac_api", "static_catalog"])
def test_no_band_map_and_no_data_source_is_an_error_naming_the_source(kind: str) -> None:
    with pytest.raises(SourcesConfigError, match=r"source 'bare'.*band_map") as caught:
        resolve(spec(name="bare", kind=kind, data_source=""))
    assert "sentinel-2-l2a" in str(caught.value)


def test_an_unknown_data_source_with_a_band_map_is_just_a_label() -> None:
    source = resolve(spec(data_source="my-archive", band_map={"red": "B04"}))
    assert source.registry_entry is None and source.data_source == "my-archive"
    assert dict(source.storage_options) == {} and dict(source.url_rewrites) == {}
    assert source.collection is None


def test_without_a_data_source_the_name_labels_the_records() -> None:
    assert resolve(spec(data_source="", band_map={"red": "B04"})).data_source == "s2"


def test_a_record_table_with_only_a_registered_data_source_is_accepted() -> None:
    source = resolve(spec(name="table", kind="record_table", location="s3://bucket/records/"))
    assert source.band_codes[:2] == ("B01", "B02")
    assert source.collection is None
    assert dict(source.url_rewrites) == S2_REWRITE


def test_a_record_table_with_an_unknown_data_source_names_it() -> None:
    with pytest.raises(SourcesConfigError, match=r"source 'table'.*'nope'.*sentinel-2-l2a"):
        resolve(spec(name="table", kind="record_table", location="t.parquet", data_source="nope"))


def test_a_record_table_href_column_has_no_band_map() -> None:
    source = resolve(
        spec(
            name="table",
            kind="record_table",
            location="t.parquet",
            data_source="",
            href_column="href",
            band_index_map={"red": 0, "nir": 3},
        )
    )
    assert source.band_map is None
    assert source.band_codes == ("red", "nir")
    assert dict(source.band_index_map) == {"red": 0, "nir": 3}
    assert source.href_column == "href"


def test_a_band_index_map_outside_the_band_map_names_the_source() -> None:
    with pytest.raises(SourcesConfigError, match=r"source 's2'.*band_index_map.*'swir'"):
        resolve(spec(band_map={"red": "red"}, band_index_map={"swir": 1}))
    with pytest.raises(SourcesConfigError, match=r"source 's2'.*band_index_map.*'X'"):
        resolve(spec(band_index_map={"X": 0}))  # against the registry's band map


@pytest.mark.parametrize("key", ["url_rewrite_patterns", "url_policy"])
def test_storage_options_cannot_carry_rewrites_or_the_url_policy(key: str) -> None:
    with pytest.raises(SourcesConfigError, match=rf"source 's2'.*storage_options.*{key}"):
        resolve(spec(storage_options={key: {}}))


def test_resolve_is_pure() -> None:
    entry = spec(storage_options={"read_timeout": 5.0}, url_rewrite_patterns={"a/": "b/"})
    first, second = resolve(entry), resolve(entry)
    assert first == second
    assert first.spec is entry
    assert entry.storage_options == {"read_timeout": 5.0}  # the spec is left as written
    assert entry.band_map is None


def test_resolved_mappings_are_read_only() -> None:
    source = resolve(spec())
    with pytest.raises(TypeError):
        source.storage_options["anon"] = False  # type: ignore[index]
    with pytest.raises(TypeError):
        source.url_rewrites["x"] = "y"  # type: ignore[index]


def test_the_specs_plain_fields_read_through() -> None:
    source = resolve(
        spec(
            owners=["team:x"],
            bbox=(1, 2, 3, 4),
            query={"eo:cloud_cover": {"lt": 10}},
            min_header_coverage=0.5,
        )
    )
    assert source.owners == ["team:x"] and source.start_month == "2024-01"
    assert source.bbox == (1.0, 2.0, 3.0, 4.0)
    assert source.query == {"eo:cloud_cover": {"lt": 10}}
    assert source.min_header_coverage == 0.5
    assert source.location_filesystem() is None


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sources.yaml"
    path.write_text(text)
    return path


def test_a_yaml_entry_with_only_a_data_source_loads_resolved(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "sources:\n"
        "  - name: s2\n    kind: stac_api\n    location: https://stac.example.test/v1\n"
        "    data_source: sentinel-2-l2a\n    start_month: '2024-01'\n",
    )
    (source,) = load_sources(path)
    assert isinstance(source, ResolvedSource)
    assert source.band_codes[-1] == "SCL" and source.storage_options["anon"] is True


def test_a_yaml_entry_that_does_not_resolve_names_the_file_and_the_source(
    tmp_path: Path,
) -> None:
    path = write(
        tmp_path,
        "sources:\n"
        "  - name: good\n    kind: stac_api\n    location: https://stac.example.test/v1\n"
        "    data_source: sentinel-2-l2a\n    start_month: '2024-01'\n"
        "  - name: bad\n    kind: stac_api\n    location: https://stac.example.test/v1\n"
        "    data_source: sentinel-3\n    start_month: '2024-01'\n",
    )
    with pytest.raises(SourcesConfigError) as caught:
        load_sources(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: source 'bad': field 'data_source': ")
    assert "'sentinel-3'" in message and "sentinel-2-l2a" in message
