"""End to end: the code location served by a real ``dagster dev``, driven the way a user does.

Unit tests call the asset functions in process; this module checks what they cannot: that
``workspace.yaml`` loads the location in a code server, that a partition launched through
the webserver's GraphQL API is queued, dequeued by the daemon and run in a subprocess that
writes the Collection where ``RASTERET_ASSETS_WORKSPACE`` points, and that the UI renders
the demo group's asset graph (seen by headless Chromium, with a screenshot kept under
``tests/artifacts/`` for people to look at).

``dagster dev`` starts a webserver, a daemon and code servers, which start run workers in
turn. It runs in a session of its own (``start_new_session=True``), so teardown can find
and kill every process it left behind, and asserts that none survives.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from dagster_graphql import DagsterGraphQLClient

from rasteret_assets.defs.checks import CHECK_DESCRIPTIONS, FAILED_URLS

REPO_ROOT = Path(__file__).resolve().parents[2]
#: Screenshot, DOM dump, server log and timings of the last run (ignored by git).
ARTIFACTS_DIR = REPO_ROOT / "tests" / "artifacts"

LOCATION = "rasteret_assets"
GROUP = "demo"
JOB = "demo_monthly"
PARTITION = "2024-02-01"
ASSET_NAMES = ("records", "cog_headers", "collection")
#: The catalog itself, an external asset upstream of ``records``.
SOURCE_ASSET = "source"
BANDS = ("red", "green", "nir")
#: The UI route of the group's lineage graph (what "Catalog > demo > Lineage" opens).
GROUP_LINEAGE_ROUTE = f"/locations/{LOCATION}/asset-groups/{GROUP}/lineage"

STARTUP_TIMEOUT = 90.0
RUN_TIMEOUT = 120.0
#: Time ``dagster dev`` gets to stop its webserver, daemon and code servers on SIGTERM.
SHUTDOWN_GRACE = 20.0
KILL_GRACE = 5.0
CHROMIUM_TIMEOUT = 60.0
WINDOW = (1600, 1000)
#: Chromium's virtual clock: timers run ahead while no request is pending, so the React app
#: gets up to 15 s of its own time to fetch the graph and lay it out, in ~2 s of real time.
VIRTUAL_TIME_BUDGET_MS = 15_000

#: The temporary instance: no telemetry, no "join the community" modal over the graph, and a
#: run queue polled every second (the default is 5 s) so a queued run starts promptly.
DAGSTER_YAML = """\
telemetry:
  enabled: false
nux:
  enabled: false
run_queue:
  max_concurrent_runs: 2
  dequeue_interval_seconds: 1
"""

#: ``dagster dev`` turns SIGTERM into SIGINT, so it can only shut down gracefully when SIGINT
#: is not ignored -- which it is whenever pytest itself was started in the background by a
#: non-interactive shell, and ignored signals survive ``exec``. This prefix restores SIGINT
#: in the child before it becomes ``dagster dev``.
RESTORE_SIGINT_THEN_EXEC = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execv(sys.argv[1], sys.argv[1:])"
)

# dagster-graphql 1.13's client calls gql 4 with keyword arguments gql has deprecated.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Using variable_values and operation_name:DeprecationWarning"
)

TERMINAL_RUN_STATUSES = frozenset({"SUCCESS", "FAILURE", "CANCELED"})

WORKSPACE_QUERY = """
{
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        loadStatus
        locationOrLoadError { __typename ... on PythonError { message } }
      }
    }
    ... on PythonError { message }
  }
}
"""

RUN_EVENTS_QUERY = """
query RunEvents($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run { status tags { key value } }
  }
  logsForRun(runId: $runId, limit: 10000) {
    __typename
    ... on EventConnection {
      hasMore
      events {
        __typename
        ... on MaterializationEvent { assetKey { path } partition }
        ... on AssetCheckEvaluationEvent {
          evaluation { checkName success partition assetKey { path } }
        }
      }
    }
  }
}
"""


def _missing_requirement(reason: str) -> None:
    """Skip locally; under ``CI=true`` a missing tool is a broken setup, so fail instead."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: required, not skipped)")
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _session_members(session_id: int) -> dict[int, str]:
    """Live processes (zombies excluded) of a session: ``{pid: command line}``.

    Scanning by session id rather than process group also finds a child that moved to a
    process group of its own, which ``killpg`` would miss. Without ``/proc`` (macOS) only
    the process group can be probed.
    """
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(session_id, 0)
        except ProcessLookupError:
            return {}
        return {session_id: f"process group {session_id} (no /proc to list it)"}
    members: dict[int, str] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:  # exited while we looked
            continue
        # "pid (comm) state ppid pgrp session ...": comm may hold spaces and parentheses.
        state, _ppid, _pgrp, session = stat.rpartition(")")[2].split()[:4]
        if int(session) == session_id and state not in {"Z", "X"}:
            members[int(entry.name)] = cmdline.replace(b"\0", b" ").decode(errors="replace")
    return members


def _signal_all(pids: Mapping[int, str], signum: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)


def _wait_until_empty(session_id: int, timeout: float) -> dict[int, str]:
    """Poll the session until no process is left in it; return what is left at ``timeout``."""
    deadline = time.monotonic() + timeout
    while (left := _session_members(session_id)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def _post_json(url: str, payload: Mapping[str, Any], timeout: float = 30.0) -> Any:
    request = urllib.request.Request(
        url,
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json", "Accept": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.load(response)


class ServerExitedError(RuntimeError):
    """``dagster dev`` exited before it was ready (e.g. its port was taken meanwhile)."""


@dataclass
class ShutdownReport:
    seconds: float
    #: Signals that were needed, e.g. ``["SIGTERM dagster dev"]`` when it stopped gracefully.
    steps: list[str]
    #: Processes of the session still alive after SIGKILL (must be empty).
    survivors: dict[int, str]


@dataclass
class DagsterDev:
    """A running ``dagster dev`` (webserver + daemon + code server) on a loopback port."""

    port: int
    home: Path
    workspace: Path
    log_path: Path
    process: subprocess.Popen[bytes] = field(repr=False)
    startup_seconds: float = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, lines: int = 60) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.is_file() else ""
        return "\n".join(text.splitlines()[-lines:])

    def graphql(self, query: str, variables: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """POST a query to ``/graphql``; a GraphQL error is a test failure, not ``None`` data."""
        body = _post_json(f"{self.url}/graphql", {"query": query, "variables": variables or {}})
        assert not body.get("errors"), f"GraphQL errors: {body['errors']}"
        return body["data"]

    def wait_until_ready(self, timeout: float) -> None:
        """Wait for ``/server_info``, then for the code location to be loaded.

        The webserver answers before its code server has imported the definitions; a launch
        in that window fails with "location not found", so readiness includes the location.
        """
        deadline = time.monotonic() + timeout
        while not self._answers_server_info():
            self._check_alive_before(deadline, "GET /server_info")
            time.sleep(0.25)
        while True:
            data = self.graphql(WORKSPACE_QUERY)["workspaceOrError"]
            assert data["__typename"] == "Workspace", f"workspace error: {data}"
            entries = {e["name"]: e for e in data["locationEntries"]}
            entry = entries.get(LOCATION)
            if entry is not None and entry["loadStatus"] == "LOADED":
                loaded = entry["locationOrLoadError"]
                assert loaded["__typename"] == "RepositoryLocation", (
                    f"code location {LOCATION} failed to load: {loaded.get('message')}"
                )
                return
            self._check_alive_before(deadline, f"code location {LOCATION} to load")
            time.sleep(0.25)

    def _answers_server_info(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/server_info", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def _check_alive_before(self, deadline: float, waiting_for: str) -> None:
        if self.process.poll() is not None:
            raise ServerExitedError(
                f"dagster dev exited with {self.process.returncode} while waiting for "
                f"{waiting_for}:\n{self.log_tail()}"
            )
        if time.monotonic() > deadline:
            pytest.fail(f"dagster dev: timed out waiting for {waiting_for}:\n{self.log_tail()}")

    def stop(self) -> ShutdownReport:
        """SIGTERM ``dagster dev`` (graceful), then SIGTERM, then SIGKILL whatever is left.

        ``dagster dev`` leads its session (``start_new_session``), so its pid is the
        session id every process it started inherits.
        """
        started = time.monotonic()
        session_id = self.process.pid
        steps = ["SIGTERM dagster dev"]
        if self.process.poll() is None:
            self.process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(SHUTDOWN_GRACE)
        # Its children may outlive it by a moment; they share what is left of the grace.
        left = _wait_until_empty(session_id, started + SHUTDOWN_GRACE - time.monotonic())
        for signum in (signal.SIGTERM, signal.SIGKILL):
            if not left:
                break
            steps.append(f"{signum.name} to {len(left)} left: {sorted(left)}")
            _signal_all(left, signum)
            left = _wait_until_empty(session_id, KILL_GRACE)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(KILL_GRACE)
        return ShutdownReport(time.monotonic() - started, steps, left)


DAGSTER = (sys.executable, "-m", "dagster")
#: The ways a user starts the UI on this project; all must load the same location.
LAUNCHERS: dict[str, tuple[str, ...]] = {
    "dagster dev -w workspace.yaml": (*DAGSTER, "dev", "-w", "workspace.yaml"),
    "dagster dev": (*DAGSTER, "dev"),  # [tool.dagster] in pyproject
    "dg dev": (str(Path(sys.executable).with_name("dg")), "dev", "--use-active-venv"),
}


def start_dagster_dev(
    base: Path,
    *,
    launcher: str = "dagster dev -w workspace.yaml",
    attempts: int = 3,
    dagster_yaml: str = DAGSTER_YAML,
    extra_env: Mapping[str, str] | None = None,
) -> DagsterDev:
    """Start a ``LAUNCHERS`` command on a free port with a private DAGSTER_HOME.

    The port is free when chosen but could be taken before the webserver binds it; then
    ``dagster dev`` exits and we try another port.
    """
    home = base / "dagster_home"
    workspace = base / "rasteret_workspace"
    home.mkdir()
    workspace.mkdir()
    (home / "dagster.yaml").write_text(dagster_yaml)
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "RASTERET_ASSETS_WORKSPACE": str(workspace),
        # dg runs `dagster` from the active virtual environment: this interpreter's.
        "VIRTUAL_ENV": sys.prefix,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    # The test is about the built-in demo source, whatever the developer's shell points at.
    env.pop("RASTERET_ASSETS_SOURCES", None)
    env.update(extra_env or {})
    for attempt in range(1, attempts + 1):
        port = _free_port()
        log_path = base / f"dagster_dev_{attempt}.log"
        command = [
            *(sys.executable, "-c", RESTORE_SIGINT_THEN_EXEC),
            *LAUNCHERS[launcher],
            *("-h", "127.0.0.1", "-p", str(port)),
        ]
        started = time.monotonic()
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                command,
                cwd=REPO_ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        server = DagsterDev(port, home, workspace, log_path, process)
        try:
            server.wait_until_ready(STARTUP_TIMEOUT)
        except ServerExitedError:
            server.stop()
            if attempt == attempts:
                raise
            continue
        except BaseException:
            server.stop()
            raise
        server.startup_seconds = time.monotonic() - started
        return server
    raise AssertionError("unreachable")


@dataclass
class FinishedRun:
    run_id: str
    status: str
    seconds: float
    #: Every distinct status seen while polling, in order (e.g. QUEUED, STARTING, ...).
    statuses: list[str]


@pytest.fixture(scope="module")
def timings() -> Iterator[dict[str, float | str | list[str]]]:
    """Measured durations, printed and saved as ``tests/artifacts/e2e_timings.json``."""
    measured: dict[str, float | str | list[str]] = {}
    yield measured
    ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS_DIR / "e2e_timings.json").write_text(json.dumps(measured, indent=2) + "\n")
    print(f"\nend-to-end timings: {json.dumps(measured)}")


@pytest.fixture(scope="module")
def dagster_dev(
    tmp_path_factory: pytest.TempPathFactory, timings: dict[str, float | str | list[str]]
) -> Iterator[DagsterDev]:
    """``dagster dev`` for this module; teardown asserts that none of its processes is left."""
    server = start_dagster_dev(tmp_path_factory.mktemp("dagster_dev"))
    timings["startup_s"] = round(server.startup_seconds, 2)
    try:
        yield server
    finally:
        report = server.stop()
        timings["shutdown_s"] = round(report.seconds, 2)
        timings["shutdown_steps"] = report.steps
        ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(server.log_path, ARTIFACTS_DIR / "e2e_dagster_dev.log")
    assert not report.survivors, f"processes of dagster dev survived SIGKILL: {report.survivors}"


@pytest.fixture(scope="module")
def february_run(
    dagster_dev: DagsterDev, timings: dict[str, float | str | list[str]]
) -> FinishedRun:
    """``demo_monthly`` for 2024-02, launched through GraphQL and polled until it ends."""
    client = DagsterGraphQLClient("127.0.0.1", port_number=dagster_dev.port, timeout=30)
    started = time.monotonic()
    run_id = client.submit_job_execution(
        JOB, repository_location_name=LOCATION, tags={"dagster/partition": PARTITION}
    )
    statuses: list[str] = []
    while True:
        status = client.get_run_status(run_id).value
        if not statuses or statuses[-1] != status:
            statuses.append(status)
        if status in TERMINAL_RUN_STATUSES:
            break
        if time.monotonic() - started > RUN_TIMEOUT:
            pytest.fail(
                f"run {run_id} still {status} after {RUN_TIMEOUT:.0f}s (statuses {statuses}; "
                f"QUEUED means the daemon never dequeued it):\n{dagster_dev.log_tail()}"
            )
        time.sleep(0.5)
    seconds = time.monotonic() - started
    timings["run_s"] = round(seconds, 2)
    return FinishedRun(run_id, status, seconds, statuses)


def test_a_partition_launched_through_graphql_materializes_the_month(
    dagster_dev: DagsterDev, february_run: FinishedRun
) -> None:
    assert february_run.status == "SUCCESS", (
        f"run {february_run.run_id} ended {february_run.status} (statuses "
        f"{february_run.statuses}):\n{dagster_dev.log_tail()}"
    )

    data = dagster_dev.graphql(RUN_EVENTS_QUERY, {"runId": february_run.run_id})
    run = data["runOrError"]
    assert run["__typename"] == "Run"
    assert {t["key"]: t["value"] for t in run["tags"]}.get("dagster/partition") == PARTITION
    logs = data["logsForRun"]
    assert logs["__typename"] == "EventConnection" and not logs["hasMore"]
    materialized = {
        (tuple(e["assetKey"]["path"]), e["partition"])
        for e in logs["events"]
        if e["__typename"] == "MaterializationEvent"
    }
    assert materialized == {((GROUP, name), PARTITION) for name in ASSET_NAMES}
    evaluations = [
        e["evaluation"] for e in logs["events"] if e["__typename"] == "AssetCheckEvaluationEvent"
    ]
    assert {e["partition"] for e in evaluations} == {PARTITION}
    assert {(e["assetKey"]["path"][-1], e["checkName"]): e["success"] for e in evaluations} == {
        ("collection", name): True for name in CHECK_DESCRIPTIONS
    } | {("cog_headers", FAILED_URLS): True}

    # What the run wrote, where RASTERET_ASSETS_WORKSPACE told the code server to write it.
    path = dagster_dev.workspace / GROUP / "collection" / "year=2024" / "month=2" / "part-0.parquet"
    assert path.is_file(), f"no Collection partition at {path}"
    table = pq.read_table(path)
    assert table.num_rows == 2
    assert len(pc.unique(table.column("id"))) == 2
    for dt in table.column("datetime").to_pylist():
        assert datetime(2024, 2, 1, tzinfo=UTC) <= dt < datetime(2024, 3, 1, tzinfo=UTC)
    for band in BANDS:
        column = table.column(f"{band}_metadata")
        assert column.null_count == 0, f"{band}_metadata has nulls"
        offsets = pc.struct_field(column, "tile_offsets").to_pylist()
        assert all(offsets), f"{band}_metadata without tile offsets: {offsets}"


ASSET_NODES_QUERY = "{ assetNodes { assetKey { path } groupName } }"


@pytest.mark.parametrize("launcher", ["dagster dev", "dg dev"])
def test_every_launcher_serves_the_same_location(launcher: str, tmp_path: Path) -> None:
    """``dagster dev`` ([tool.dagster]) and ``dg dev`` ([tool.dg]) load what workspace.yaml
    loads: one location named ``rasteret_assets`` with the demo group's three assets."""
    if not Path(LAUNCHERS[launcher][0]).exists():
        _missing_requirement(f"{LAUNCHERS[launcher][0]} not installed (dagster-dg-cli)")
    server = start_dagster_dev(tmp_path, launcher=launcher)
    try:
        workspace = server.graphql(WORKSPACE_QUERY)["workspaceOrError"]
        assert [e["name"] for e in workspace["locationEntries"]] == [LOCATION]
        nodes = server.graphql(ASSET_NODES_QUERY)["assetNodes"]
        demo = {tuple(n["assetKey"]["path"]) for n in nodes if n["groupName"] == GROUP}
        assert demo == {(GROUP, name) for name in (SOURCE_ASSET, *ASSET_NAMES)}
    finally:
        report = server.stop()
    assert not report.survivors, f"processes of {launcher} survived SIGKILL: {report.survivors}"


@pytest.fixture(scope="module")
def chromium() -> str:
    """Debian's ``chromium`` (or ``chromium-browser`` elsewhere)."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    _missing_requirement("headless Chromium not found (Debian: apt-get install chromium)")
    raise AssertionError("unreachable: _missing_requirement skips or fails")


class _DomReader(HTMLParser):
    """Visible text nodes and link targets of a DOM dump (scripts and styles skipped)."""

    def __init__(self) -> None:
        super().__init__()
        self.texts: list[str] = []
        self.hrefs: list[str] = []
        self._skip_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in {"script", "style"}:
            self._skip_depth += 1
        href = dict(attrs).get("href")
        if tag == "a" and href:
            self.hrefs.append(href)

    def handle_endtag(self, tag: str) -> None:
        if tag in {"script", "style"} and self._skip_depth:
            self._skip_depth -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip_depth and data.strip():
            self.texts.append(data.strip())


def _png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk (no imaging library needed)."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR", f"{path} is no PNG"
    width, height = struct.unpack(">II", head[16:24])
    return width, height


def run_headless_chromium(executable: str, url: str, screenshot: Path, profile: Path) -> str:
    """Load ``url`` once: save a screenshot and return the DOM after scripts have run.

    Chromium runs in its own session so that its helper processes (zygote, GPU, crashpad)
    are killed with it even when it hangs.
    """
    command = [
        executable,
        "--headless",
        "--no-sandbox",  # root in a container has no usable sandbox
        "--disable-gpu",
        "--disable-dev-shm-usage",  # containers often have a 64 MiB /dev/shm
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-crash-reporter",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        f"--virtual-time-budget={VIRTUAL_TIME_BUDGET_MS}",
        f"--screenshot={screenshot}",
        "--dump-dom",
        url,
    ]
    process = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        out, err = process.communicate(timeout=CHROMIUM_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, err = process.communicate()
        pytest.fail(f"chromium timed out after {CHROMIUM_TIMEOUT:.0f}s: {err.decode()[-2000:]}")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 0, f"chromium exited {process.returncode}: {err.decode()[-2000:]}"
    return out.decode()


def test_the_asset_graph_of_the_demo_group_renders_in_headless_chromium(
    chromium: str,
    dagster_dev: DagsterDev,
    february_run: FinishedRun,
    tmp_path: Path,
    timings: dict[str, float | str | list[str]],
) -> None:
    # The "join the community" dialog would cover the graph in the screenshot.
    assert dagster_dev.graphql("{ shouldShowNux }")["shouldShowNux"] is False

    ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
    screenshot = ARTIFACTS_DIR / "e2e_demo_asset_group.png"
    screenshot.unlink(missing_ok=True)
    started = time.monotonic()
    dom = run_headless_chromium(
        chromium, dagster_dev.url + GROUP_LINEAGE_ROUTE, screenshot, tmp_path / "profile"
    )
    timings["chromium_s"] = round(time.monotonic() - started, 2)
    (ARTIFACTS_DIR / "e2e_demo_asset_group.html").write_text(dom)
    print(f"\nscreenshot of {GROUP_LINEAGE_ROUTE}: {screenshot}")

    reader = _DomReader()
    reader.feed(dom)
    texts = set(reader.texts)
    for name in ASSET_NAMES:
        # A graph node shows the asset's name and links to the asset's own page.
        assert name in texts, f"asset node {name!r} not rendered; texts: {sorted(texts)[:80]}"
        assert any(h.startswith(f"/assets/{GROUP}/{name}") for h in reader.hrefs), name
        # Its "Latest event" links to the step of the run this module launched.
        run_link = f"/runs/{february_run.run_id}"
        assert any(h.startswith(run_link) and f"{GROUP}__{name}" in h for h in reader.hrefs), (
            f"{name}: no link to {run_link}; links: {reader.hrefs}"
        )
    checks = len(CHECK_DESCRIPTIONS)
    assert f"{checks} / {checks} Passed" in texts, "collection's asset checks not shown as passed"
    assert "Join the Dagster community" not in texts

    assert screenshot.is_file(), "chromium wrote no screenshot"
    assert _png_size(screenshot) == WINDOW


@dataclass
class DemoBackfill:
    seconds: float
    output: str
    backfill_id: str


@pytest.fixture(scope="module")
def demo_backfill(
    dagster_dev: DagsterDev, timings: dict[str, float | str | list[str]]
) -> DemoBackfill:
    """The README's first command, run against the server's instance and workspace."""
    env = {
        **os.environ,
        "DAGSTER_HOME": str(dagster_dev.home),
        "RASTERET_ASSETS_WORKSPACE": str(dagster_dev.workspace),
    }
    env.pop("RASTERET_ASSETS_SOURCES", None)
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "rasteret_assets.demo"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    seconds = time.monotonic() - started
    timings["demo_backfill_s"] = round(seconds, 2)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    backfill_id = result.stdout.split("backfill ", 1)[1].split()[0]
    return DemoBackfill(seconds, result.stdout, backfill_id)


JOB_RUNS_QUERY = """
query JobRuns($filter: RunsFilter!) {
  runsOrError(filter: $filter) {
    __typename
    ... on Runs { results { runId status tags { key value } } }
  }
}
"""

BACKFILLS_QUERY = """
{
  partitionBackfillsOrError {
    __typename
    ... on PartitionBackfills { results { id status numPartitions } }
  }
}
"""

ASSET_QUERY = """
query Asset($key: AssetKeyInput!) {
  assetNodeOrError(assetKey: $key) {
    __typename
    ... on AssetNode {
      partitionKeys
      partitionStats { numMaterialized numFailed numPartitions }
      metadataEntries {
        label
        ... on TableSchemaMetadataEntry { schema { columns { name description } } }
      }
    }
  }
  assetOrError(assetKey: $key) {
    ... on Asset { assetMaterializations(limit: 1) { partition metadataEntries { label } } }
  }
}
"""


def test_the_demo_command_backfills_real_runs_of_the_job(
    dagster_dev: DagsterDev, demo_backfill: DemoBackfill
) -> None:
    """What the UI shows after the README's first command: the months as runs of the job
    (the job's Runs tab filters by its repository tag), one completed backfill, every
    partition of the catalog's extent materialized, none failed, and no more."""
    repository = {"key": ".dagster/repository", "value": f"__repository__@{LOCATION}"}
    runs = dagster_dev.graphql(
        JOB_RUNS_QUERY,
        {
            "filter": {
                "pipelineName": JOB,
                "tags": [
                    repository,
                    {"key": "dagster/backfill", "value": demo_backfill.backfill_id},
                ],
            }
        },
    )["runsOrError"]["results"]
    partitions = sorted(
        {t["key"]: t["value"] for t in r["tags"]}["dagster/partition"] for r in runs
    )
    assert partitions == ["2024-01-01", "2024-02-01", "2024-03-01"]
    assert {r["status"] for r in runs} == {"SUCCESS"}
    backfills = dagster_dev.graphql(BACKFILLS_QUERY)["partitionBackfillsOrError"]["results"]
    ours = [b for b in backfills if b["id"] == demo_backfill.backfill_id]
    assert ours and ours[0]["status"] == "COMPLETED" and ours[0]["numPartitions"] == 3

    asset = dagster_dev.graphql(ASSET_QUERY, {"key": {"path": [GROUP, "collection"]}})
    node = asset["assetNodeOrError"]
    assert node["partitionKeys"] == partitions
    assert node["partitionStats"] == {"numMaterialized": 3, "numFailed": 0, "numPartitions": 3}
    (schema,) = [e for e in node["metadataEntries"] if e["label"] == "dagster/column_schema"]
    columns = {c["name"]: c["description"] for c in schema["schema"]["columns"]}
    assert {"id", "red_metadata", "run_id", "ingested_at", "parser_version"} <= columns.keys()
    assert all(columns.values()), f"columns without a description: {columns}"
    (latest,) = asset["assetOrError"]["assetMaterializations"]
    labels = {e["label"] for e in latest["metadataEntries"]}
    assert {"dagster/uri", "dagster/row_count", "dagster_run", "dagster/column_schema"} <= labels


SNAPSHOTS_QUERY = """
query Snapshots($runId: ID!) {
  runOrError(runId: $runId) { ... on Run { pipelineSnapshotId } }
  pipelineOrError(params: {
    pipelineName: "demo_monthly",
    repositoryName: "__repository__",
    repositoryLocationName: "rasteret_assets"
  }) { ... on Pipeline { pipelineSnapshotId } }
}
"""

REEXECUTE_MUTATION = """
mutation Reexecute($runId: String!) {
  launchPipelineReexecution(reexecutionParams: {parentRunId: $runId, strategy: ALL_STEPS}) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
  }
}
"""


def test_a_demo_run_re_executes_as_the_same_job_version(
    dagster_dev: DagsterDev, demo_backfill: DemoBackfill
) -> None:
    """The UI warns on re-execution when a run's job snapshot differs from the loaded job's;
    the demo's runs carry the loaded job's snapshot, and their re-execution succeeds."""
    tag = {"key": "dagster/backfill", "value": demo_backfill.backfill_id}
    runs = dagster_dev.graphql(JOB_RUNS_QUERY, {"filter": {"tags": [tag]}})["runsOrError"]
    parent = runs["results"][0]["runId"]
    snapshots = dagster_dev.graphql(SNAPSHOTS_QUERY, {"runId": parent})
    assert (
        snapshots["runOrError"]["pipelineSnapshotId"]
        == snapshots["pipelineOrError"]["pipelineSnapshotId"]
    )
    launched = dagster_dev.graphql(REEXECUTE_MUTATION, {"runId": parent})
    launched = launched["launchPipelineReexecution"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    client = DagsterGraphQLClient("127.0.0.1", port_number=dagster_dev.port, timeout=30)
    run_id = launched["run"]["runId"]
    deadline = time.monotonic() + RUN_TIMEOUT
    while (status := client.get_run_status(run_id).value) not in TERMINAL_RUN_STATUSES:
        assert time.monotonic() < deadline, f"re-execution still {status}"
        time.sleep(0.5)
    assert status == "SUCCESS", dagster_dev.log_tail()


def test_the_location_loads_without_beta_or_preview_warnings(dagster_dev: DagsterDev) -> None:
    log = dagster_dev.log_path.read_text(errors="replace")
    assert "BetaWarning" not in log and "PreviewWarning" not in log, dagster_dev.log_tail()


#: The asset pages the screenshots show: overview, partitions, checks.
ASSET_PAGES = {
    "asset_page": f"/assets/{GROUP}/collection",
    "partitions": f"/assets/{GROUP}/collection?view=partitions",
    "checks": f"/assets/{GROUP}/collection?view=checks",
}


@pytest.mark.parametrize("page", list(ASSET_PAGES))
def test_the_collection_asset_pages_render_in_headless_chromium(
    page: str, chromium: str, dagster_dev: DagsterDev, demo_backfill: DemoBackfill, tmp_path: Path
) -> None:
    ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
    screenshot = ARTIFACTS_DIR / f"e2e_demo_collection_{page}.png"
    screenshot.unlink(missing_ok=True)
    dom = run_headless_chromium(
        chromium, dagster_dev.url + ASSET_PAGES[page], screenshot, tmp_path / "profile"
    )
    (ARTIFACTS_DIR / f"e2e_demo_collection_{page}.html").write_text(dom)
    print(f"\nscreenshot of {ASSET_PAGES[page]}: {screenshot}")
    reader = _DomReader()
    reader.feed(dom)
    text = " ".join(reader.texts)
    expected = {
        "asset_page": ["Row count", "Item id, unique within the month", "Open defs.yaml"],
        "partitions": ["2024-03-01"],
        "checks": ["header_coverage", "tile_table_consistency"],
    }[page]
    for word in expected:
        assert word in text, f"{word!r} not on {ASSET_PAGES[page]}: {text[:2000]}"
    assert _png_size(screenshot) == WINDOW


BACKFILL_MUTATION = """
mutation Backfill($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
  }
}
"""

#: Three runs at once, header steps one at a time across them (every pool's default limit).
SCALE_DAGSTER_YAML = """\
telemetry:
  enabled: false
nux:
  enabled: false
run_queue:
  dequeue_interval_seconds: 1
  dequeue_use_threads: true         # launch the dequeued runs in parallel, not one by one
  dequeue_num_workers: 3
concurrency:
  runs:
    max_concurrent_runs: 3
  pools:
    default_limit: 1
    granularity: op
"""


def _worker(instance: Any, run_id: str) -> tuple[float, float, int]:
    """``(first, last event time, pid)`` of the run's worker process: every event it wrote."""
    events = [
        (entry.timestamp, entry.dagster_event.pid)
        for entry in instance.all_logs(run_id)
        if entry.dagster_event is not None and entry.dagster_event.pid is not None
    ]
    pids = {pid for _, pid in events}
    assert events and len(pids) == 1, (run_id, events)
    return min(t for t, _ in events), max(t for t, _ in events), pids.pop()


def _step(instance: Any, run_id: str, step: str) -> tuple[float, float, int]:
    """``(STEP_START, STEP_SUCCESS time, pid)``: while the step held its pool slot (a step
    waiting for a slot logs engine events before it starts)."""
    from dagster._core.events import DagsterEventType

    times = {
        entry.dagster_event.event_type: (entry.timestamp, entry.dagster_event.pid)
        for entry in instance.all_logs(run_id)
        if entry.dagster_event is not None and entry.dagster_event.step_key == step
    }
    (start, pid), (end, _) = (
        times[DagsterEventType.STEP_START],
        times[DagsterEventType.STEP_SUCCESS],
    )
    return start, end, pid


def _overlap(a: tuple[float, float, int], b: tuple[float, float, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def test_a_backfill_runs_months_concurrently_on_an_s3_workspace(
    moto_s3: Any, tmp_path: Path, timings: dict[str, float | str | list[str]]
) -> None:
    """Several months as separate runs in separate processes (run queue + default launcher),
    the workspace on S3 (moto), the ``rasteret_headers`` pool honoured across runs; after it,
    the collection is complete and correct and the local workspace folder is still empty."""
    from rasteret_assets.collection import Collection

    root = f"s3://{moto_s3.public_bucket}/scale"
    server = start_dagster_dev(
        tmp_path,
        dagster_yaml=SCALE_DAGSTER_YAML,
        extra_env={"RASTERET_ASSETS_WORKSPACE": root, "AWS_ENDPOINT_URL": moto_s3.endpoint_url},
    )
    keys = ["2024-01-01", "2024-02-01", "2024-03-01"]
    started = time.monotonic()
    try:
        launched = server.graphql(
            BACKFILL_MUTATION,
            {
                "params": {
                    "selector": {
                        "partitionSetName": f"{JOB}_partition_set",
                        "repositorySelector": {
                            "repositoryName": "__repository__",
                            "repositoryLocationName": LOCATION,
                        },
                    },
                    "partitionNames": keys,
                    "forceSynchronousSubmission": True,
                }
            },
        )["launchPartitionBackfill"]
        assert launched["__typename"] == "LaunchBackfillSuccess", launched
        while True:
            tag = {"key": "dagster/backfill", "value": launched["backfillId"]}
            found = server.graphql(JOB_RUNS_QUERY, {"filter": {"tags": [tag]}})
            runs = found["runsOrError"]["results"]
            if len(runs) == len(keys) and all(r["status"] in TERMINAL_RUN_STATUSES for r in runs):
                break
            if time.monotonic() - started > 4 * RUN_TIMEOUT:
                pytest.fail(f"backfill not done: {runs}\n{server.log_tail()}")
            time.sleep(0.5)
    finally:
        report = server.stop()
    timings["s3_backfill_s"] = round(time.monotonic() - started, 2)
    assert not report.survivors
    assert {r["status"] for r in runs} == {"SUCCESS"}, server.log_tail()

    import dagster as dg

    with dg.DagsterInstance.from_config(str(server.home)) as instance:
        whole = [_worker(instance, r["runId"]) for r in runs]
        headers = [_step(instance, r["runId"], f"{GROUP}__cog_headers") for r in runs]
    print(f"\nrun workers {whole}\nheader steps {headers}")
    # Separate processes, and at least two runs at the same time.
    assert len({pid for *_, pid in whole}) == len(keys)
    assert any(_overlap(a, b) for i, a in enumerate(whole) for b in whole[i + 1 :]), whole
    # The pool: never two header steps at once, whichever run they belong to.
    assert not any(_overlap(a, b) for i, a in enumerate(headers) for b in headers[i + 1 :])

    s3 = {"client_kwargs": {"endpoint_url": moto_s3.endpoint_url}}
    table = Collection.open(f"{root}/{GROUP}/collection", storage_options=s3).to_table()
    assert table.num_rows == 6 and sorted(set(table.column("month").to_pylist())) == [1, 2, 3]
    assert len(set(table.column("id").to_pylist())) == 6
    for band in BANDS:
        assert table.column(f"{band}_metadata").null_count == 0
    assert set(table.column("run_id").to_pylist()) == {r["runId"] for r in runs}
    assert not any(server.workspace.iterdir()), "a step wrote to the local workspace folder"
