"""The demo graph's asset specs against a reviewed snapshot, so a structural change shows.

Keys, deps, partitions (first and last month), checks (blocking or not), kinds, owners,
group, pool and tags of every asset, plus the jobs, schedules and sensors. Regenerate after
an intended change with
``UPDATE_SNAPSHOTS=1 .venv/bin/pytest tests/defs/test_asset_spec_snapshot.py`` and review the
diff of ``snapshots/demo_asset_specs.json``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import dagster as dg

from rasteret_assets.definitions import build_definitions

SNAPSHOT = Path(__file__).parent / "snapshots" / "demo_asset_specs.json"


def describe(defs: dg.Definitions) -> dict[str, Any]:
    graph = defs.resolve_asset_graph()
    assets = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        partitions = node.partitions_def
        assets[key.to_user_string()] = {
            "group": node.group_name,
            "deps": sorted(k.to_user_string() for k in node.parent_keys),
            "partitions": type(partitions).__name__ if partitions else None,
            "partitions_start": partitions.start.isoformat() if partitions else None,
            "partitions_end": partitions.end.isoformat() if partitions and partitions.end else None,
            "kinds": sorted(node.kinds),
            "owners": list(node.owners),
            "tags": dict(sorted(node.tags.items())),
            "pools": sorted(node.pools or ()),
            "checks": sorted([c.name, graph.get(c).blocking] for c in node.check_keys),
        }
    return {
        "assets": assets,
        "jobs": sorted(j.name for j in defs.resolve_all_job_defs() if not j.name.startswith("__")),
        "schedules": sorted(s.name for s in defs.schedules or []),
        "sensors": sorted(s.name for s in defs.sensors or []),
    }


def test_demo_asset_specs_match_the_snapshot() -> None:
    current = describe(build_definitions())
    if os.environ.get("UPDATE_SNAPSHOTS"):
        SNAPSHOT.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n")
    expected = json.loads(SNAPSHOT.read_text())
    assert current == expected, "asset specs changed: review, then regenerate the snapshot"
