"""LocalBackend on real files: absolute paths, file:// URLs, relative paths."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rasteret_assets.storage import LocalBackend, StorageBackend, StorageError

DATA = bytes(range(256)) * 40  # 10 KiB


@pytest.fixture
def blob(tmp_path: Path) -> Path:
    path = tmp_path / "dir with space" / "blob.bin"
    path.parent.mkdir()
    path.write_bytes(DATA)
    return path


def test_is_a_storage_backend() -> None:
    assert isinstance(LocalBackend(), StorageBackend)


@pytest.mark.asyncio
async def test_get_range_absolute_path_and_file_url(blob: Path) -> None:
    backend = LocalBackend()
    assert await backend.get_range(str(blob), 100, 50) == DATA[100:150]
    assert await backend.get_range(blob.as_uri(), 100, 50) == DATA[100:150]  # percent-encoded
    assert await backend.get_range(f"file://localhost{blob}", 0, 4) == DATA[:4]


@pytest.mark.asyncio
async def test_relative_path(blob: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(blob.parent.parent)
    assert await LocalBackend().get_range("dir with space/blob.bin", 8, 8) == DATA[8:16]


@pytest.mark.asyncio
async def test_eof_reads_return_what_exists(blob: Path) -> None:
    backend = LocalBackend()
    assert await backend.get_range(str(blob), len(DATA) - 10, 100) == DATA[-10:]
    assert await backend.get_range(str(blob), len(DATA) + 10, 100) == b""
    assert await backend.get_range(str(blob), 0, 0) == b""


@pytest.mark.asyncio
async def test_get_ranges_in_input_order(blob: Path) -> None:
    out = await LocalBackend().get_ranges(str(blob), [(500, 10), (0, 4), (len(DATA) - 2, 10)])
    assert out == [DATA[500:510], DATA[:4], DATA[-2:]]


@pytest.mark.asyncio
async def test_head_and_info(blob: Path) -> None:
    backend = LocalBackend()
    info = await backend.head(str(blob))
    assert info.size == len(DATA)
    assert info.etag and info.last_modified and info.last_modified.endswith("+00:00")
    read = await backend.get_range_with_info(str(blob), 0, 4)
    assert read.info == info
    blob.write_bytes(DATA + b"more")  # a changed file gets a different validator
    os.utime(blob, ns=(1, 1))
    assert (await backend.head(str(blob))).etag != info.etag


@pytest.mark.asyncio
async def test_real_fixture_starts_with_tiff_magic(tiff_fixtures: Path) -> None:
    path = tiff_fixtures / "rio-tiler" / "cog.tif"
    assert await LocalBackend().get_range(str(path), 0, 4) in (b"II*\x00", b"MM\x00*", b"II+\x00")


@pytest.mark.asyncio
async def test_missing_file_and_directory_are_not_found(tmp_path: Path) -> None:
    backend = LocalBackend()
    for url in (str(tmp_path / "nope.tif"), str(tmp_path)):
        with pytest.raises(StorageError) as info:
            await backend.get_range(url, 0, 10)
        assert info.value.error_class == "not_found"
        with pytest.raises(StorageError) as info:
            await backend.head(url)
        assert info.value.error_class == "not_found"


@pytest.mark.asyncio
async def test_permission_denied_is_forbidden(blob: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if os.geteuid() == 0:
        # root ignores permission bits, so a real EACCES cannot be produced here; inject the
        # same exception the kernel would raise.
        def deny(self: Path, *args: object, **kwargs: object) -> None:
            raise PermissionError(13, "Permission denied", str(self))

        monkeypatch.setattr(Path, "open", deny)
    else:
        blob.chmod(0)
    with pytest.raises(StorageError) as info:
        await LocalBackend().get_range(str(blob), 0, 10)
    assert info.value.error_class == "forbidden"
    assert not info.value.transient


@pytest.mark.asyncio
async def test_remote_file_url_is_unsupported() -> None:
    with pytest.raises(StorageError) as info:
        await LocalBackend().get_range("file://otherhost/x.tif", 0, 1)
    assert info.value.error_class == "unsupported"


@pytest.mark.asyncio
async def test_negative_range_is_a_caller_bug(blob: Path) -> None:
    with pytest.raises(ValueError):
        await LocalBackend().get_range(str(blob), -1, 10)
