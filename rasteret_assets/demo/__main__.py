"""Materialize every month of the configured sources headlessly and summarise the result.

    DAGSTER_HOME=$PWD/.dagster_home .venv/bin/python -m rasteret_assets.demo

With ``DAGSTER_HOME`` set the runs are recorded in that instance, so ``dagster dev`` on the
same home shows them; without it an ephemeral instance is used.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import dagster as dg

from rasteret_assets.sources import load_sources

#: Runs log to the instance as usual; only the console stays quiet so the summary is readable.
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def _instance() -> dg.DagsterInstance:
    home = os.environ.get("DAGSTER_HOME")
    if not home:
        return dg.DagsterInstance.ephemeral()
    Path(home).mkdir(parents=True, exist_ok=True)
    return dg.DagsterInstance.get()


def _value(result: dg.ExecuteInProcessResult, node: str, key: str) -> object:
    events = result.asset_materializations_for_node(node)
    return events[-1].metadata[key].value if events and key in events[-1].metadata else None


def main() -> int:
    from rasteret_assets.definitions import defs

    instance = _instance()
    workspace = defs.resources["workspace"]
    failed = 0
    for source in load_sources():
        job = defs.resolve_job_def(f"{source.name}_monthly")
        keys = job.partitions_def.get_partition_keys()
        print(
            f"{source.name}: materializing {len(keys)} monthly partitions ({keys[0]} .. {keys[-1]})"
        )
        print(
            f"  {'month':10s} {'records':>7s} {'fetched':>7s} {'reused':>6s} {'failed':>6s}  checks"
        )
        for key in keys:
            result = job.execute_in_process(
                partition_key=key, instance=instance, raise_on_error=False
            )
            if not result.success:
                failed += 1
                print(f"  {key[:7]:10s} RUN FAILED (see the run in Dagster)")
                continue
            rows = _value(result, f"{source.name}__records", "dagster/row_count")
            if not rows:
                continue
            node = f"{source.name}__cog_headers"
            checks = result.get_asset_check_evaluations()
            passed = sum(c.passed for c in checks)
            print(
                f"  {key[:7]:10s} {rows:7d} {_value(result, node, 'fetched'):7d} "
                f"{_value(result, node, 'reused'):6d} {_value(result, node, 'failed'):6d}  "
                f"{passed}/{len(checks)} passed"
            )
        print(f"  collection: {workspace.uri(source.name, 'collection')}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
