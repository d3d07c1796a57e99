"""The SQLite store's LOCATION: the checks of the database file, its directory and parents.

Another user is the ``other_user`` fixture (tests/backends/conftest.py): a forked
child that drops to uid/gid 65534, which needs root; elsewhere those tests skip,
and under ``MEMOKIT_REQUIRE_SERVERS=1`` that skip is a failure.
"""

# ruff: noqa: S103 - these tests make directories others can write, on purpose

from __future__ import annotations

import asyncio
import os
import pickle
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from memokit import ImproperlyConfigured, SQLiteCache, cached
from memokit.backends import _sqlite_conns
from memokit.exceptions import UnsafeLocation


class Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.mkdir, (self.marker,)


def planted_database(workdir: Path, keys: list[str], marker: Path) -> bytes:
    """A valid memokit database whose rows for ``keys`` run code when unpickled."""
    forge = SQLiteCache(str(workdir / "forge.sqlite3"))
    made = [forge.make_key(key) for key in keys]
    forge.set_many(dict.fromkeys(keys, "placeholder"))
    conn = forge._connection()
    payload = pickle.dumps(Payload(marker))
    rows = [(payload, key) for key in made]
    conn.executemany("UPDATE memokit_cache SET value = ? WHERE key = ?", rows)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    forge.close()
    return (workdir / "forge.sqlite3").read_bytes()


def plant(parent_fd: int, path: list[str], database: bytes) -> None:
    """As the other user: move ``path`` away in the parent and put ``database`` there."""
    first = path[0]
    os.rename(first, first + ".old", src_dir_fd=parent_fd, dst_dir_fd=parent_fd)
    if len(path) == 1:  # the database's -wal and -shm files are beside it: away too
        for suffix in ("-wal", "-shm"):
            old = first + ".old" + suffix
            os.rename(first + suffix, old, src_dir_fd=parent_fd, dst_dir_fd=parent_fd)
    if len(path) == 2:  # the database's directory: a new one of ours around the file
        os.mkdir(first, 0o700, dir_fd=parent_fd)
        where = os.open(first, os.O_RDONLY | os.O_DIRECTORY, dir_fd=parent_fd)
    else:
        where = os.dup(parent_fd)
    try:
        fd = os.open(path[-1], os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644, dir_fd=where)
        with open(fd, "wb") as file:
            file.write(database)
    finally:
        os.close(where)


def in_a_new_thread(read: Callable[[], object]) -> object:
    result: list[object] = []

    def run() -> None:
        try:
            result.append(read())
        except Exception as exc:
            result.append(type(exc))

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(30)
    return result[0]


@pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")
@pytest.mark.parametrize(
    "swapped", [["cache", "db.sqlite3"], ["db.sqlite3"]], ids=["directory", "database-file"]
)
def test_a_database_swapped_by_another_user_is_never_read(
    parent: Path, tmp_path: Path, swapped: list[str], other_user: Any
) -> None:
    # On a15829b every new connection (a new thread, after close(), a new cache) opened
    # LOCATION by path and unpickled the planted rows.
    location = parent.joinpath(*swapped)
    # ["db.sqlite3"]: the database right in the parent, allowed while the parent is private.
    cache = SQLiteCache(str(location))
    cache.set("key", "ours")
    # Later the parent becomes writable by others (a chmod, a new group, a bind mount).
    os.chmod(parent, 0o777)
    marker = tmp_path / "code-ran"
    database = planted_database(tmp_path, ["key", "other"], marker)
    other_user.run(parent, lambda fd: plant(fd, swapped, database))
    assert os.stat(location).st_uid == other_user.uid  # the swap happened

    def outcome(read: Callable[[], object]) -> object:
        try:
            return read()
        except Exception as exc:
            return type(exc)

    results = [
        # This thread's connection was opened on our file, and still reads it.
        outcome(lambda: cache.get("key")),
        # A new connection checks LOCATION again: refused.
        in_a_new_thread(lambda: cache.get("key")),
        in_a_new_thread(lambda: cache.get_many(["key", "other"])),
        in_a_new_thread(lambda: asyncio.run(cache.aget("other"))),
    ]
    assert not marker.exists(), "a row of the swapped-in database was unpickled"
    assert results == ["ours", UnsafeLocation, UnsafeLocation, UnsafeLocation], results
    cache.close()  # the next call connects again, through the checks: refused
    with pytest.raises(UnsafeLocation, match=r"shared.*writable by group or others"):
        cache.get("key")
    with pytest.raises(ImproperlyConfigured, match=r"shared.*writable by group or others"):
        SQLiteCache(str(location))
    assert not marker.exists()


@pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")
def test_a_decorated_call_fails_open_on_a_swapped_database(
    parent: Path, tmp_path: Path, other_user: Any
) -> None:
    location = parent / "cache" / "db.sqlite3"
    cache = SQLiteCache(str(location))
    runs: list[int] = []

    @cached(cache=cache)
    def double(n: int) -> int:
        runs.append(n)
        return 2 * n

    assert double(2) == 4
    os.chmod(parent, 0o777)
    marker = tmp_path / "code-ran"
    cache._connection().execute("PRAGMA wal_checkpoint(TRUNCATE)")  # all rows in the file
    forge = tmp_path / "forge.sqlite3"
    forge.write_bytes(location.read_bytes())
    forged = sqlite3.connect(forge)
    # The decorator's entry is memokit's header around the value: plant a raw pickle
    # in every row, whatever the layout, so that any unpickling shows.
    with forged:
        forged.execute("UPDATE memokit_cache SET value = ?", (pickle.dumps(Payload(marker)),))
    forged.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    forged.close()
    database = forge.read_bytes()
    other_user.run(parent, lambda fd: plant(fd, ["cache", "db.sqlite3"], database))
    assert double(2) == 4  # this thread's connection still reads our file
    cache.close()  # the next call connects again, through the checks: refused, fails open
    assert double(2) == 4
    assert not marker.exists()
    assert runs == [2, 2]


@pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")
def test_a_child_refuses_a_location_that_became_unsafe(parent: Path) -> None:
    cache = SQLiteCache(str(parent / "cache" / "db.sqlite3"))
    cache.set("key", 1)
    os.chmod(parent, 0o777)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit code
        code = 1
        try:
            try:
                cache.get("key")
            except UnsafeLocation:
                code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert cache.get("key") == 1  # the parent keeps the connection it checked


# -- the checks at construction ---------------------------------------------------------


@pytest.mark.parametrize("bits", [0o002, 0o020, 0o777])
def test_a_parent_writable_by_others_is_refused_by_name(tmp_path: Path, bits: int) -> None:
    parent = tmp_path / "open"
    parent.mkdir()
    os.chmod(parent, 0o755 | bits)
    with pytest.raises(
        UnsafeLocation,
        match=r"open', a parent .* writable by group or others.*sticky.*chmod go-w",
    ):
        SQLiteCache(str(parent / "deeper" / "db.sqlite3"))
    assert not (parent / "deeper").exists()  # refused before anything was made under it


@pytest.mark.parametrize("mode", [0o777, 0o1777, 0o770])
def test_a_database_directory_others_can_write_is_refused(tmp_path: Path, mode: int) -> None:
    # Even with the sticky bit: others could make the -wal, -shm or database file first.
    directory = tmp_path / "shared"
    directory.mkdir()
    os.chmod(directory, mode)
    with pytest.raises(
        UnsafeLocation, match=r"shared' is writable by group or others.*directory of its own"
    ):
        SQLiteCache(str(directory / "db.sqlite3"))
    assert not (directory / "db.sqlite3").exists()


def test_a_sticky_parent_writable_by_all_is_accepted(tmp_path: Path) -> None:
    shared = tmp_path / "shared-tmp"
    shared.mkdir()
    os.chmod(shared, 0o1777)  # as /tmp
    cache = SQLiteCache(str(shared / "app" / "db.sqlite3"))
    cache.set("key", 1)
    assert cache.get("key") == 1
    assert os.stat(shared / "app").st_mode & 0o777 == 0o700


def test_a_database_file_others_can_write_is_refused(tmp_path: Path) -> None:
    location = tmp_path / "db.sqlite3"
    SQLiteCache(str(location)).close()
    os.chmod(location, 0o666)
    with pytest.raises(UnsafeLocation, match=r"db.sqlite3' is writable by group or others"):
        SQLiteCache(str(location))


def test_a_database_file_of_another_user_is_refused(tmp_path: Path, other_user: Any) -> None:
    location = tmp_path / "db.sqlite3"
    SQLiteCache(str(location)).close()
    os.chown(location, other_user.uid, other_user.uid)
    with pytest.raises(UnsafeLocation, match=r"db.sqlite3' is owned by uid 65534"):
        SQLiteCache(str(location))


def test_a_parent_owned_by_another_user_is_refused_by_name(tmp_path: Path, other_user: Any) -> None:
    parent = tmp_path / "theirs"
    parent.mkdir(mode=0o755)
    os.chown(parent, other_user.uid, other_user.uid)
    with pytest.raises(UnsafeLocation, match=r"theirs', a parent .* owned by uid 65534"):
        SQLiteCache(str(parent / "cache" / "db.sqlite3"))


def test_a_database_file_that_is_a_symbolic_link_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "real.sqlite3"
    SQLiteCache(str(real)).close()
    (tmp_path / "link.sqlite3").symlink_to(real)
    with pytest.raises(UnsafeLocation, match=r"link.sqlite3' is a symbolic link.*real.sqlite3"):
        SQLiteCache(str(tmp_path / "link.sqlite3"))


def test_symbolic_links_among_the_parents_are_resolved_at_each_connect(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(real)
    cache = SQLiteCache(str(tmp_path / "link" / "db.sqlite3"))
    cache.set("key", 1)
    assert (real / "db.sqlite3").exists()
    assert cache.get("key") == 1


def test_a_database_removed_meanwhile_is_made_again_private(tmp_path: Path) -> None:
    location = tmp_path / "db.sqlite3"
    cache = SQLiteCache(str(location))
    cache.set("key", 1)
    cache.close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{location}{suffix}").unlink(missing_ok=True)
    old = os.umask(0)
    try:
        assert cache.get("key") is None  # connects again: made with mode 0600, whatever umask
    finally:
        os.umask(old)
    assert os.stat(location).st_mode & 0o777 == 0o600
    cache.set("key", 2)
    assert cache.get("key") == 2


@pytest.mark.parametrize("swaps", [1, 3])
def test_a_file_swapped_between_the_checks_and_the_connect_is_not_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, swaps: int
) -> None:
    location = tmp_path / "db.sqlite3"
    cache = SQLiteCache(str(location))
    cache.set("key", 1)
    cache.close()
    connect = SQLiteCache._sqlite_connect
    done: list[int] = []

    def swapping_connect(self: SQLiteCache, path: str) -> sqlite3.Connection:
        # What a swap in the window looks like: another file at the name when SQLite opens it.
        if len(done) < swaps:
            done.append(1)
            os.replace(location, tmp_path / "aside.sqlite3")
            location.touch(0o600)
        return connect(self, path)

    monkeypatch.setattr(SQLiteCache, "_sqlite_connect", swapping_connect)
    if swaps < 3:
        assert cache.get("key") is None  # connected, after checking the new file again
        assert len(done) == 1
    else:
        with pytest.raises(UnsafeLocation, match="replaced while it was being opened"):
            cache.get("key")
        assert len(done) == 3


def test_without_dir_fd_the_files_are_still_made_private(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As on Windows, where os.open takes no dir_fd: no checks, private modes still.
    monkeypatch.setattr(_sqlite_conns, "PINNABLE", False)
    location = tmp_path / "made" / "db.sqlite3"
    cache = SQLiteCache(str(location))
    cache.set("key", 1)
    assert cache.get("key") == 1
    assert os.stat(location).st_mode & 0o777 == 0o600
    assert os.stat(location.parent).st_mode & 0o777 == 0o700
