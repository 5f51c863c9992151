"""Fixtures for the header-parser tests: a GDAL-written corpus and the shared real TIFFs.

* ``cog_corpus`` - ``[(name, path)]`` of the files :mod:`cog_corpus` writes (once per session,
  about 30 MB in a pytest temp dir, ~2 s).
* ``fixture_tiffs`` - ``[(name, path)]`` of every TIFF under ``../shared/fixtures/tiff``; tests
  skip when that folder is not checked out.

Test modules parametrize over :data:`CASES`, known at collection time, and resolve a case to
a path with the ``tiff_case`` fixture so the corpus is only generated when a corpus case runs.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
import tifffile

from .cog_corpus import VARIANTS, generate_corpus

#: ``/work/main/../shared/fixtures/tiff``: the real-world TIFFs next to the repository.
FIXTURE_TIFF_DIR = Path(__file__).resolve().parents[2] / ".." / "shared" / "fixtures" / "tiff"

# What a parse of a file must do.
PARSE = "parse"  # succeed and match the truth
NOT_TILED = "not_tiled"  # NotTiledError
UNSUPPORTED = "unsupported"  # UnsupportedTiffError (rotated ModelTransformation)
ANY_ERROR = "any_error"  # some TiffError: striped *and* rotated, either reason is right


@dataclass(frozen=True)
class Case:
    kind: str  # "corpus" or "fixture"
    name: str  # variant name, or the path relative to FIXTURE_TIFF_DIR
    expect: str

    @property
    def id(self) -> str:
        return f"{self.kind}:{self.name}"


def fixture_tiff_paths() -> list[Path]:
    if not FIXTURE_TIFF_DIR.is_dir():
        return []
    return sorted(p for p in FIXTURE_TIFF_DIR.rglob("*") if p.suffix.lower() in {".tif", ".tiff"})


def _fixture_name(path: Path) -> str:
    return path.relative_to(FIXTURE_TIFF_DIR).as_posix()


def _classify_fixture(path: Path) -> str:
    """Expected outcome from tifffile's view of IFD0 (tiled? rotated ModelTransformation?)."""
    with warnings.catch_warnings(), tifffile.TiffFile(path) as tif:
        warnings.simplefilter("ignore")
        tif.pages.useframes = False
        tiled = all(322 in page.tags and 324 in page.tags for page in tif.pages)
        matrix = tif.pages[0].tags.get(34264)
        rotated = matrix is not None and (matrix.value[1] != 0 or matrix.value[4] != 0)
    if not tiled:
        return ANY_ERROR if rotated else NOT_TILED
    return UNSUPPORTED if rotated else PARSE


@cache
def all_cases() -> tuple[Case, ...]:
    corpus = [Case("corpus", v.name, v.expect) for v in VARIANTS]
    fixtures = [
        Case("fixture", _fixture_name(p), _classify_fixture(p)) for p in fixture_tiff_paths()
    ]
    return (*corpus, *fixtures)


def cases(*expect: str) -> list[pytest.ParameterSet]:
    """``pytest.param`` for every case whose expected outcome is one of ``expect``."""
    return [pytest.param(c, id=c.id) for c in all_cases() if c.expect in expect]


@pytest.fixture(scope="session")
def cog_corpus(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, Path]]:
    """The GDAL-written corpus, generated once per session."""
    return generate_corpus(tmp_path_factory.mktemp("cog_corpus"))


@pytest.fixture(scope="session")
def fixture_tiffs() -> list[tuple[str, Path]]:
    """Every shared real-world TIFF; skips when ``../shared/fixtures/tiff`` is absent."""
    paths = fixture_tiff_paths()
    if not paths:
        pytest.skip(f"shared TIFF fixtures not found at {FIXTURE_TIFF_DIR}")
    return [(_fixture_name(p), p) for p in paths]


@pytest.fixture
def case_path(request: pytest.FixtureRequest) -> Path:
    """Path of the test's ``case`` parameter (generating the corpus only when needed)."""
    case: Case = request.getfixturevalue("case")
    if case.kind == "corpus":
        corpus = dict(request.getfixturevalue("cog_corpus"))
        return corpus[case.name]
    return FIXTURE_TIFF_DIR / case.name
