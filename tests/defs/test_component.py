"""``rasteret_assets.RasterSource`` as another team adopts it: a fresh Dagster project whose
only dependency is this package, one ``defs.yaml`` scaffolded by ``dg``, checked by ``dg check
defs`` (errors point at the line) and materialized by ``dg launch`` into a real instance."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest
from dagster.components.core.component_tree import ComponentTree

from rasteret_assets.component import RasterSource
from rasteret_assets.sources import DEMO_CATALOG, SOURCES_ENV, demo_source

DG = str(Path(sys.executable).with_name("dg"))
REPO_ROOT = Path(__file__).resolve().parents[2]

PYPROJECT = """\
[project]
name = "adopter"
version = "0.1.0"
requires-python = ">=3.11"
dependencies = ["rasteret-assets"]

[tool.dg]
directory_type = "project"

[tool.dg.project]
root_module = "adopter"
"""

#: What ``dg scaffold project`` writes as the code location: the defs folder, nothing else.
DEFINITIONS = """\
from pathlib import Path

import dagster as dg


@dg.definitions
def defs() -> dg.Definitions:
    return dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
"""


def _dg(project: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """Run ``dg`` in ``project`` with this interpreter's environment; return its output."""
    environment = {
        **os.environ,
        "VIRTUAL_ENV": sys.prefix,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        # The project is not installed: its package is importable from its source folder.
        "PYTHONPATH": str(project / "src"),
        "NO_COLOR": "1",
        **(env or {}),
    }
    environment.pop(SOURCES_ENV, None)
    result = subprocess.run(
        [DG, *args],
        cwd=project,
        env=environment,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    output = result.stdout + result.stderr
    if result.returncode != 0:
        raise AssertionError(f"dg {' '.join(args)} exited {result.returncode}:\n{output[-4000:]}")
    return output


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "adopter"
    package = root / "src" / "adopter"
    (package / "defs").mkdir(parents=True)
    (root / "pyproject.toml").write_text(PYPROJECT)
    (package / "__init__.py").write_text("")
    (package / "defs" / "__init__.py").write_text("")
    (package / "definitions.py").write_text(DEFINITIONS)
    return root


def test_dg_lists_the_component_type(project: Path) -> None:
    assert "rasteret_assets.RasterSource" in _dg(project, "list", "components")


def test_a_fresh_project_scaffolds_checks_and_materializes_one_source(
    project: Path, tmp_path: Path
) -> None:
    _dg(
        project,
        *("scaffold", "defs", "rasteret_assets.RasterSource", "scenes"),
        *("--kind", "static_catalog", "--location", "{{ env.SCENES_CATALOG }}"),
    )
    defs_yaml = project / "src" / "adopter" / "defs" / "scenes" / "defs.yaml"
    text = defs_yaml.read_text()
    assert "type: rasteret_assets.RasterSource" in text and "{{ env.SCENES_CATALOG }}" in text
    env = {
        "SCENES_CATALOG": str(DEMO_CATALOG),
        "DAGSTER_HOME": str(tmp_path / "home"),
        "RASTERET_ASSETS_WORKSPACE": str(tmp_path / "workspace"),
    }
    (tmp_path / "home").mkdir()
    assert "All definitions loaded successfully" in _dg(project, "check", "defs", env=env)
    _dg(project, "launch", "--job", "scenes_monthly", "--partition", "2024-02-01", env=env)

    month = tmp_path / "workspace" / "scenes" / "collection" / "year=2024" / "month=2"
    table = pq.read_table(month / "part-0.parquet")
    assert table.num_rows == 2 and table.column("red_metadata").null_count == 0
    with dg.DagsterInstance.from_config(str(tmp_path / "home")) as instance:
        runs = instance.get_runs()
        assert [(r.job_name, r.status, r.tags.get("dagster/partition")) for r in runs] == [
            ("scenes_monthly", dg.DagsterRunStatus.SUCCESS, "2024-02-01")
        ]
        key = dg.AssetKey(["scenes", "collection"])
        assert instance.get_materialized_partitions(key) == {"2024-02-01"}


GOOD = f"""\
type: rasteret_assets.RasterSource
attributes:
  # the demo catalog, as a team would point at theirs
  name: scenes
  kind: static_catalog
  location: {DEMO_CATALOG}
  band_map:
    red: red
    nir: nir
"""


def _write_source(project: Path, change: tuple[str, str]) -> None:
    assert change[0] in GOOD
    folder = project / "src" / "adopter" / "defs" / "scenes"
    folder.mkdir()
    (folder / "defs.yaml").write_text(GOOD.replace(*change))


def test_dg_check_defs_points_at_the_line_of_the_mistake(project: Path) -> None:
    _write_source(project, ("kind: static_catalog", "kind: stac"))
    with pytest.raises(AssertionError) as failed:
        _dg(project, "check", "defs")
    assert "defs.yaml:5" in str(failed.value)
    assert "Input should be 'stac_api', 'static_catalog' or 'record_table'" in str(failed.value)


@pytest.mark.parametrize(
    ("change", "line", "message"),
    [
        (("name: scenes", "name: Scenes-1"), 4, r"must start with a letter"),
        (
            ("  band_map:", "  bbx: [1, 2, 3, 4]\n  band_map:"),
            7,
            r"attributes.bbx(.|\n)*Extra inputs are not permitted",
        ),
        (("    nir: nir", "    nir: nir\n  band_index_map: {swir: 2}"), 10, r"\['swir'\]"),
    ],
)
def test_every_kind_of_mistake_is_reported_at_its_line(
    project: Path,
    change: tuple[str, str],
    line: int,
    message: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Schema errors (unknown key), the spec's own validators (name) and what only the
    registry can tell (a band index for a band not in the band map) alike."""
    _write_source(project, change)
    monkeypatch.syspath_prepend(str(project / "src"))
    for name in [m for m in sys.modules if m == "adopter" or m.startswith("adopter.")]:
        monkeypatch.delitem(sys.modules, name)
    with pytest.raises(Exception) as failed:
        ComponentTree.for_project(project / "src" / "adopter").build_defs()
    text = "".join(
        str(e) for e in (failed.value, failed.value.__cause__, failed.value.__context__) if e
    )
    assert re.search(message, text), text
    assert f"defs.yaml:{line}" in text, text


def test_the_demo_is_a_component_instance() -> None:
    """``rasteret_assets/defs/demo/defs.yaml`` is the built-in demo source, field for field."""
    tree = ComponentTree.for_project(REPO_ROOT / "rasteret_assets")
    component = tree.load_component("demo", RasterSource)
    assert component.spec() == demo_source()
