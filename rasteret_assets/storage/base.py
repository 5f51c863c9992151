"""The storage contract every backend honours.

Header parsing needs only three things from storage: bytes at an offset, several such
slices at once, and the object's identity (size/ETag) so a re-run can tell whether a file
changed. Keeping the contract this small lets users plug in their own backend
(the reference API's ``backend=`` argument).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """What storage says about an object; any field may be unknown (None)."""

    size: int | None = None
    etag: str | None = None
    last_modified: str | None = None  # ISO 8601 UTC


@dataclass(frozen=True, slots=True)
class RangeRead:
    """Bytes of one range plus the object identity seen in the same response.

    Returned by ``get_range_with_info`` so the engine records ETag/size without a second
    request per URL.
    """

    data: bytes
    info: ObjectInfo


@runtime_checkable
class StorageBackend(Protocol):
    """Byte-range access to objects addressed by URL.

    Semantics every implementation follows:

    * ``get_range`` reading past the end of the object returns the shorter available bytes
      (``b""`` when ``start`` is at or past the end); the parser uses that to find the end.
    * A response shorter than the server itself announced raises ``StorageError`` with
      class ``truncated``.
    * Every failure is a ``StorageError``; backends do not retry (``RetryPolicy`` does).
    """

    async def get_range(self, url: str, start: int, length: int) -> bytes:
        """Read ``length`` bytes from ``start`` (fewer at end of object)."""
        ...

    async def get_ranges(self, url: str, ranges: list[tuple[int, int]]) -> list[bytes]:
        """Read several ``(start, length)`` ranges of one object; results in input order."""
        ...

    async def head(self, url: str) -> ObjectInfo:
        """Size/ETag/modification time of the object."""
        ...

    async def close(self) -> None:
        """Release connections; the backend may be used again afterwards (reconnects)."""
        ...


async def read_range_with_info(
    backend: StorageBackend, url: str, start: int, length: int
) -> RangeRead:
    """``get_range_with_info`` when the backend has it, else a plain read with unknown info.

    Lets the engine accept third-party backends that implement only the Protocol.
    """
    method = getattr(backend, "get_range_with_info", None)
    if method is not None:
        return await method(url, start, length)
    return RangeRead(await backend.get_range(url, start, length), ObjectInfo())


def check_range(start: int, length: int) -> None:
    """Reject negative offsets early: they are caller bugs, not storage failures."""
    if start < 0 or length < 0:
        raise ValueError(f"invalid range start={start} length={length}")
