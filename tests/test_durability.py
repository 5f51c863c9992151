"""A SIGKILL at any moment of a month's write never corrupts the partition (local and S3).

Real processes, really killed: ``durability_worker.py`` forks a writer per version and
SIGKILLs it after a seeded random delay; the collection is then opened with the normal
reader and must hold the complete old or the complete new month, other months untouched
(see ``durability_harness.py`` for every check). S3 is the real moto server of the
``moto_s3`` fixture. The first write of a month is killed too: the month must then be absent
(no rows, no visible file) or complete. Long runs: ``benchmarks/durability_kills.py``.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from durability_harness import (
    Campaign,
    CampaignReport,
    DurabilityError,
    Target,
    run_campaign,
    writer_server,
)
from durability_worker import (
    INFO,
    TARGET_MONTH,
    TARGET_ROWS,
    base_table,
    target_version,
    version_table,
)
from servers.moto_s3 import MotoS3

from rasteret_assets.collection import Collection, write_collection

LOCAL_KILLS = 30
S3_KILLS = 20
LOCAL_FIRST_WRITE_KILLS = 15
S3_FIRST_WRITE_KILLS = 10
#: Rows per version on S3: moto is a Python server, a quarter of the local size keeps the
#: S3 campaign as fast as the local one.
S3_ROWS = TARGET_ROWS // 4
#: Rows per first write: a quarter (local) and an eighth (S3) of a replacement's keep the
#: first-write campaigns short; the kill moments scale with the calibrated write time.
LOCAL_FIRST_WRITE_ROWS = TARGET_ROWS // 4
S3_FIRST_WRITE_ROWS = TARGET_ROWS // 8
#: Rows per version for the checks of the oracle itself, which only need a valid collection.
ORACLE_ROWS = 4_000


def assert_every_phase_survived(
    report: CampaignReport, kills: int, *, before: str = "old", debris_required: bool = True
) -> None:
    print(report.summary())
    assert report.kills == kills
    # The kills really interrupted writes, both before the swap (old month survives, or stays
    # absent) and after it (new month complete), and every staged file a kill left was
    # cleaned up by a later write.
    assert report.killed >= kills // 3
    assert report.count(phase="staging", outcome=before) >= 1
    assert report.count(outcome="new") >= 1
    assert report.debris_cleaned == report.debris_seen
    assert report.debris_seen >= 1 or not debris_required


def test_sigkill_during_local_month_write_never_tears_it(tmp_path: Path) -> None:
    target = Target("local", str(tmp_path / "collection"))
    report = run_campaign(target, kills=LOCAL_KILLS, seed=20240301)
    assert_every_phase_survived(report, LOCAL_KILLS)


def s3_target(moto: MotoS3) -> Target:
    """A fresh prefix; the options select fsspec's cached client, as a long-lived reader has."""
    uri = f"s3://{moto.private_bucket}/durability/{uuid.uuid4().hex}"
    options = {"endpoint_url": moto.endpoint_url, "key": moto.key_id, "secret": moto.secret}
    return Target("s3", uri, options)


def test_sigkill_during_s3_month_write_never_tears_it(moto_s3: MotoS3) -> None:
    target = s3_target(moto_s3)
    report = run_campaign(target, kills=S3_KILLS, seed=20240302, rows=S3_ROWS)
    assert_every_phase_survived(report, S3_KILLS)


def test_sigkill_during_the_first_local_write_of_a_month_leaves_it_absent_or_complete(
    tmp_path: Path,
) -> None:
    target = Target("local", str(tmp_path / "collection"))
    report = run_campaign(
        target,
        kills=LOCAL_FIRST_WRITE_KILLS,
        seed=20240303,
        rows=LOCAL_FIRST_WRITE_ROWS,
        first_write=True,
    )
    # Locally only a kill after the staged file was opened and before its rename leaves
    # debris, too narrow a target for 15 kills to hit every time: the cleanup of debris by a
    # first write is pinned by test_a_first_write_removes_a_killed_first_writes_staged_file.
    assert_every_phase_survived(
        report, LOCAL_FIRST_WRITE_KILLS, before="absent", debris_required=False
    )
    assert report.first_writes_fresh >= 1


def test_sigkill_during_the_first_s3_write_of_a_month_leaves_it_absent_or_complete(
    moto_s3: MotoS3,
) -> None:
    report = run_campaign(
        s3_target(moto_s3),
        kills=S3_FIRST_WRITE_KILLS,
        seed=20240304,
        rows=S3_FIRST_WRITE_ROWS,
        first_write=True,
    )
    assert_every_phase_survived(report, S3_FIRST_WRITE_KILLS, before="absent")


def test_a_long_lived_s3_reader_opens_a_month_replaced_by_another_process(
    moto_s3: MotoS3,
) -> None:
    """s3fs caches subdirectory listings with ETags; a stale one made the reopen fail with
    ``FileExpired`` once another process had replaced the month."""
    target = s3_target(moto_s3)
    campaign = Campaign(target, rows=ORACLE_ROWS)
    before = Collection.open(target.uri, storage_options=target.storage_options)
    assert before.count_rows() == campaign.others.num_rows + ORACLE_ROWS
    with writer_server() as server:
        result = server.write(target, campaign.next_version(), ORACLE_ROWS, "table")
    campaign.check(result)  # reopens through the same cached client
    assert campaign.live_version == 1


# --------------------------------------------------------------------------- the oracle
# The campaigns prove nothing if the check cannot fail: each damaged state below is what a
# broken swap would leave, made directly, and each must be reported.


def staging_kill(version: int) -> dict[str, Any]:
    """A worker result: the write of ``version`` killed before it reached its commit."""
    return {
        "version": version,
        "writer": "table",
        "events": {"start": 0.0},
        "killed_at": 0.01,
        "signal": 9,
    }


def finished_write(version: int) -> dict[str, Any]:
    events = {"start": 0.0, "commit": 0.05, "done": 0.06}
    return {
        "version": version,
        "writer": "table",
        "events": events,
        "killed_at": None,
        "signal": None,
    }


def month_dir(target: Target, month: int) -> Path:
    return Path(target.uri) / "year=2024" / f"month={month}"


def mix_versions(target: Target) -> None:
    write_collection(
        pa.concat_tables(
            [
                target_version(0, ORACLE_ROWS).slice(0, 100),
                target_version(1, ORACLE_ROWS).slice(100),
            ]
        ),
        target.uri,
        info=INFO,
    )


def add_visible_copy(target: Target) -> None:
    month = month_dir(target, TARGET_MONTH)
    shutil.copyfile(month / "part-0.parquet", month / "part-1.parquet")


def rewrite_neighbour(target: Target) -> None:
    write_collection(version_table(base_table(1, 400), 1, 9), target.uri, info=INFO)


def swap_early(target: Target) -> None:
    write_collection(target_version(1, ORACLE_ROWS), target.uri, info=INFO)


def leave_staged_file(target: Target) -> None:
    swap_early(target)
    month = month_dir(target, TARGET_MONTH)
    shutil.copyfile(month / "part-0.parquet", month / f".part-0.parquet.{'0' * 32}.tmp")


@pytest.mark.parametrize(
    ("damage", "result", "message"),
    [
        (mix_versions, staging_kill(1), "neither complete version 0 nor complete version 1"),
        (add_visible_copy, staging_kill(1), rf"neither complete .* {ORACLE_ROWS} duplicate ids"),
        (rewrite_neighbour, staging_kill(1), "another month changed"),
        (swap_early, staging_kill(1), "new version is live before its commit"),
        (leave_staged_file, finished_write(1), "a finished write left staged files"),
    ],
    ids=["mixed", "duplicated", "neighbour", "early-swap", "debris"],
)
def test_the_check_reports_a_damaged_collection(
    tmp_path: Path, damage: Callable[[Target], None], result: dict[str, Any], message: str
) -> None:
    target = Target("local", str(tmp_path / "collection"))
    campaign = Campaign(target, rows=ORACLE_ROWS)
    campaign.check(staging_kill(1))  # intact: the old version, as expected
    damage(target)
    with pytest.raises(DurabilityError, match=message):
        campaign.check(result)


# ------------------------------------------------------------- the oracle, first writes
# While the month is absent, anything of it the reader can see is a torn first write.


def plant_partial_file(target: Target, name: str) -> None:
    """Half of a complete data file of version 1 under ``name`` in the target month."""
    scratch = Target("local", f"{target.uri}-scratch")
    write_collection(target_version(1, ORACLE_ROWS), scratch.uri, info=INFO)
    data = (month_dir(scratch, TARGET_MONTH) / "part-0.parquet").read_bytes()
    month = month_dir(target, TARGET_MONTH)
    month.mkdir(parents=True, exist_ok=True)
    (month / name).write_bytes(data[: len(data) // 2])


def leave_partial_visible_file(target: Target) -> None:
    plant_partial_file(target, "part-0.parquet")


def leave_part_of_the_rows(target: Target) -> None:
    write_collection(target_version(1, ORACLE_ROWS).slice(0, 100), target.uri, info=INFO)


def leave_unhidden_staged_file(target: Target) -> None:
    plant_partial_file(target, "part-0.parquet.tmp")


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (leave_partial_visible_file, "the collection does not open"),
        (leave_part_of_the_rows, "neither absent nor complete version 1: 100 rows"),
        (leave_unhidden_staged_file, r"unexpected files \['year=2024/month=3/part-0.parquet.tmp"),
        (swap_early, "new version is live before its commit"),
    ],
    ids=["partial-visible", "part-of-the-rows", "unhidden-staged", "early-swap"],
)
def test_the_first_write_check_reports_a_visible_month(
    tmp_path: Path, damage: Callable[[Target], None], message: str
) -> None:
    target = Target("local", str(tmp_path / "collection"))
    campaign = Campaign(target, rows=ORACLE_ROWS, first_write=True)
    campaign.check(staging_kill(1))  # intact: the month is absent, as expected
    damage(target)
    with pytest.raises(DurabilityError, match=message):
        campaign.check(staging_kill(1))


def test_a_first_write_removes_a_killed_first_writes_staged_file(tmp_path: Path) -> None:
    """The state a kill mid-staging of a month's first write leaves: only a hidden, partial
    staged file. The reader must not see it, and the month's next write must remove it."""
    target = Target("local", str(tmp_path / "collection"))
    campaign = Campaign(target, rows=ORACLE_ROWS, first_write=True)
    plant_partial_file(target, f".part-0.parquet.{'a' * 32}.tmp")
    campaign.check(staging_kill(1))
    assert campaign.report.debris_seen == 1
    with writer_server() as server:
        campaign.check(server.write(target, campaign.next_version(), ORACLE_ROWS, "stream"))
    assert campaign.report.debris_cleaned == 1
    assert campaign.live_version == 1
