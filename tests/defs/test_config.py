"""The sources file: typed validation at load time, errors naming the entry and the field,
seen both from Python and from the CLIs a user runs (``dagster definitions validate``,
``dg check defs``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from rasteret_assets.sources import SOURCES_ENV, SourcesConfigError, load_sources

REPO_ROOT = Path(__file__).resolve().parents[2]

VALID = """\
sources:
  - name: landsat
    kind: stac_api
    location: https://stac.example.test/v1
    collection: landsat-c2-l2
    band_map: {red: red, nir: nir08}
    start_month: "2024-01"
    bbox: [10, 45, 11, 46]
    storage_options: {requester_pays: true}
  - name: table
    kind: record_table
    location: s3://bucket/records/
    band_map: {red: B04}
    location_options: {anon: true}
    start_month: "2023-06"
    min_header_coverage: 0.5
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sources.yaml"
    path.write_text(text)
    return path


def test_a_valid_file_loads_typed_sources(tmp_path: Path) -> None:
    landsat, table = load_sources(write(tmp_path, VALID))
    assert landsat.kind == "stac_api" and landsat.band_codes == ("red", "nir")
    assert landsat.bbox == (10.0, 45.0, 11.0, 46.0)
    assert table.kind == "record_table" and table.min_header_coverage == 0.5
    assert table.location_options == {"anon": True}


def test_without_a_file_the_demo_source_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SOURCES_ENV, raising=False)
    (demo,) = load_sources()
    assert demo.name == "demo" and Path(demo.location).is_file()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('start_month: "2023-06"', 'start_month: "2023-13"'), r"'table'.*start_month"),
        (("min_header_coverage: 0.5", "min_header_coverage: 1.5"), r"'table'.*min_header_cov"),
        (("kind: stac_api", "kind: stac"), r"'landsat'.*field 'kind'"),
        (("bbox: [10, 45, 11, 46]", "bbx: [10, 45, 11, 46]"), r"'landsat'.*field 'bbx'"),
        (("name: table", "name: landsat"), r"unique.*landsat"),
        (("name: table", "name: Table-1"), r"'Table-1'.*field 'name'"),
    ],
)
def test_a_bad_entry_names_the_entry_and_the_field(
    tmp_path: Path, change: tuple[str, str], message: str
) -> None:
    with pytest.raises(SourcesConfigError, match=message):
        load_sources(write(tmp_path, VALID.replace(*change)))


def run_cli(args: list[str], sources: Path | None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "VIRTUAL_ENV": sys.prefix}
    env.pop(SOURCES_ENV, None)
    if sources is not None:
        env[SOURCES_ENV] = str(sources)
    return subprocess.run(
        args, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_dagster_definitions_validate_reports_the_bad_entry(tmp_path: Path) -> None:
    bad = write(tmp_path, VALID.replace('start_month: "2023-06"', "start_month: June"))
    result = run_cli([sys.executable, "-m", "dagster", "definitions", "validate"], bad)
    assert result.returncode != 0
    assert "source 'table'" in result.stderr + result.stdout
    assert "start_month" in result.stderr + result.stdout


def test_dg_check_defs_loads_the_project() -> None:
    dg = Path(sys.executable).with_name("dg")  # dagster-dg-cli, a dev dependency
    result = run_cli([str(dg), "check", "defs", "--use-active-venv"], None)
    assert result.returncode == 0, result.stderr
    assert "All definitions loaded successfully" in result.stdout + result.stderr
