"""A local partition swap persists every directory entry a first write created.

Power loss cannot be produced in a test, so this one records which directories the store
fsyncs (``_fsync_dir`` wrapped, the real fsync still runs) instead of cutting the power."""

from __future__ import annotations

from pathlib import Path

import fsspec
import pytest

from rasteret_assets.collection import store as store_module
from rasteret_assets.collection.store import Store


def test_first_write_fsyncs_the_new_month_and_year_directories(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[Path] = []
    real = store_module._fsync_dir

    def recording(directory: Path) -> None:
        synced.append(directory)
        real(directory)

    monkeypatch.setattr(store_module, "_fsync_dir", recording)
    root = tmp_path / "collection"
    store = Store(fsspec.filesystem("file"), root.as_posix())
    month = root / "year=2024" / "month=3"
    month.mkdir(parents=True)
    staged = month / ".part-0.parquet.x.tmp"
    staged.write_bytes(b"data")
    store.swap_in(staged.as_posix(), (month / "part-0.parquet").as_posix())
    assert (month / "part-0.parquet").read_bytes() == b"data"
    assert synced == [month, root / "year=2024", root]
