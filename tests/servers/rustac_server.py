"""A real STAC API for tests: ``rustac serve`` (PyPI ``rustac``) on a free loopback port.

rustac's in-memory backend (``--use-duckdb false``; its DuckDB backend would try to download
the spatial extension) loads Items, ItemCollections, Collections and stac-geoparquet files
given on the command line and serves STAC API item search, GET and POST.

What its memory backend does (checked against rustac 0.9.18):

* supports ``collections``, ``ids``, ``bbox``, ``intersects``, ``datetime``, ``limit``;
* pages with a POST ``next`` link whose body carries the whole search plus ``skip``;
* advertises neither the ``filter`` nor the ``query`` conformance class and does not
  evaluate them: unknown body fields (``query``, ``filter-lang``) are matched as item
  properties, so ``query`` or a ``filter`` sent with its ``filter-lang`` matches nothing,
  while a bare ``filter`` is ignored (every item comes back). That is why the search client
  refuses both against APIs that do not advertise them;
* rejects malformed bodies (e.g. a 3-number bbox) with a plain-text 400;
* answers GET searches that have ``collections=`` or ``bbox=`` with a 500 ("unsupported
  value"), so tests search with POST (GET works with ``datetime``/``limit`` alone).
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path


def find_rustac() -> str | None:
    """The ``rustac`` console script of this interpreter's environment, else on ``PATH``."""
    beside = Path(sys.executable).parent / "rustac"
    if beside.is_file():
        return str(beside)
    return shutil.which("rustac")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RustacServer:
    """A running ``rustac serve`` process (stopped with :meth:`stop`)."""

    url: str
    process: subprocess.Popen[bytes] = field(repr=False)
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.is_file() else ""

    def stop(self) -> None:
        """Terminate this server's own process (and only it)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def start_rustac(
    executable: str,
    hrefs: Sequence[str | Path],
    *,
    log_dir: Path,
    startup_timeout: float = 30.0,
    attempts: int = 3,
) -> RustacServer:
    """Start ``rustac serve`` with ``hrefs`` loaded and wait until it answers ``GET /``.

    The port is picked by binding port 0 and released before rustac binds it; in the rare
    case another process takes it in between, the start is retried on a new port.
    """
    last_error = ""
    for attempt in range(attempts):
        port = _free_port()
        log_path = log_dir / f"rustac-{port}.log"
        command = [
            executable,
            "serve",
            "--use-duckdb",
            "false",
            "--create-collections",
            "--addr",
            f"127.0.0.1:{port}",
            *(str(Path(h).resolve()) for h in hrefs),
        ]
        with log_path.open("wb") as log:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        server = RustacServer(f"http://127.0.0.1:{port}", process, log_path)
        if _wait_ready(server, startup_timeout):
            return server
        server.stop()
        last_error = f"attempt {attempt + 1}: {server.log()[-2000:]}"
    raise RuntimeError(f"rustac serve did not start: {last_error}")


def _wait_ready(server: RustacServer, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            return False
        with (
            contextlib.suppress(urllib.error.URLError, ConnectionError, TimeoutError),
            urllib.request.urlopen(server.url + "/", timeout=2) as resp,
        ):
            if resp.status == 200:
                return True
        time.sleep(0.1)
    return False
