"""The sustained header fuzzer (benchmarks/fuzz_header.py) must keep working between runs.

A short real run through the command line checks the whole harness end to end: seeds from the
corpus and fixtures, every mutation kind, all three parse paths, the summary. The seed
re-layouts are checked against the parser, and crash detection is checked by planting faults
the real parser no longer has.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import fuzz_header  # noqa: E402
import fuzz_paths  # noqa: E402
from fuzz_mutations import Mutator  # noqa: E402
from fuzz_seeds import Seed, make_seeds  # noqa: E402

from rasteret_assets.tiff import TiffError, TiffHeader, parse_tiff_bytes  # noqa: E402

from .conftest import fixture_tiff_paths  # noqa: E402

MUTATION_KINDS = 22  # the mutator's kinds, plus random_bytes inputs


@pytest.fixture(scope="module")
def seeds(cog_corpus: list[tuple[str, Path]]) -> list[Seed]:
    files = list(cog_corpus) + [(p.name, p) for p in fixture_tiff_paths()]
    return make_seeds(files, prefix_kib=64)


def _verdict(data: bytes) -> object:
    try:
        header = parse_tiff_bytes(data)
    except TiffError as error:
        return error.error_class
    levels = fuzz_paths._fingerprint(header)[2]
    return [level[:1] + level[2:] for level in levels], repr(header.geo)  # IFD offsets move


def test_relaid_out_seeds_parse_like_their_originals(seeds: list[Seed]) -> None:
    """Byte-order and classic/BigTIFF re-layouts must be the same header, or they would seed
    the fuzzer with broken files instead of structurally different valid ones."""
    originals = {s.name: _verdict(s.data) for s in seeds if "@" not in s.name}
    variants = [s for s in seeds if "@" in s.name]
    assert len(variants) >= 2 * len(originals)
    flavours = {s.name.split("@")[1] for s in variants}
    assert flavours == {"LE-classic", "LE-big", "BE-classic", "BE-big"}
    for variant in variants:
        assert _verdict(variant.data) == originals[variant.name.split("@")[0]], variant.name
    assert sum(isinstance(v, tuple) for v in originals.values()) >= 25


def test_mutations_stay_in_bounds_and_change_the_seed(seeds: list[Seed]) -> None:
    mutator = Mutator(seeds, random.Random(7))
    changed = 0
    for _ in range(2000):
        name, data, log = mutator.mutate()
        assert log
        if name != "random":
            seed = next(s for s in seeds if s.name == name)
            assert len(data) <= len(seed.data)  # mutations overwrite or cut, never grow
            changed += data != seed.data
    assert changed >= 1800


def test_smoke_run_from_the_command_line(tmp_path: Path) -> None:
    """2,000 inputs over two processes: no crash, every path and mutation kind exercised."""
    summary_path = tmp_path / "summary.json"
    command = [
        sys.executable,
        str(ROOT / "benchmarks" / "fuzz_header.py"),
        "--inputs=2000",
        "--workers=2",
        "--seed=3",
        "--progress-every=0",
        f"--crash-dir={tmp_path / 'crashes'}",
        f"--json={summary_path}",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "inputs tried: 2,000" in done.stdout
    summary = json.loads(summary_path.read_text())
    assert summary["inputs"] == 2000
    assert summary["crashes"] == 0
    assert summary["slowest_input"]["seconds"] < fuzz_header.TIME_LIMIT_S
    assert all(v > 0 for v in summary["mean_microseconds_per_path"].values())
    outcomes = summary["whole_buffer_outcomes"]
    assert {"header", "corrupt", "truncated", "not_tiled", "not_tiff"} <= outcomes.keys()
    assert summary["distinct_error_messages"] >= 50
    assert len(summary["mutations"]) == MUTATION_KINDS
    slowest = Path(summary["slowest_input"]["saved_as"])
    assert [p.name for p in (tmp_path / "crashes").iterdir()] == [slowest.name]
    assert slowest.stat().st_size > 0


def _planted_fault(monkeypatch: pytest.MonkeyPatch) -> None:
    """A mock on purpose: the real parser has no known crash left, so the harness's crash
    path can only be exercised with a planted one (a ValueError on every 5th input size)."""
    real = fuzz_paths.parse_tiff_bytes

    def faulty(data: bytes) -> TiffHeader:
        if len(data) % 5 == 0:
            raise ValueError("planted fault")
        return real(data)

    monkeypatch.setattr(fuzz_paths, "parse_tiff_bytes", faulty)


def test_escaping_exceptions_are_saved_with_a_replay(
    seeds: list[Seed], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _planted_fault(monkeypatch)
    reports = fuzz_header.fuzz(
        seeds,
        inputs=400,
        workers=1,
        seed=5,
        time_limit=None,
        crash_dir=tmp_path,
        progress_every=0,
    )
    summary = fuzz_header.summarize(reports, seeds=seeds, wall_seconds=1.0, crash_dir=tmp_path)
    assert summary["inputs"] == 400
    assert 20 <= summary["crashes"] < 400
    (signature,) = summary["crash_signatures"]
    assert signature.startswith("exception:ValueError@")
    saved = [Path(p) for p in summary["crash_files"]]
    assert len(saved) == fuzz_header.SAVED_PER_SIGNATURE
    for path in saved:
        assert len(path.read_bytes()) % 5 == 0
        meta = json.loads(path.with_suffix(".json").read_text())
        assert meta["mutations"] and "planted fault" in meta["detail"]
    assert fuzz_header.replay(saved) == 1  # still faulty: the replay reproduces it
    monkeypatch.undo()
    assert fuzz_header.replay(saved) == 0  # the real parser handles the same bytes


def test_slow_inputs_count_as_crashes(
    seeds: list[Seed], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the time limit at zero every input is too slow: each must be reported."""
    monkeypatch.setattr(fuzz_header, "TIME_LIMIT_S", 0.0)
    reports = fuzz_header.fuzz(
        seeds,
        inputs=50,
        workers=1,
        seed=5,
        time_limit=None,
        crash_dir=tmp_path,
        progress_every=0,
    )
    summary = fuzz_header.summarize(reports, seeds=seeds, wall_seconds=1.0, crash_dir=tmp_path)
    assert summary["crash_signatures"] == {"slow": 50}
    assert len(list(tmp_path.glob("slow-*.tif"))) == fuzz_header.SAVED_PER_SIGNATURE
