"""Where a collection lives (local directory or object store) and its one atomic operation.

Local: the staged file is ``fsync``-ed, then ``rename``-d over the live file — POSIX
``rename`` replaces atomically, so a reader opens either the whole old file or the whole new
one, and a crash before the rename leaves the old file untouched.

S3 (any non-local fsspec store): the staged object is server-side copied (``CopyObject``)
onto the live key. S3 makes a new object version visible all-or-nothing, with strong
read-after-write consistency, so readers get the old or the new object, never a torn one;
a crash before the copy completes leaves the old object. A crash can leave the staged
object behind: hidden (``.`` prefix, ``.tmp`` suffix) and removed by the next write of that
partition.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import fsspec
import pyarrow.fs as pafs
from fsspec.implementations.local import LocalFileSystem

PathLike = str | Path

#: Marks a file as staged: hidden from hive readers (``.`` prefix) and from ``*.parquet`` globs.
STAGED_SUFFIX = ".tmp"


def resolve_filesystem(
    uri: PathLike,
    filesystem: fsspec.AbstractFileSystem | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> tuple[fsspec.AbstractFileSystem, str]:
    """``(fsspec file system, root path)`` for a local path or a URL like ``s3://bucket/c``."""
    if filesystem is not None and storage_options:
        raise ValueError("pass either filesystem or storage_options, not both")
    if filesystem is None:
        filesystem, root = fsspec.core.url_to_fs(str(uri), **dict(storage_options or {}))
    else:
        root = filesystem._strip_protocol(str(uri))
    if isinstance(filesystem, LocalFileSystem):
        root = Path(root).resolve().as_posix()
    return filesystem, root.rstrip("/")


def is_hidden(name: str) -> bool:
    """Hadoop/pyarrow convention: ``_`` and ``.`` prefixed names are not data."""
    return name[:1] in ("_", ".")


class Store:
    """The file operations a partitioned collection needs, rooted at one directory/prefix."""

    def __init__(self, fs: fsspec.AbstractFileSystem, root: str) -> None:
        self.fs = fs
        self.root = root
        self.local = isinstance(fs, LocalFileSystem)

    def path(self, relative: str) -> str:
        return f"{self.root}/{relative}" if relative else self.root

    def relative_parts(self, path: str) -> list[str]:
        return path[len(self.root) :].strip("/").split("/")

    def uri(self, path: str) -> str:
        return path if self.local else self.fs.unstrip_protocol(path)

    def arrow_filesystem(self) -> pafs.FileSystem:
        if self.local:
            return pafs.LocalFileSystem()
        return pafs.PyFileSystem(pafs.FSSpecHandler(self.fs))

    def data_files(self) -> list[str]:
        """Visible ``.parquet`` files under the root (no hidden path component), listed afresh."""
        self.forget_listings()
        if not self.fs.exists(self.root):
            return []
        return sorted(
            path
            for path in self.fs.find(self.root)
            if path.endswith(".parquet")
            and not any(is_hidden(p) for p in self.relative_parts(path))
        )

    def forget_listings(self) -> None:
        """Drop every cached listing under the root, not only the root's own.

        ``invalidate_cache(root)`` forgets the root and its parents, but s3fs keeps the
        listings of subdirectories (with sizes and ETags) and its ``find`` never overwrites
        a cached one. A long-lived file system object that listed a partition before another
        process replaced it would then open the new object with the old ETag and fail.
        """
        below = f"{self.root}/"
        for path in [p for p in list(self.fs.dircache) if p == self.root or p.startswith(below)]:
            self.fs.dircache.pop(path, None)
        self.fs.invalidate_cache(self.root)

    @contextmanager
    def open_output(self, path: str) -> Iterator[BinaryIO]:
        if self.local:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            with Path(path).open("wb") as handle:
                yield handle
                handle.flush()
                os.fsync(handle.fileno())  # durable before it can be renamed into place
        else:
            with self.fs.open(path, "wb") as handle:
                yield handle

    def swap_in(self, staged: str, final: str) -> None:
        """Atomically make ``staged`` the content of ``final`` (see the module docstring)."""
        if self.local:
            Path(staged).replace(final)
            # The rename, and the entries of directories a first write created
            # (``year=``/``month=``), must survive a power cut, not only a killed process.
            directory, root = Path(final).parent, Path(self.root)
            _fsync_dir(directory)
            while directory != root and root in directory.parents:
                directory = directory.parent
                _fsync_dir(directory)
        else:
            self.fs.copy(staged, final)
            self.fs.rm(staged)

    def remove_others(self, final: str) -> None:
        """Delete stale ``.parquet`` files and staging debris beside ``final``, after the swap."""
        directory = final.rsplit("/", 1)[0]
        self.fs.invalidate_cache(directory)
        for path in self.fs.ls(directory, detail=False):
            name = path.rstrip("/").rsplit("/", 1)[-1]
            stale_data = name.endswith(".parquet") and path.rstrip("/") != final
            debris = name.startswith(".") and name.endswith(STAGED_SUFFIX)
            if stale_data or debris:
                self.fs.rm(path)

    def discard(self, path: str) -> None:
        """Best-effort removal of a staged file after a failed write."""
        self.fs.invalidate_cache(path.rsplit("/", 1)[0])
        if self.fs.exists(path):
            self.fs.rm(path)


def _fsync_dir(directory: Path) -> None:
    """Persist the rename itself (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
