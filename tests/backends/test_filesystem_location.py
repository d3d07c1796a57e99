"""The filesystem store's LOCATION: one directory handle, and the checks of it and its parents.

The swap tests play another user with the ``other_user`` fixture
(tests/backends/conftest.py): a forked child that drops to uid/gid 65534, which
needs root; elsewhere they skip, and under ``MEMOKIT_REQUIRE_SERVERS=1`` that skip
is a failure.
"""

# ruff: noqa: S103 - these tests make directories others can write, on purpose

from __future__ import annotations

import asyncio
import contextlib
import os
import pickle
import traceback
import zlib
from pathlib import Path
from typing import Any

import pytest

from memokit import FileSystemCache, ImproperlyConfigured, cached
from memokit.backends import filesystem


def planted_entry(marker: Path) -> bytes:
    """A valid entry file whose value, once unpickled, creates ``marker``."""

    class Payload:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return os.mkdir, (str(marker),)

    payload = pickle.dumps(Payload())
    header = filesystem._HEADER.pack(
        filesystem._MAGIC, float("inf"), len(payload), zlib.crc32(payload)
    )
    return header + payload


def swap_in(parent_fd: int, names: list[str], entry: bytes, *, keep_old: bool) -> None:
    """Replace ``cache`` in the parent by a directory of ours holding ``entry`` files."""
    if keep_old:
        os.rename("cache", "cache.old", src_dir_fd=parent_fd, dst_dir_fd=parent_fd)
    else:
        os.rmdir("cache", dir_fd=parent_fd)
    os.mkdir("cache", 0o700, dir_fd=parent_fd)
    fake = os.open("cache", os.O_RDONLY | os.O_DIRECTORY, dir_fd=parent_fd)
    try:
        for name in names:
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600, dir_fd=fake)
            with open(fd, "wb") as file:
                file.write(entry)
    finally:
        os.close(fake)


def entry_name(cache: FileSystemCache, key: str) -> str:
    return os.path.basename(cache._path(cache.make_key(key)))


@pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")
@pytest.mark.parametrize("keep_old", [True, False], ids=["renamed-away", "removed"])
def test_a_directory_swapped_by_another_user_is_never_read(
    parent: Path, tmp_path: Path, keep_old: bool, other_user: Any
) -> None:
    # On bbcc8ca the next read opened the swapped-in file by path and unpickled it.
    cache = FileSystemCache(str(parent / "cache"))
    keys = ["key", "counter", "async"]
    if keep_old:
        cache.set("key", "ours")
    # Later the parent becomes writable by others (a chmod, a new group, a bind mount).
    os.chmod(parent, 0o777)
    marker = tmp_path / "code-ran"
    names = [entry_name(cache, key) for key in keys]
    other_user.run(parent, lambda fd: swap_in(fd, names, planted_entry(marker), keep_old=keep_old))
    assert os.stat(parent / "cache").st_uid == other_user.uid  # the swap happened

    def read_all() -> list[object]:
        results: list[object] = []
        for read in (
            lambda: cache.get("key"),
            lambda: cache.get_many(["key", "counter"]).get("key"),
            lambda: cache.has_key("counter"),
            lambda: cache.incr("counter"),
            lambda: asyncio.run(cache.aget("async")),
        ):
            try:
                results.append(read())
            except Exception as exc:
                results.append(type(exc))
        return results

    results = read_all()
    assert not marker.exists(), "a file of the swapped-in directory was unpickled"
    if keep_old:
        # The store is the directory opened at start-up, wherever it was moved.
        assert results == ["ours", "ours", False, ValueError, None]
    else:
        # Ours is gone; the directory now at LOCATION fails the checks: refused.
        assert all(result is filesystem.UnsafeLocation for result in results), results
    # Re-opened (after close(), or by a new cache): refused, naming the directory.
    cache.close()
    with pytest.raises(
        filesystem.UnsafeLocation, match=r"shared.*writable by group or others.*sticky"
    ):
        cache.get("key")
    with pytest.raises(ImproperlyConfigured, match=r"shared.*writable by group or others.*sticky"):
        FileSystemCache(str(parent / "cache"))
    assert not marker.exists()


@pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")
def test_a_decorated_call_fails_open_on_a_swapped_directory(
    parent: Path, tmp_path: Path, other_user: Any
) -> None:
    cache = FileSystemCache(str(parent / "cache"))
    runs: list[int] = []

    @cached(cache=cache)
    def double(n: int) -> int:
        runs.append(n)
        return 2 * n

    assert double(2) == 4
    os.chmod(parent, 0o777)
    marker = tmp_path / "code-ran"
    names = [name for name in os.listdir(parent / "cache") if name.endswith(".mkc")]
    other_user.run(parent, lambda fd: swap_in(fd, names, planted_entry(marker), keep_old=True))
    assert double(2) == 4  # from the directory opened at start-up
    cache.close()  # the next call opens LOCATION again, through the checks: refused
    assert double(2) == 4
    assert not marker.exists()
    assert runs == [2, 2]


# -- the checks of LOCATION's parents ---------------------------------------------------


@pytest.mark.parametrize("bits", [0o002, 0o020, 0o777])
def test_a_parent_writable_by_others_is_refused_by_name(tmp_path: Path, bits: int) -> None:
    parent = tmp_path / "open"
    parent.mkdir()
    os.chmod(parent, 0o755 | bits)
    with pytest.raises(
        ImproperlyConfigured,
        match=r"open', a parent .* writable by group or others.*sticky.*chmod go-w",
    ):
        FileSystemCache(str(parent / "deeper" / "cache"))
    assert not (parent / "deeper").exists()  # refused before anything was made under it


def test_a_sticky_parent_writable_by_all_is_accepted(tmp_path: Path) -> None:
    shared = tmp_path / "shared-tmp"
    shared.mkdir()
    os.chmod(shared, 0o1777)  # as /tmp
    cache = FileSystemCache(str(shared / "cache"))
    cache.set("key", 1)
    assert cache.get("key") == 1


def test_a_parent_owned_by_another_user_is_refused_by_name(tmp_path: Path, other_user: Any) -> None:
    parent = tmp_path / "theirs"
    parent.mkdir(mode=0o755)
    os.chown(parent, other_user.uid, other_user.uid)
    with pytest.raises(ImproperlyConfigured, match=r"theirs', a parent .* owned by uid 65534"):
        FileSystemCache(str(parent / "cache"))


def test_symbolic_links_among_the_parents_are_resolved_once(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(real)
    cache = FileSystemCache(str(tmp_path / "link" / "cache"))
    cache.set("key", 1)
    assert os.listdir(real / "cache")
    # Pointing the link elsewhere later changes nothing for the open handle.
    other = tmp_path / "other"
    other.mkdir(mode=0o700)
    (tmp_path / "link").unlink()
    (tmp_path / "link").symlink_to(other)
    assert cache.get("key") == 1
    assert not (other / "cache").exists()


def test_an_entry_that_is_a_symbolic_link_is_not_followed(tmp_path: Path) -> None:
    cache = FileSystemCache(str(tmp_path / "cache"))
    cache.set("elsewhere", "value")
    target = Path(cache._path(cache.make_key("elsewhere")))
    os.symlink(target, cache._path(cache.make_key("key")))
    with pytest.raises(OSError, match="Too many levels of symbolic links"):
        cache.get("key")


# -- the directory handle ----------------------------------------------------------------


def handles_on(directory: Path) -> list[str]:
    """This process's descriptors that point at ``directory``."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/self/fd/{fd}").startswith(str(directory)):
                found.append(fd)
    return found


needs_proc = pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")


@needs_proc
def test_close_releases_the_handle_and_the_cache_still_works(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    cache = FileSystemCache(str(root))
    other = FileSystemCache(str(root))
    cache.set("key", 1)
    assert len(handles_on(root)) == 1  # one handle per directory and process
    cache.close()
    assert len(handles_on(root)) == 1  # still used by the other cache
    other.close()
    assert handles_on(root) == []
    assert cache.get("key") == 1
    assert len(handles_on(root)) == 1
    del cache, other
    assert handles_on(root) == []


def test_a_directory_renamed_away_stays_the_store_until_close(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    cache = FileSystemCache(str(root))
    cache.set("key", "first")
    root.rename(tmp_path / "moved")
    root.mkdir(mode=0o700)  # a new, valid directory at LOCATION
    FileSystemCache(str(root)).set("key", "second")  # a new cache checks and uses it
    assert cache.get("key") == "first"  # never followed silently
    cache.set("more", 1)
    assert (tmp_path / "moved" / os.path.basename(cache._path(cache.make_key("more")))).exists()
    cache.close()
    assert cache.get("key") == "second"  # opened again, through the checks


def test_a_removed_directory_made_again_by_another_process_is_read(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    reader = FileSystemCache(str(root))
    reader.set("old", 1)
    assert reader.get("absent") is None  # a miss: the next question comes within 8
    for name in os.listdir(root):
        os.unlink(root / name)
    os.rmdir(root)
    # Another process makes the directory again and writes into it.
    writer = FileSystemCache(str(root))
    writer._shared = filesystem._Directory(root)
    writer.set("key", "fresh")
    found = [reader.get("key") for _ in range(8)]
    assert found[-1] == "fresh"
    assert reader.get("old") is None


@needs_proc
@pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")
def test_a_child_closes_the_parents_handle_and_opens_its_own(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    cache = FileSystemCache(str(root))
    cache.set("key", 1)
    moved = tmp_path / "moved"
    root.rename(moved)
    root.mkdir(mode=0o700)  # a valid directory now at LOCATION
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        code = 1
        try:
            os.close(read)
            kept = handles_on(moved)  # before any use: the copy is closed at the fork
            os.write(write, repr((kept, cache.get("key"))).encode())
            cache.set("child", 2)
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read) as pipe:
        report = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    # The child opened LOCATION again, through the checks; the parent kept its own.
    assert report == "([], None)"
    assert cache.get("key") == 1
    assert cache.get("child") is None
    assert FileSystemCache(str(root)).get("child") == 2


@pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")
def test_a_child_refuses_a_location_that_became_unsafe(parent: Path) -> None:
    cache = FileSystemCache(str(parent / "cache"))
    cache.set("key", 1)
    os.chmod(parent, 0o777)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit code
        code = 1
        try:
            try:
                cache.get("key")
            except filesystem.UnsafeLocation:
                code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert cache.get("key") == 1  # the parent keeps the directory it checked


def test_the_async_twins_refuse_a_replaced_directory_alike(parent: Path) -> None:
    root = parent / "cache"
    cache = FileSystemCache(str(root))
    asyncio.run(cache.aset("key", 1))
    for name in os.listdir(root):
        os.unlink(root / name)
    os.rmdir(root)
    os.chmod(parent, 0o777)
    with pytest.raises(filesystem.UnsafeLocation, match="shared', a parent"):
        asyncio.run(cache.aget("key"))
    with pytest.raises(filesystem.UnsafeLocation, match="shared', a parent"):
        asyncio.run(cache.aset("key", 2))
    os.chmod(parent, 0o755)
    assert asyncio.run(cache.aget("key")) is None
    asyncio.run(cache.aset("key", 2))
    assert asyncio.run(cache.aget("key")) == 2
