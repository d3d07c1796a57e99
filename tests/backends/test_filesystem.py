"""What only the filesystem backend promises: private modes, safe paths, damaged files."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import re
import stat
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from memokit import CacheKeyWarning, CorruptEntryWarning, FileSystemCache, ImproperlyConfigured
from memokit.backends import _flock, filesystem

ENTRY = re.compile(r"^[0-9a-f]{32}\.mkc$")


def mode(path: Path | str) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.fixture
def umask_spy(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record every call of os.umask made while the test runs."""
    calls: list[int] = []
    real = os.umask

    def spy(mask: int) -> int:
        calls.append(mask)
        return real(mask)

    monkeypatch.setattr(os, "umask", spy)
    return calls


@pytest.fixture
def with_umask(request: pytest.FixtureRequest) -> Iterator[int]:
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def entry_files(directory: Path) -> list[str]:
    return sorted(name for name in os.listdir(directory) if name.endswith(".mkc"))


def temp_files(directory: Path) -> list[str]:
    return sorted(name for name in os.listdir(directory) if name.endswith(".mkc-tmp"))


@pytest.fixture
def cache(tmp_path: Path) -> FileSystemCache:
    return FileSystemCache(str(tmp_path / "cache"))


# -- permissions ----------------------------------------------------------------


@pytest.mark.parametrize("with_umask", [0o022, 0o000, 0o277], indirect=True)
def test_every_created_level_is_0700_and_every_file_0600(
    tmp_path: Path, with_umask: int, umask_spy: list[int]
) -> None:
    root = tmp_path / "a" / "b" / "c"
    cache = FileSystemCache(str(root))
    cache.set("key", "value")
    cache.add("other", [1])
    cache.set("counter", 1)
    assert cache.incr("counter") == 2
    for level in (tmp_path / "a", tmp_path / "a" / "b", root):
        assert mode(level) == 0o700, level
    names = os.listdir(root)
    assert len(entry_files(root)) == 3
    for name in names:
        assert mode(root / name) == 0o600, name
    assert umask_spy == []


def test_sixteen_threads_creating_caches_never_call_umask(
    tmp_path: Path, umask_spy: list[int]
) -> None:
    errors: list[BaseException] = []
    start = threading.Barrier(16)

    def worker(n: int) -> None:
        try:
            start.wait()
            shared = FileSystemCache(str(tmp_path / "shared" / "x" / "y"))
            own = FileSystemCache(str(tmp_path / f"own{n}" / "x" / "y"))
            for i in range(20):
                shared.set(f"{n}-{i}", i)
                own.set(i, n)
        except BaseException as exc:  # recorded and asserted on below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert umask_spy == []
    for directory, _, files in os.walk(tmp_path):
        if Path(directory) != tmp_path:
            assert mode(directory) == 0o700, directory
        for name in files:
            assert mode(Path(directory) / name) == 0o600, name


def test_a_directory_removed_while_in_use_is_made_again_privately(
    cache: FileSystemCache, tmp_path: Path
) -> None:
    cache.set("key", 1)
    for name in os.listdir(tmp_path / "cache"):
        os.unlink(tmp_path / "cache" / name)
    os.rmdir(tmp_path / "cache")
    assert cache.get("key") is None
    cache.set("key", 2)
    assert cache.get("key") == 2
    assert mode(tmp_path / "cache") == 0o700
    assert cache.incr("key") == 3


# -- the root directory ------------------------------------------------------------


def test_symlinked_root_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(real)
    with pytest.raises(ImproperlyConfigured, match=r"symbolic link.*real directory"):
        FileSystemCache(str(tmp_path / "link"))


@pytest.mark.parametrize("bits", [0o020, 0o002, 0o022])
def test_root_writable_by_group_or_others_is_refused(tmp_path: Path, bits: int) -> None:
    root = tmp_path / "open"
    root.mkdir()
    os.chmod(root, 0o700 | bits)
    with pytest.raises(ImproperlyConfigured, match=r"writable by group or others.*chmod go-w"):
        FileSystemCache(str(root))


def test_root_owned_by_someone_else_is_refused(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        root = tmp_path / "foreign"
        root.mkdir(mode=0o700)
        os.chown(root, 65534, 65534)
        location = str(root)
    else:
        location = "/"  # owned by root, and we are not root
    with pytest.raises(ImproperlyConfigured, match="owned by uid"):
        FileSystemCache(location)


def test_root_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(ImproperlyConfigured, match="not a directory"):
        FileSystemCache(str(tmp_path / "file"))


def test_relative_location_warns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.warns(RuntimeWarning, match="relative.*Use an absolute path"):
        cache = FileSystemCache("relative-cache")
    cache.set("key", 1)
    assert entry_files(tmp_path / "relative-cache")


@pytest.mark.parametrize("location", ["", None, 3, "bad\x00path"])
def test_bad_location_is_refused(location: Any) -> None:
    with pytest.raises(ImproperlyConfigured, match="LOCATION"):
        FileSystemCache(location)


def test_location_may_be_a_path_object(tmp_path: Path) -> None:
    cache = FileSystemCache(tmp_path / "p")
    cache.set("key", 1)
    assert FileSystemCache(str(tmp_path / "p")).get("key") == 1


# -- keys never name a path ---------------------------------------------------------


def identity(key: Any, key_prefix: str, version: Any) -> str:
    return str(key)


# A lone surrogate ("\ud800") is refused on every backend (memokit/testing/contract/test_keys.py).
@pytest.mark.parametrize("key", ["../../etc/passwd", "/abs", "\x00", "a" * 10_000, "..", "con"])
def test_keys_stay_inside_the_directory(tmp_path: Path, key: str) -> None:
    root = tmp_path / "inner" / "cache"
    cache = FileSystemCache(str(root), key_function=identity)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CacheKeyWarning)
        cache.set(key, "value")
        assert cache.get(key) == "value"
        assert cache.add(key + "n", 1) is True
        assert cache.incr(key + "n") == 2
    assert len(entry_files(root)) == 2
    assert all(ENTRY.match(name) for name in entry_files(root))
    assert sorted(os.listdir(tmp_path)) == ["inner"]
    assert sorted(os.listdir(tmp_path / "inner")) == ["cache"]


# -- clear -------------------------------------------------------------------------------


def test_clear_keeps_the_directory_and_foreign_files(
    cache: FileSystemCache, tmp_path: Path
) -> None:
    root = tmp_path / "cache"
    (root / "notes.txt").write_text("mine")
    (root / "sub").mkdir()
    cache.set_many({"a": 1, "b": 2})
    cache.clear()
    assert entry_files(root) == []
    assert (root / "notes.txt").read_text() == "mine"
    assert (root / "sub").is_dir()
    cache.set("c", 3)
    assert cache.get("c") == 3


# -- damaged, missing and unreadable files -------------------------------------------


def entry_path(cache: FileSystemCache, key: str) -> Path:
    return Path(cache._path(cache.make_key(key)))


def test_empty_file_is_a_silent_miss_and_removed(cache: FileSystemCache) -> None:
    cache.set("key", "value")
    path = entry_path(cache, "key")
    path.write_bytes(b"")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cache.get("key", "default") == "default"
    assert not path.exists()


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda data: data[:10], "truncated"),
        (lambda data: data[:-1], "truncated"),
        (lambda data: data + b"x", "past its end"),
        (lambda data: data[:-1] + bytes([data[-1] ^ 1]), "checksum"),
        (lambda data: b"XXXX" + data[4:], "not a memokit entry"),
        (lambda data: b"\x80\x04garbage that is not a cache file at all......", "not a memokit"),
    ],
    ids=["header-cut", "payload-cut", "trailing-byte", "bit-flip", "magic", "foreign"],
)
@pytest.mark.parametrize("size", [10, 40_000], ids=["small", "past-the-first-read"])
def test_damaged_file_is_a_miss_with_a_warning_and_removed(
    cache: FileSystemCache, damage: Any, message: str, size: int
) -> None:
    # A read does not ask the file's size first; past filesystem._FIRST_READ bytes
    # (a value of 200 KB) it reads on to the end, and judges the same.
    cache.set("key", {"some": "value" * size})
    path = entry_path(cache, "key")
    path.write_bytes(damage(path.read_bytes()))
    with pytest.warns(CorruptEntryWarning, match=message):
        assert cache.get("key") is None
    assert not path.exists()
    cache.set("key", "fresh")
    assert cache.get("key") == "fresh"


@pytest.mark.parametrize("size", [0, 1, filesystem._FIRST_READ - 40, 3 * filesystem._FIRST_READ])
def test_values_of_any_size_are_read_whole(cache: FileSystemCache, size: int) -> None:
    value = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    cache.set("key", value)
    assert cache.get("key") == value
    assert cache.get_many(["key"]) == {"key": value}


def test_file_names_are_remembered_within_a_bound(cache: FileSystemCache) -> None:
    keys = [f"k{i}" for i in range(filesystem._NAMES_KEPT + 10)]
    cache.set_many(dict.fromkeys(keys, 1))
    assert len(cache._names) <= filesystem._NAMES_KEPT
    assert cache.get_many(keys) == dict.fromkeys(keys, 1)
    made = cache.make_key("k0")
    digest = hashlib.blake2b(made.encode(), digest_size=16).hexdigest()
    assert cache._name(made) == digest + filesystem.SUFFIX == cache._name(made)


def test_missing_file_is_a_miss(cache: FileSystemCache) -> None:
    cache.set("key", 1)
    entry_path(cache, "key").unlink()
    assert cache.get("key", "default") == "default"
    assert cache.has_key("key") is False
    assert cache.delete("key") is False


def test_other_os_errors_propagate(cache: FileSystemCache) -> None:
    path = entry_path(cache, "key")
    path.mkdir()
    with pytest.raises(IsADirectoryError):
        cache.get("key")
    with pytest.raises(IsADirectoryError):
        cache.incr("key")


# -- temporary files of crashed writers ----------------------------------------------


def plant_temp(root: Path, name: str) -> Path:
    path = root / f"{filesystem.TEMP_PREFIX}{name}{filesystem.TEMP_SUFFIX}"
    path.write_bytes(b"half a value")
    return path


def test_dead_writers_temp_files_are_removed_and_live_ones_kept(
    cache: FileSystemCache, tmp_path: Path
) -> None:
    root = tmp_path / "cache"
    dead = plant_temp(root, "dead")
    live = plant_temp(root, "live")
    # A live writer holds an flock on its temporary file until it renames it.
    fd = os.open(live, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        cache.clear()
        assert not dead.exists()
        assert live.exists()
    finally:
        os.close(fd)
    cache.clear()
    assert temp_files(root) == []


def test_a_new_process_state_sweeps_dead_temp_files(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    FileSystemCache(str(root)).set("key", 1)
    dead = plant_temp(root, "dead")
    _flock._directories.clear()  # what a fresh process starts with
    cache = FileSystemCache(str(root))
    assert not dead.exists()
    assert cache.get("key") == 1


def test_culling_sweeps_dead_temp_files(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    cache = FileSystemCache(str(root), max_entries=5)
    dead = plant_temp(root, "dead")
    for i in range(6):
        cache.set(i, i)
    assert not dead.exists()


# -- culling ---------------------------------------------------------------------------


def test_entry_count_never_exceeds_max_entries(cache: FileSystemCache, tmp_path: Path) -> None:
    cache._max_entries = 10
    for i in range(200):
        cache.set(i, i)
        assert len(entry_files(tmp_path / "cache")) <= 10
    cache.set_many({f"m{i}": i for i in range(5)})
    assert len(entry_files(tmp_path / "cache")) <= 15


def test_overwrites_do_not_trigger_culling(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = FileSystemCache(str(tmp_path / "cache"), max_entries=10)
    scans: list[int] = []
    real_scan = cache._scan
    monkeypatch.setattr(cache, "_scan", lambda *a, **k: (scans.append(1), real_scan(*a, **k)))
    for _ in range(50):
        for i in range(9):
            cache.set(i, i)
    assert len(entry_files(tmp_path / "cache")) == 9
    assert len(scans) <= 50 * 9 // 16 + 1  # a periodic re-count only, never one per set


def test_other_processes_entries_are_counted_at_the_periodic_rescan(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    cache = FileSystemCache(str(root), max_entries=32)
    cache.set("first", 1)
    # Another process (simulated: a second, independent state) fills the directory.
    other = FileSystemCache(str(root), max_entries=1000)
    independent = filesystem._Directory(root)
    independent.known = 0
    other._shared = independent
    for i in range(40):
        other.set(f"other{i}", i)
    for i in range(20):
        cache.set(f"mine{i}", i)
    assert len(entry_files(root)) < 32 + 20


# -- disk full ----------------------------------------------------------------------


def enospc(*args: Any, **kwargs: Any) -> Any:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("where", ["write", "replace"])
def test_disk_full_raises_and_keeps_the_old_value(
    cache: FileSystemCache, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    cache.set("key", "old")
    with monkeypatch.context() as patch:
        patch.setattr(os, where, enospc)
        with pytest.raises(OSError, match="No space left") as raised:
            cache.set("key", "new" * 1000)
        with pytest.raises(OSError, match="No space left"):
            cache.set("other", 1)
    assert raised.value.errno == errno.ENOSPC
    assert cache.get("key") == "old"
    assert cache.get("other") is None
    assert temp_files(tmp_path / "cache") == []
    cache.set("key", "new")
    assert cache.get("key") == "new"


def test_failed_publish_of_add_and_incr_keeps_the_old_value(
    cache: FileSystemCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache.set("n", 1)
    with monkeypatch.context() as patch:
        patch.setattr(os, "replace", enospc)
        with pytest.raises(OSError, match="No space left"):
            cache.incr("n")
        with pytest.raises(OSError, match="No space left"):
            cache.add("fresh", 1)
        with pytest.raises(OSError, match="No space left"):
            cache.touch("n", 100)
    assert cache.get("n") == 1
    assert cache.get("fresh") is None
    assert cache.incr("n") == 2


def test_repr_names_the_directory(cache: FileSystemCache, tmp_path: Path) -> None:
    assert repr(cache) == f"FileSystemCache(location={str(tmp_path / 'cache')!r})"


def test_windows_is_told_to_use_sqlite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setattr(sys, "platform", "win32")
    with pytest.raises(ImproperlyConfigured, match="BACKEND='sqlite'"):
        FileSystemCache(str(tmp_path / "cache"))


def test_incr_and_add_from_threads_are_atomic(tmp_path: Path) -> None:
    location = str(tmp_path / "cache")
    FileSystemCache(location).set("n", 0, None)
    start = threading.Barrier(8)
    won: list[int] = []

    def worker(n: int) -> None:
        cache = FileSystemCache(location)
        start.wait()
        for i in range(100):
            cache.incr("n")
            if cache.add(f"once{i}", n):
                won.append(i)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert FileSystemCache(location).get("n") == 800
    assert sorted(won) == list(range(100))
