"""Runs of a source's job, made the way the UI makes a backfill's runs, executed here.

Each run is created from the code location (``rasteret_assets``, as ``dg dev`` serves it):
it carries the job's snapshot, origin and the backfill's tags, so the UI lists it under the
job, on the timeline and under the backfill, and re-executes it like any run it launched
itself. The runs execute in this process (the job's executor is in-process anyway), which
spares the demo a daemon and a process start per month.

Dagster has no public API for this; these are the internals ``dagster job backfill`` uses.
"""

import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
from dagster._core.definitions.reconstruct import ReconstructableJob, ReconstructableRepository
from dagster._core.execution.api import execute_run
from dagster._core.execution.backfill import BulkActionStatus, PartitionBackfill
from dagster._core.execution.job_backfill import create_backfill_run
from dagster._core.remote_origin import InProcessCodeLocationOrigin
from dagster._core.storage.dagster_run import DagsterRun
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._core.utils import make_new_backfill_id
from dagster._core.workspace.context import BaseWorkspaceRequestContext, WorkspaceProcessContext
from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget
from dagster._time import get_current_timestamp

LOCATION = "rasteret_assets"
MODULE = "rasteret_assets.definitions"
REPOSITORY = "__repository__"


@dataclass
class BackfillResult:
    backfill_id: str
    runs: list[DagsterRun]


@contextmanager
def code_location(instance: dg.DagsterInstance) -> Iterator[BaseWorkspaceRequestContext]:
    """The code location loaded in this process under the name the UI shows."""
    origin = InProcessCodeLocationOrigin(
        LoadableTargetOrigin(
            executable_path=sys.executable,
            module_name=MODULE,
            attribute="defs",
            working_directory=str(Path.cwd()),
        ),
        location_name=LOCATION,
    )
    with WorkspaceProcessContext(instance, InProcessWorkspaceLoadTarget([origin])) as process:
        yield process.create_request_context()


def run_backfill(
    instance: dg.DagsterInstance, job_name: str, partition_keys: Sequence[str]
) -> BackfillResult:
    """One backfill of ``partition_keys`` of ``job_name``: a run per month, one after another."""
    recon_job = ReconstructableJob(ReconstructableRepository.for_module(MODULE, "defs"), job_name)
    backfill_id = make_new_backfill_id()
    with code_location(instance) as context:
        location = context.get_code_location(LOCATION)
        repository = location.get_repository(REPOSITORY)
        remote_job = repository.get_full_job(job_name)
        partition_set = repository.get_partition_set(f"{job_name}_partition_set")
        backfill = PartitionBackfill(
            backfill_id=backfill_id,
            partition_set_origin=partition_set.get_remote_origin(),
            status=BulkActionStatus.REQUESTED,
            partition_names=list(partition_keys),
            from_failure=False,
            reexecution_steps=None,
            tags={},
            backfill_timestamp=get_current_timestamp(),
        )
        runs = []
        for key in partition_keys:
            run = create_backfill_run(
                context,
                instance,
                location,
                remote_job,
                partition_set,
                backfill,
                key,
                {"dagster/partition": key},
                {},
            )
            assert run is not None, "a new backfill always creates its runs"
            execute_run(recon_job, run, instance)
            runs.append(instance.get_run_by_id(run.run_id) or run)
        # Recorded once its runs are done, as ``dagster job backfill`` does: a REQUESTED
        # backfill in the instance would be picked up by a running daemon and run twice.
        instance.add_backfill(
            backfill.with_status(BulkActionStatus.COMPLETED).with_end_timestamp(
                get_current_timestamp()
            )
        )
    return BackfillResult(backfill_id, runs)
