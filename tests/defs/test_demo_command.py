"""The README's first command, as a new user runs it: ``python -m rasteret_assets.demo`` in an
empty directory backfills every month of the demo graph as runs of ``demo_monthly`` and prints
where the collection landed and a per-month summary."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

from rasteret_assets.collection import Collection
from rasteret_assets.ingest.month_checks import CHECK_DESCRIPTIONS
from rasteret_assets.sources import SOURCES_ENV

#: ``  2024-01          2       6      0      0  8/8 passed``
SUMMARY_ROW = r"^\s+(\d{4}-\d{2})\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\S+) passed"


#: The collection's checks plus cog_headers' failed_urls.
CHECKS = len(CHECK_DESCRIPTIONS) + 1
#: The issue's bound for the README's first command after install, on a 2-core box.
DEMO_SECONDS = 20.0


def test_the_demo_command_materializes_every_month(tmp_path: Path) -> None:
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path / "dagster_home")}
    for name in (SOURCES_ENV, "RASTERET_ASSETS_WORKSPACE"):
        env.pop(name, None)
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "rasteret_assets.demo"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    seconds = time.monotonic() - started
    assert result.returncode == 0, result.stderr[-3000:]
    assert seconds < DEMO_SECONDS, f"the demo took {seconds:.1f}s"
    rows = re.findall(SUMMARY_ROW, result.stdout, re.MULTILINE)
    assert [r[0] for r in rows] == ["2024-01", "2024-02", "2024-03"]
    every = f"{CHECKS}/{CHECKS}"
    for _, records, fetched, reused, failed, checks in rows:
        assert (records, fetched, reused, failed, checks) == ("2", "6", "0", "0", every)
    assert f"collection: {tmp_path / 'rasteret_workspace' / 'demo' / 'collection'}" in result.stdout
    table = Collection.open(tmp_path / "rasteret_workspace" / "demo" / "collection").to_table()
    assert table.num_rows == 6
    assert table.column("red_metadata").null_count == 0
