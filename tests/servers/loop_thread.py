"""An asyncio event loop in a daemon thread, for the test servers.

The servers must answer over real TCP while the tests' own loops (pytest-asyncio,
``asyncio.run``) run in the main thread, so each server owns a loop in a thread of its own.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable


class LoopThread:
    """Start a loop thread around a ``listen`` coroutine; stop it after a ``shutdown`` one."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def start(self, listen: Callable[[], Awaitable[None]], timeout: float = 10.0) -> None:
        """Run ``listen`` on a new loop thread and return once it has; its errors (a port
        that cannot be bound) are raised here, in the caller's thread."""
        ready = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            try:
                loop.run_until_complete(listen())
            except BaseException as exc:
                errors.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        self._thread = threading.Thread(target=run, name=self.name, daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise RuntimeError(f"{self.name} did not start within {timeout} s")
        if errors:
            raise errors[0]

    def stop(self, shutdown: Callable[[], Awaitable[None]], timeout: float = 10.0) -> None:
        """Run ``shutdown`` on the loop, then stop the loop and join the thread (idempotent)."""
        if self._loop is None or self._thread is None:
            return
        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(timeout)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)
        self._loop = self._thread = None
