"""The filesystem backend's lock: a deadline on every wait, no descriptor kept, fork, culling.

Another process's hold of the lock is played by a second open file description of
the lock file in this process: ``flock`` excludes those as it excludes processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import gc
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator
from pathlib import Path

import pytest
from freezegun import freeze_time

import memokit
from memokit import FileSystemCache, ImproperlyConfigured, cached
from memokit.backends import filesystem
from memokit.resilience import is_backend_failure


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@contextlib.contextmanager
def held_by_another(root: Path) -> Iterator[None]:
    """Hold the directory's lock as another process would."""
    fd = os.open(root / filesystem.LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def entry_files(directory: Path) -> list[str]:
    return [name for name in os.listdir(directory) if name.endswith(".mkc")]


def open_fds() -> set[str]:
    """What this process's descriptors point at."""
    targets = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            targets.add(f"{fd}:{os.readlink(f'/proc/self/fd/{fd}')}")
    return targets


needs_proc = pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")


# -- LOCK_TIMEOUT ------------------------------------------------------------------------


def test_lock_timeout_defaults_to_five_seconds(root: Path) -> None:
    assert FileSystemCache(str(root)).lock_timeout == 5.0
    cache = memokit.create_cache(
        {"BACKEND": "filesystem", "LOCATION": str(root), "OPTIONS": {"LOCK_TIMEOUT": 0.5}}
    )
    assert cache.lock_timeout == 0.5


@pytest.mark.parametrize("value", [0, -1, float("inf"), float("nan"), "5", None, True, 1e10, 1e300])
def test_a_bad_lock_timeout_raises_at_once(root: Path, value: object) -> None:
    with pytest.raises(ImproperlyConfigured, match=r"LOCK_TIMEOUT must be .*'LOCK_TIMEOUT': 5"):
        FileSystemCache(str(root), lock_timeout=value)  # type: ignore[arg-type]


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    "operation",
    [
        lambda c: c.set("k", 2),
        lambda c: c.add("new", 1),
        lambda c: c.incr("k"),
        lambda c: c.touch("k", 10),
        lambda c: c.delete("k"),
        lambda c: c.delete_many(["k"]),
        lambda c: c.set_many({"k": 3}),
        lambda c: c.clear(),
    ],
    ids=["set", "add", "incr", "touch", "delete", "delete_many", "set_many", "clear"],
)
def test_a_held_lock_is_waited_for_lock_timeout_then_a_backend_failure(
    root: Path, operation: object
) -> None:
    # On 54ac4a8 every one of these waited in flock for as long as the holder lived.
    cache = FileSystemCache(str(root), lock_timeout=0.3)
    cache.set("k", 1)
    with held_by_another(root):
        started = time.monotonic()
        with pytest.raises(TimeoutError, match=r"LOCK_TIMEOUT") as raised:
            operation(cache)  # type: ignore[operator]
        waited = time.monotonic() - started
        assert cache.get("k") == 1  # reads take no lock
    assert 0.25 <= waited < 2
    assert is_backend_failure(raised.value)
    operation(cache)  # type: ignore[operator]  # free again: it works


@pytest.mark.timeout(30)
def test_threads_of_one_process_share_the_deadline(root: Path) -> None:
    cache = FileSystemCache(str(root), lock_timeout=0.3)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            cache.set("k", 1)
        except TimeoutError as exc:
            errors.append(exc)

    with held_by_another(root):
        import threading

        threads = [threading.Thread(target=worker) for _ in range(4)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        waited = time.monotonic() - started
    assert len(errors) == 4
    assert waited < 2  # each waited its own deadline, not one after the other


@pytest.mark.timeout(30)
def test_a_decorated_call_fails_open_when_the_lock_is_held(root: Path) -> None:
    cache = FileSystemCache(str(root), lock_timeout=0.3)
    runs: list[int] = []

    @cached(cache=cache)
    def double(n: int) -> int:
        runs.append(n)
        return 2 * n

    with held_by_another(root):
        started = time.monotonic()
        assert double(4) == 8
        assert double(4) == 8  # the breaker is open now: no second wait
        assert time.monotonic() - started < 2
    assert runs == [4, 4]


@pytest.mark.timeout(30)
def test_the_async_twins_wait_in_a_worker_thread(root: Path) -> None:
    cache = FileSystemCache(str(root), lock_timeout=0.5)

    async def scenario() -> int:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        task = asyncio.create_task(ticker())
        with pytest.raises(TimeoutError):
            await cache.aset("k", 1)
        task.cancel()
        return ticks

    with held_by_another(root):
        assert asyncio.run(scenario()) >= 20


# -- reads take no lock ------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_reading_an_expired_entry_takes_no_lock(root: Path) -> None:
    # On 54ac4a8 removing the expired file waited for the lock, without a deadline.
    cache = FileSystemCache(str(root))
    with freeze_time() as frozen:
        cache.set("old", 1, timeout=1)
        cache.set_many({"a": 1, "b": 2}, timeout=1)
        frozen.tick(2)
        with held_by_another(root):
            started = time.monotonic()
            assert cache.get("old") is None
            assert cache.get_many(["a", "b"]) == {}
            assert not cache.has_key("old")
            assert time.monotonic() - started < 0.5
        assert len(entry_files(root)) == 3  # left for later: the lock was taken
        assert cache.get("old") is None
        assert cache.get_many(["a", "b"]) == {}
        assert entry_files(root) == []  # removed once the lock was free


# -- descriptors -------------------------------------------------------------------------


@needs_proc
def test_no_descriptor_is_kept_per_directory(tmp_path: Path) -> None:
    # On 54ac4a8 each directory ever used kept its lock file open for good: a
    # process with 256 descriptors failed at its 251st cache.
    before = len(os.listdir("/proc/self/fd"))
    for i in range(300):
        cache = FileSystemCache(str(tmp_path / f"c{i}"))
        cache.set("k", i)
        assert cache.incr("k") == i + 1
        del cache
    gc.collect()
    assert len(os.listdir("/proc/self/fd")) <= before + 2
    assert not [t for t in open_fds() if filesystem.LOCK_NAME in t]


@needs_proc
@pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")
def test_a_child_forked_during_a_hold_keeps_no_lock_descriptor(root: Path) -> None:
    # A copy of the descriptor would keep the flock held after the parent died.
    cache = FileSystemCache(str(root))
    cache.set("k", 1)
    read, write = os.pipe()
    with cache._directory().locked(5):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child reports through the pipe
            code = 1
            try:
                os.close(read)
                leaked = [t for t in open_fds() if filesystem.LOCK_NAME in t]
                os.write(write, repr(leaked).encode())
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
    assert report == "[]"
    assert cache.incr("k") == 2


# -- culling across processes ---------------------------------------------------------------


def test_deleting_other_processes_entries_never_postpones_the_count(root: Path) -> None:
    # On 54ac4a8 a process that deleted entries another process made counted them as
    # its own removals and stopped listing the directory: 571 entries under MAX_ENTRIES=300.
    def process() -> FileSystemCache:
        """A cache with a state of its own, as another process has."""
        cache = FileSystemCache(str(root), max_entries=300)
        cache._shared = filesystem._Directory(root)
        cache._scan(cache._shared)
        return cache

    a, b = process(), process()
    bound = 300 + 2 * (300 // 8)  # MAX_ENTRIES + MAX_ENTRIES/8 per writing process
    for i in range(290):
        b.set(f"b{i}", i)
    a.delete_many([f"b{i}" for i in range(290)])  # A invalidates B's entries
    for i in range(290):
        b.set(f"c{i}", i)
        assert len(entry_files(root)) <= bound
    for i in range(280):
        a.set(f"a{i}", i)
        assert len(entry_files(root)) <= bound


def test_a_process_limited_to_256_descriptors_makes_and_drops_400_caches(
    tmp_path: Path,
) -> None:
    # On 54ac4a8 such a process failed with "Too many open files" at its 251st cache.
    script = (
        "import resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))\n"
        "from memokit import FileSystemCache\n"
        "for i in range(400):\n"
        "    cache = FileSystemCache(f'{sys.argv[1]}/c{i}')\n"
        "    cache.set('k', i)\n"
        "    assert cache.incr('k') == i + 1\n"
        "    del cache\n"
        "print('made 400')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(memokit.__file__).resolve().parent.parent)}
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "made 400\n"


@pytest.mark.timeout(30)
def test_the_deadline_holds_under_a_frozen_clock(root: Path) -> None:
    cache = FileSystemCache(str(root), lock_timeout=0.3)
    with freeze_time(), held_by_another(root), pytest.raises(TimeoutError):
        cache.set("k", 1)
