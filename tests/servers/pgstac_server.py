"""A real pgstac-backed STAC API for tests: stac-fastapi-pgstac on a private PostgreSQL cluster.

rustac's in-memory server (``rustac_server.py``) neither advertises nor evaluates ``query``
and CQL2 ``filter``; Planetary Computer, Earth Search and most self-hosted catalogs run
stac-fastapi on pgstac, which does both and pages with opaque ``token`` values in a POST
``next`` link body. This module runs that stack locally, all on 127.0.0.1:

1. a throw-away PostgreSQL cluster (Debian's ``postgresql-15`` binaries and
   ``postgresql-15-postgis-3``) in a fresh temp directory, on a port of its own, with its
   unix socket inside that directory, so it never touches a system cluster;
2. the pgstac schema installed by ``pypgstac``'s migrator and the fixture collections and
   items loaded with ``pypgstac``'s loader, the tools real deployments use;
3. stac-fastapi-pgstac under uvicorn with the transactions extension enabled, so a test can
   add items between two searches the way new acquisitions appear for a Dagster sensor.

PostgreSQL refuses to run as root; when the tests run as root (CI here does) the server
binaries run as the ``postgres`` system user that Debian's packages create, through
``subprocess``'s ``user=``/``group=`` (no ``sudo``/``runuser`` needed). The temp directory is
made under the system temp dir rather than pytest's per-user ``0700`` directory for the
same reason: that user must be able to reach it.

Durability is switched off (``fsync``, ``synchronous_commit``, ``full_page_writes``): the
cluster lives for one test session and speed is all that matters.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

#: Where Debian's ``postgresql-NN`` packages put each major version's server binaries; the
#: PostGIS files of ``postgresql-NN-postgis-3`` go to the same version's share/lib dirs.
DEBIAN_POSTGRES_ROOT = Path("/usr/lib/postgresql")
#: Environment variable naming a PostgreSQL ``bin`` directory to use instead.
BINDIR_ENV = "PGSTAC_TEST_PG_BINDIR"
#: The OS user the server runs as when the tests run as root.
POSTGRES_OS_USER = "postgres"
#: The cluster's superuser and the database that holds the pgstac schema.
SUPERUSER = "postgres"
DATABASE = "pgstac"
#: Python modules the stack needs (pip: stac-fastapi-pgstac, pypgstac[psycopg], uvicorn).
REQUIRED_MODULES = ("stac_fastapi.pgstac", "pypgstac", "psycopg", "uvicorn")
INSTALL_HINT = (
    "apt-get install -y postgresql-15 postgresql-15-postgis-3 and "
    "pip install stac-fastapi-pgstac pypgstac[psycopg] uvicorn"
)

_SERVER_SETTINGS = (
    "fsync=off",
    "synchronous_commit=off",
    "full_page_writes=off",
    "listen_addresses=127.0.0.1",
    "max_connections=40",
)


class PgstacUnavailableError(RuntimeError):
    """Something the pgstac stack needs is not installed here (binaries, PostGIS, packages)."""


@dataclass(frozen=True)
class PostgresBinaries:
    """A PostgreSQL installation with PostGIS, and whom to run its server binaries as."""

    bindir: Path
    version: str
    os_user: str | None

    def tool(self, name: str) -> str:
        return str(self.bindir / name)


def check_python_packages() -> None:
    """Raise :class:`PgstacUnavailableError` naming the missing Python modules, if any."""
    missing = [name for name in REQUIRED_MODULES if not _module_available(name)]
    if missing:
        raise PgstacUnavailableError(f"missing Python modules {missing}: {INSTALL_HINT}")


def _module_available(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False


def find_postgres() -> PostgresBinaries:
    """The newest PostgreSQL whose installation also has PostGIS (``$PGSTAC_TEST_PG_BINDIR``
    first). ``pg_config`` of the *same* bindir says where extensions live, so a PostGIS built
    for another major version is never mistaken for a usable one."""
    override = os.environ.get(BINDIR_ENV)
    if override:
        candidates = [Path(override)]
    else:
        versions = sorted(
            (p for p in DEBIAN_POSTGRES_ROOT.glob("*/bin") if p.parent.name.isdigit()),
            key=lambda p: int(p.parent.name),
            reverse=True,
        )
        candidates = versions
    problems = []
    for bindir in candidates:
        tools = ("initdb", "postgres", "pg_config")
        if not all((bindir / tool).is_file() for tool in tools):
            problems.append(f"{bindir}: lacks one of {tools}")
            continue
        sharedir = _pg_config(bindir, "--sharedir")
        if not (Path(sharedir) / "extension" / "postgis.control").is_file():
            problems.append(f"{bindir}: no PostGIS in {sharedir}/extension")
            continue
        version = _pg_config(bindir, "--version")
        return PostgresBinaries(bindir, version, _server_user())
    where = "; ".join(problems) or f"no {DEBIAN_POSTGRES_ROOT}/*/bin"
    raise PgstacUnavailableError(f"no PostgreSQL with PostGIS found ({where}): {INSTALL_HINT}")


def _pg_config(bindir: Path, flag: str) -> str:
    result = subprocess.run(
        [str(bindir / "pg_config"), flag], capture_output=True, text=True, check=True
    )
    return result.stdout.strip()


def _server_user() -> str | None:
    """``postgres`` when we are root (PostgreSQL refuses root), else ``None`` (run as us)."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(POSTGRES_OS_USER)
    except KeyError:
        raise PgstacUnavailableError(
            f"running as root and there is no {POSTGRES_OS_USER!r} system user to run "
            f"PostgreSQL as (Debian's postgresql-common creates it): {INSTALL_HINT}"
        ) from None
    return POSTGRES_OS_USER


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PostgresCluster:
    """A running private cluster; :meth:`stop` shuts it down and deletes its directory."""

    binaries: PostgresBinaries
    workdir: Path
    port: int
    password: str
    process: subprocess.Popen[bytes] = field(repr=False)

    @property
    def log_path(self) -> Path:
        return self.workdir / f"postgres-{self.port}.log"

    def dsn(self, database: str = DATABASE) -> str:
        """A libpq/asyncpg URL for the superuser over TCP (stac-fastapi needs host:port)."""
        return (
            f"postgresql://{SUPERUSER}:{quote(self.password, safe='')}"
            f"@127.0.0.1:{self.port}/{database}"
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.is_file() else ""

    def stop(self, *, remove: bool = True) -> None:
        """Fast shutdown (SIGINT: roll back sessions, no checkpoint wait), then escalate."""
        _stop_process(self.process, signal.SIGINT, group=False)
        if remove:
            shutil.rmtree(self.workdir, ignore_errors=True)


def start_cluster(
    binaries: PostgresBinaries, *, startup_timeout: float = 30.0, attempts: int = 3
) -> PostgresCluster:
    """initdb a fresh cluster in a new temp directory and start it on a free loopback port.

    The port is found by binding port 0 and released before postgres binds it; if another
    process takes it in between, postgres exits and the start is retried on a new port.
    """
    workdir = Path(tempfile.mkdtemp(prefix="pgstac-test-"))
    try:
        password = secrets.token_urlsafe(18)
        _initdb(binaries, workdir, password)
        last_error = ""
        for attempt in range(attempts):
            port = _free_port()
            log_path = workdir / f"postgres-{port}.log"
            command = [binaries.tool("postgres"), "-D", str(workdir / "data"), "-p", str(port)]
            command += ["-k", str(workdir)]  # the unix socket stays private to this run
            for setting in _SERVER_SETTINGS:
                command += ["-c", setting]
            with log_path.open("wb") as log:
                process = subprocess.Popen(
                    command,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    **_as_server_user(binaries, workdir),
                )
            cluster = PostgresCluster(binaries, workdir, port, password, process)
            if _wait_for_postgres(cluster, startup_timeout):
                return cluster
            cluster.stop(remove=False)
            last_error = f"attempt {attempt + 1} (port {port}): {cluster.log()[-2000:]}"
        raise RuntimeError(f"PostgreSQL did not start: {last_error}")
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise


def _as_server_user(binaries: PostgresBinaries, workdir: Path) -> dict[str, Any]:
    """Popen arguments that run a PostgreSQL binary as the right OS user, in ``workdir``.

    A minimal environment with the C locale: the server must not depend on which locales
    this machine has generated, nor inherit ``PG*`` variables meant for clients.
    """
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "LANG": "C"}
    kwargs: dict[str, Any] = {"cwd": str(workdir), "env": env}
    if binaries.os_user is not None:
        entry = pwd.getpwnam(binaries.os_user)
        env["HOME"] = entry.pw_dir
        kwargs |= {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
    return kwargs


def _initdb(binaries: PostgresBinaries, workdir: Path, password: str) -> None:
    """Create the data directory: trust over the private socket, SCRAM passwords over TCP."""
    password_file = workdir / "superuser-password"
    password_file.write_text(password + "\n")
    if binaries.os_user is not None:
        entry = pwd.getpwnam(binaries.os_user)
        for path in (workdir, password_file):
            os.chown(path, entry.pw_uid, entry.pw_gid)
    password_file.chmod(0o600)
    command = [
        binaries.tool("initdb"),
        "-D",
        str(workdir / "data"),
        "-U",
        SUPERUSER,
        f"--pwfile={password_file}",
        "--auth-local=trust",
        "--auth-host=scram-sha-256",
        "--encoding=UTF8",
        "--locale=C",
        "--no-sync",  # nothing here needs to survive a power cut
    ]
    result = subprocess.run(
        command, capture_output=True, text=True, check=False, **_as_server_user(binaries, workdir)
    )
    password_file.unlink()
    if result.returncode != 0:
        raise RuntimeError(f"initdb failed ({result.returncode}): {result.stderr[-2000:]}")


def _wait_for_postgres(cluster: PostgresCluster, timeout: float) -> bool:
    """Poll with real logins until one succeeds, the server exits or time runs out."""
    import psycopg

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cluster.process.poll() is not None:
            return False
        try:
            with psycopg.connect(cluster.dsn("postgres"), connect_timeout=2):
                return True
        except psycopg.OperationalError:
            time.sleep(0.05)
    return False


def install_pgstac(cluster: PostgresCluster) -> str:
    """Create the database and run ``pypgstac migrate``; returns the pgstac version."""
    import psycopg
    from pypgstac.db import PgstacDB
    from pypgstac.migrate import Migrate

    with psycopg.connect(cluster.dsn("postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{DATABASE}"')
    with PgstacDB(dsn=cluster.dsn()) as db:
        return str(Migrate(db).run_migration())


def load_fixtures(
    cluster: PostgresCluster,
    collections: Iterable[Mapping[str, Any]],
    items: Iterable[Mapping[str, Any]],
) -> None:
    """Bulk-load with pypgstac's loader (collections first: items land in their partitions)."""
    from pypgstac.db import PgstacDB
    from pypgstac.load import Loader, Methods

    with PgstacDB(dsn=cluster.dsn()) as db:
        loader = Loader(db=db)
        loader.load_collections(iter([dict(c) for c in collections]), Methods.insert)
        item_list = [dict(i) for i in items]
        if item_list:
            loader.load_items(iter(item_list), Methods.insert)


@dataclass
class PgstacApi:
    """stac-fastapi-pgstac on ``url``, backed by ``cluster``; :meth:`stop` ends both."""

    url: str
    cluster: PostgresCluster
    process: subprocess.Popen[bytes] = field(repr=False)
    log_path: Path
    pgstac_version: str
    startup_seconds: float

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.is_file() else ""

    def add_collection(self, collection: Mapping[str, Any]) -> dict[str, Any]:
        """``POST /collections`` (transactions extension); returns the stored collection."""
        return _send("POST", f"{self.url}/collections", collection)

    def add_item(self, item: Mapping[str, Any], collection_id: str | None = None) -> dict[str, Any]:
        """``POST /collections/{id}/items``; the item's ``collection`` is set to that id."""
        target = collection_id or str(item["collection"])
        body = {**item, "collection": target}
        return _send("POST", f"{self.url}/collections/{quote(target, safe='')}/items", body)

    def delete_item(self, collection_id: str, item_id: str) -> None:
        """``DELETE /collections/{id}/items/{item_id}``."""
        _send(
            "DELETE",
            f"{self.url}/collections/{quote(collection_id, safe='')}/items/"
            f"{quote(item_id, safe='')}",
            None,
        )

    def stop(self) -> None:
        """Kill the API's process group (uvicorn and anything it spawned), then the cluster."""
        try:
            _stop_process(self.process, signal.SIGTERM, group=True)
        finally:
            self.cluster.stop()


def _send(method: str, url: str, body: Mapping[str, Any] | None) -> dict[str, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    request.add_header("Accept", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            raw = resp.read()
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")[:2000]
        raise RuntimeError(f"{method} {url} answered {exc.code}: {detail}") from None
    return json.loads(raw) if raw.strip() else {}


def start_pgstac_api(
    collections: Sequence[Mapping[str, Any]],
    items: Sequence[Mapping[str, Any]],
    *,
    binaries: PostgresBinaries | None = None,
    startup_timeout: float = 30.0,
) -> PgstacApi:
    """Start the cluster, install pgstac, load the fixtures and serve them; wait until
    ``GET /collections`` lists every loaded collection.

    Raises :class:`PgstacUnavailableError` before starting anything when a piece is missing.
    """
    check_python_packages()
    binaries = binaries or find_postgres()
    started = time.monotonic()
    cluster = start_cluster(binaries, startup_timeout=startup_timeout)
    try:
        version = install_pgstac(cluster)
        load_fixtures(cluster, collections, items)
        process, url, log_path = _start_uvicorn(cluster)
        api = PgstacApi(url, cluster, process, log_path, version, 0.0)
        try:
            want = {str(c["id"]) for c in collections}
            _wait_for_api(api, want, startup_timeout)
        except BaseException:
            _stop_process(process, signal.SIGTERM, group=True)
            raise
    except BaseException:
        cluster.stop()
        raise
    api.startup_seconds = time.monotonic() - started
    return api


def _start_uvicorn(cluster: PostgresCluster) -> tuple[subprocess.Popen[bytes], str, Path]:
    """uvicorn on a socket we bound ourselves (``--fd``): no window for another process to
    take the port between choosing it and listening on it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.pop("ENABLED_EXTENSIONS", None)  # unset means every extension
        env |= {
            "PGUSER": SUPERUSER,
            "PGPASSWORD": cluster.password,
            "PGHOST": "127.0.0.1",
            "PGPORT": str(cluster.port),
            "PGDATABASE": DATABASE,
            "ENABLE_TRANSACTIONS_EXTENSIONS": "true",
            "DB_MIN_CONN_SIZE": "1",
            "DB_MAX_CONN_SIZE": "5",
        }
        log_path = cluster.workdir / f"stac-fastapi-{port}.log"
        command = [
            sys.executable,
            "-m",
            "uvicorn",
            "stac_fastapi.pgstac.app:create_app",
            "--factory",
            "--fd",
            str(sock.fileno()),
            "--log-level",
            "warning",
        ]
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                # pydantic-settings reads ``.env`` from the working directory: use ours.
                cwd=str(cluster.workdir),
                pass_fds=(sock.fileno(),),
                start_new_session=True,
            )
    finally:
        sock.close()  # the child holds its own copy of the listening socket
    return process, f"http://127.0.0.1:{port}", log_path


def _wait_for_api(api: PgstacApi, collection_ids: set[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if api.process.poll() is not None:
            raise RuntimeError(f"stac-fastapi-pgstac exited: {api.log()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{api.url}/collections", timeout=2) as resp:
                document = json.loads(resp.read())
            served = {c["id"] for c in document.get("collections", [])}
            if collection_ids <= served:
                return
            last = f"collections served: {sorted(served)}"
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            last = repr(exc)
        time.sleep(0.1)
    raise RuntimeError(
        f"stac-fastapi-pgstac not ready after {timeout:.0f}s ({last}): {api.log()[-3000:]}"
    )


def _stop_process(process: subprocess.Popen[bytes], sig: signal.Signals, *, group: bool) -> None:
    """Send ``sig`` to the process (or its whole group), then SIGKILL after 10 s."""
    if process.poll() is not None:
        return
    send = (lambda s: os.killpg(process.pid, s)) if group else process.send_signal
    with contextlib.suppress(ProcessLookupError):
        send(sig)
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            send(signal.SIGKILL)
        process.wait(10)


# -- fixture data ------------------------------------------------------------------------


def collection_from_items(
    collection_id: str, items: Sequence[Mapping[str, Any]], description: str
) -> dict[str, Any]:
    """A minimal valid STAC Collection whose extent covers ``items``.

    The Planetary Computer fixtures are bare item lists without their Collection; pgstac
    needs one before it accepts items (it partitions items by collection).
    """
    boxes = [item["bbox"] for item in items if item.get("bbox")]
    bbox = (
        [
            min(b[0] for b in boxes),
            min(b[1] for b in boxes),
            max(b[2] for b in boxes),
            max(b[3] for b in boxes),
        ]
        if boxes
        else [-180.0, -90.0, 180.0, 90.0]
    )
    times = sorted(
        t
        for item in items
        for key in ("datetime", "start_datetime", "end_datetime")
        if (t := item["properties"].get(key))
    )
    interval = [times[0], times[-1]] if times else [None, None]
    return {
        "type": "Collection",
        "stac_version": "1.0.0",
        "id": collection_id,
        "description": description,
        "license": "proprietary",
        "extent": {"spatial": {"bbox": [bbox]}, "temporal": {"interval": [interval]}},
        "links": [],
    }


def read_items(path: Path) -> list[dict[str, Any]]:
    """Items of a JSON file holding an ItemCollection or a bare JSON array of Items."""
    document = json.loads(path.read_text())
    items = document["features"] if isinstance(document, Mapping) else document
    return [dict(item) for item in items]


_SAFE_ID = re.compile(r"[^A-Za-z0-9_.-]")


def unique_collection_id(prefix: str) -> str:
    """A collection id no other test uses, valid for pgstac (no characters it rejects)."""
    return f"{_SAFE_ID.sub('-', prefix)}-{secrets.token_hex(4)}"


#: What the ``pgstac_api`` fixture loads: ``(collection id, items file, collection file)``
#: relative to ``shared/fixtures/stac``. Without a collection file one is derived from the
#: items (:func:`collection_from_items`).
FIXTURE_SETS: tuple[tuple[str, str, str | None], ...] = (
    ("sentinel-2-l2a", "planetary-computer/sentinel-2-l2a_items_4.json", None),
    ("landsat-c2-l2", "planetary-computer/landsat-c2-l2_items_4.json", None),
    (
        "sentinel-2-c1-l2a",
        "earth-search/sentinel-2-c1-l2a_item-collection_10.json",
        "earth-search/sentinel-2-c1-l2a_collection.json",
    ),
)


def fixture_catalog(stac_dir: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The collections and items of :data:`FIXTURE_SETS`, ready for :func:`start_pgstac_api`."""
    collections: list[dict[str, Any]] = []
    items: list[dict[str, Any]] = []
    for collection_id, items_file, collection_file in FIXTURE_SETS:
        members = read_items(stac_dir / items_file)
        if collection_file is None:
            collection = collection_from_items(
                collection_id, members, f"{collection_id} items from {items_file}"
            )
        else:
            collection = json.loads((stac_dir / collection_file).read_text())
        collections.append(collection)
        items += [{**item, "collection": collection_id} for item in members]
    return collections, items
