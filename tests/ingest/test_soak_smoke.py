"""The soak benchmark's core (benchmarks/soak_engine.py) on 500 URLs, in process.

The 100,000-URL soak is a benchmark, not a test; this runs the same plan, server set-up,
engine call and checker against the session range server, so the soak keeps working, and
shows that the checker does catch a lost, a duplicated and a wrongly ended outcome.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from servers.range_server import RangeServer

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

from soak_engine import (  # noqa: E402
    PERMANENT,
    PERMANENT_FAULTS,
    TRANSIENT,
    TRANSIENT_FAULTS,
    Expectation,
    SoakPlan,
    SoakRun,
    install,
    run_soak,
    verify,
    write_soak_cogs,
)

N_URLS = 500
# Higher fault rates than the soak's 5 % / 1 %, so that 500 URLs meet every fault kind.
PLAN = SoakPlan(N_URLS, transient=0.3, permanent=0.06, seed=7, prefix="/soak-smoke")


@dataclass
class SmokeRun:
    out: Path
    run: SoakRun
    faults_served: int


@pytest.fixture(scope="module")
def smoke(range_server_session: RangeServer, tmp_path_factory: pytest.TempPathFactory) -> SmokeRun:
    server = range_server_session
    server.reset()
    tmp = tmp_path_factory.mktemp("soak")
    files = write_soak_cogs(tmp / "cogs", limit=4)
    install(server, PLAN, [file.read_bytes() for file in files])
    out = tmp / "outcomes.parquet"
    try:
        run = asyncio.run(run_soak(server.base_url, PLAN, out, concurrency=64))
        served = sum(len(server.stats(PLAN.path(i)).faults) for i in range(N_URLS))
    finally:
        server.reset()
    return SmokeRun(out, run, served)


def _expectations() -> list[Expectation]:
    return [PLAN.expect(index) for index in range(N_URLS)]


def test_every_url_ends_exactly_once_as_planned(smoke: SmokeRun) -> None:
    verdict = verify(smoke.out, PLAN)

    assert dict(verdict.problems) == {}, verdict.examples
    assert verdict.rows == N_URLS
    assert sum(smoke.run.counts.values()) == N_URLS
    planned_ok = sum(1 for e in _expectations() if e.status == "ok")
    assert smoke.run.counts["ok"] == planned_ok


def test_run_met_every_fault_kind_and_server_served_each_fault(smoke: SmokeRun) -> None:
    expectations = _expectations()
    labels = {e.label for e in expectations}
    every_kind = {Expectation(TRANSIENT, f, "ok", None).label for f in TRANSIENT_FAULTS} | {
        Expectation(PERMANENT, f, c, 1).label for f, c in PERMANENT_FAULTS
    }
    assert every_kind <= labels

    # Transient faults are served ``times`` times, then the retry gets the file; permanent ones
    # exactly once, because permanent errors are never retried.
    expected_faults = sum((e.fault.times or 1) for e in expectations if e.fault is not None)
    assert smoke.faults_served == expected_faults


def test_checker_catches_lost_duplicated_and_wrong_outcomes(
    smoke: SmokeRun, tmp_path: Path
) -> None:
    table = pq.read_table(smoke.out)
    expectations = _expectations()
    transient = next(i for i, e in enumerate(expectations) if e.category == TRANSIENT)
    permanent = next(i for i, e in enumerate(expectations) if e.category == PERMANENT)
    clean = [i for i, e in enumerate(expectations) if e.fault is None][:2]
    lost, doubled = (PLAN.path(i) for i in clean)
    row_of = {url.split("/", 3)[3]: row for row, url in enumerate(table["url"].to_pylist())}

    def row(path: str) -> int:
        return row_of[path.lstrip("/")]

    attempts = table["attempts"].to_pylist()
    attempts[row(PLAN.path(transient))] = 1
    status = table["status"].to_pylist()
    status[row(PLAN.path(permanent))] = "ok"
    tampered = table.set_column(
        table.schema.get_field_index("attempts"), "attempts", pa.array(attempts, pa.int32())
    )
    tampered = tampered.set_column(
        table.schema.get_field_index("status"), "status", pa.array(status, pa.string())
    )
    keep = pc.not_equal(pa.array(range(table.num_rows)), row(lost))
    tampered = pa.concat_tables([tampered.filter(keep), tampered.slice(row(doubled), 1)])
    pq.write_table(tampered, tmp_path / "tampered.parquet")

    verdict = verify(tmp_path / "tampered.parquet", PLAN)

    assert verdict.problems == {
        "no outcome": 1,
        "more than one outcome": 1,
        f"{expectations[transient].label} took 1 attempts": 1,
        f"{expectations[permanent].label} ended ok": 1,
    }
    assert f"no outcome: {lost}" in verdict.examples
    assert f"2 outcomes: {doubled}" in verdict.examples


def test_plan_rates_and_urls_round_trip() -> None:
    plan = SoakPlan(100_000, transient=0.05, permanent=0.01)
    categories = [plan.expect(i).category for i in range(plan.n_urls)]

    assert categories.count(TRANSIENT) == pytest.approx(5_000, rel=0.05)
    assert categories.count(PERMANENT) == pytest.approx(1_000, rel=0.1)
    assert plan.index_of("http://127.0.0.1:8000/soak/99999.tif") == 99_999
    for foreign in (
        "http://127.0.0.1:8000/soak/100000.tif",
        "http://127.0.0.1:8000/soak/012.tif",
        "http://127.0.0.1:8000/other/12.tif",
        "http://127.0.0.1:8000/soak/12.tif?x=1",
    ):
        assert plan.index_of(foreign) is None, foreign
