"""Backfill every month of the configured sources as runs of their jobs, and summarise.

    DAGSTER_HOME=$PWD/.dagster_home .venv/bin/python -m rasteret_assets.demo

The runs are real runs of ``<source>_monthly`` in the instance at ``DAGSTER_HOME`` (one
backfill per source), so ``dg dev`` on the same home shows them under the job, on the
timeline and under Backfills, and can re-execute them. Without ``DAGSTER_HOME`` an
ephemeral instance is used. Only the months a source can have data in are partitions (a
static catalog's temporal extent), so only those run.
"""

import os
import sys
from pathlib import Path

import dagster as dg
from dagster._core.events import DagsterEventType

from rasteret_assets.demo.runs import run_backfill


def _instance() -> dg.DagsterInstance:
    home = os.environ.get("DAGSTER_HOME")
    if not home:
        return dg.DagsterInstance.ephemeral()
    Path(home).mkdir(parents=True, exist_ok=True)
    return dg.DagsterInstance.get()


def _materializations(instance: dg.DagsterInstance, run_id: str) -> dict[str, dict[str, object]]:
    """``{asset name: {metadata key: value}}`` of the run's materializations."""
    found = {}
    for entry in instance.all_logs(run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION):
        event = entry.asset_materialization
        if event is not None:
            found[event.asset_key.path[-1]] = {k: v.value for k, v in event.metadata.items()}
    return found


def _checks(instance: dg.DagsterInstance, run_id: str) -> list[bool]:
    events = instance.all_logs(run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION)
    return [e.dagster_event.event_specific_data.passed for e in events if e.dagster_event]


def main() -> int:
    from rasteret_assets.definitions import defs

    instance = _instance()
    workspace = defs.resources["workspace"]
    failed = 0
    for job in defs.resolve_all_job_defs():
        if not job.name.endswith("_monthly") or job.partitions_def is None:
            continue
        source = job.name.removesuffix("_monthly")
        keys = job.partitions_def.get_partition_keys()
        print(f"{source}: backfilling {len(keys)} months ({keys[0]} .. {keys[-1]}), {job.name}")
        result = run_backfill(instance, job.name, keys)
        print(f"  backfill {result.backfill_id}")
        print(
            f"  {'month':10s} {'records':>7s} {'fetched':>7s} {'reused':>6s} {'failed':>6s}  checks"
        )
        for key, run in zip(keys, result.runs, strict=True):
            if run.status != dg.DagsterRunStatus.SUCCESS:
                failed += 1
                print(f"  {key[:7]:10s} RUN FAILED: run {run.run_id} in Dagster")
                continue
            assets = _materializations(instance, run.run_id)
            headers = assets.get("cog_headers", {})
            checks = _checks(instance, run.run_id)
            print(
                f"  {key[:7]:10s} {assets.get('records', {}).get('dagster/row_count', 0):7d} "
                f"{headers.get('fetched', 0):7d} {headers.get('reused', 0):6d} "
                f"{headers.get('failed', 0):6d}  {sum(checks)}/{len(checks)} passed"
            )
        print(f"  collection: {workspace.uri(source, 'collection')}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
