"""The persistent embedded backends under several processes, SIGKILL, fork and asyncio.

Children are separate interpreters started with ``python -c`` on the memokit that
this test run imports, so they share nothing with the parent but the store.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import inspect
import json
import os
import pickle
import random
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import memokit
from memokit import BaseCache

ENV = {**os.environ, "PYTHONPATH": str(Path(memokit.__file__).resolve().parent.parent)}
STRESS_OPS = int(os.environ.get("MEMOKIT_STRESS_OPS", "2500"))
"""Operations per process in the stress test; the issue's 10000 take ~10 s per backend."""

BACKENDS = ["filesystem", "sqlite"]


def location_for(backend: str, tmp_path: Path) -> str:
    return str(tmp_path / ("fs-cache" if backend == "filesystem" else "cache.sqlite3"))


def open_cache(backend: str, location: str) -> BaseCache:
    return memokit.create_cache(
        {
            "BACKEND": backend,
            "LOCATION": location,
            "TIMEOUT": None,
            "OPTIONS": {"MAX_ENTRIES": 100_000},
        }
    )


def make_value(key: str, writer: int, seq: int, rng: Any, sizes: Any) -> Any:
    """A value that carries its key, its writer, a sequence number and a checksum."""
    if rng.random() < 0.5:
        payload: Any = rng.randbytes(rng.choice(sizes))
    else:
        payload = [rng.random() for _ in range(2000)]
    digest = hashlib.sha256(pickle.dumps((key, writer, seq, payload))).hexdigest()
    return (key, writer, seq, payload, digest)


def check_value(key: str, value: Any) -> None:
    """Fail unless ``value`` is a miss or a complete value written for ``key``."""
    if value is None:
        return
    stored_key, writer, seq, payload, digest = value
    assert stored_key == key, (stored_key, key)
    expected = hashlib.sha256(pickle.dumps((stored_key, writer, seq, payload))).hexdigest()
    assert expected == digest, f"garbage under {key!r}"


CHILD = (
    "from __future__ import annotations\n"
    "import hashlib, json, os, pickle, random, sys, threading, time, traceback\n"
    "import warnings\n"
    "warnings.simplefilter('error')  # a CorruptEntryWarning in a child fails the test\n"
    "import memokit\n"
    "from typing import Any\n"
    + inspect.getsource(open_cache)
    + inspect.getsource(make_value)
    + inspect.getsource(check_value)
    + """
def stress(cache, ops, seed):
    errors = []
    def worker(n):
        rng = random.Random(seed * 100 + n)
        try:
            for seq in range(ops // 4):
                key = f"key{rng.randrange(10)}"
                roll = rng.random()
                if roll < 0.1:
                    cache.delete(key)
                elif roll < 0.4:
                    sizes = [16, 1024, 16384, 131072]
                    cache.set(key, make_value(key, seed * 100 + n, seq, rng, sizes))
                else:
                    check_value(key, cache.get(key))
        except BaseException:
            errors.append(traceback.format_exc())
    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        sys.exit("".join(errors))
    print(json.dumps("done"))

def counters(cache, n):
    for _ in range(n):
        cache.incr("counter")
        cache.decr("down")
    won = [i for i in range(50) if cache.add(f"once{i}", os.getpid())]
    print(json.dumps({"won": won, "persisted": cache.get("persisted")}))

def crash_loop(cache):
    rng = random.Random()
    seq = 0
    while True:
        key = f"big{seq % 5}"
        cache.set(key, make_value(key, os.getpid(), seq, rng, [65536, 262144, 524288]))
        if seq == 0:
            print("ready", flush=True)
        seq += 1

backend, location, mode, *args = sys.argv[1:]
cache = open_cache(backend, location)
if mode == "stress":
    stress(cache, int(args[0]), int(args[1]))
elif mode == "counters":
    counters(cache, int(args[0]))
elif mode == "crash":
    crash_loop(cache)
else:
    print(json.dumps("opened"))
"""
)


_started: list[subprocess.Popen[str]] = []


def child(backend: str, location: str, *args: object) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-c", CHILD, backend, location, *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    _started.append(process)
    return process


@pytest.fixture(autouse=True)
def reap_children() -> Iterator[None]:
    """Kill and reap any child a failed test left running, closing its pipes."""
    yield
    while _started:
        process = _started.pop()
        if process.poll() is None:
            process.kill()
        process.communicate()


def finish(process: subprocess.Popen[str], timeout: float = 120) -> Any:
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err
    return json.loads(out)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def location(backend: str, tmp_path: Path) -> str:
    return location_for(backend, tmp_path)


# -- several processes on one LOCATION -------------------------------------------------


@pytest.mark.slow
def test_incr_and_add_are_atomic_across_processes(backend: str, location: str) -> None:
    cache = open_cache(backend, location)
    cache.set("counter", 0)
    cache.set("down", 0)
    cache.set("persisted", {"from": "parent"})
    processes = [child(backend, location, "counters", 300) for _ in range(4)]
    results = [finish(process) for process in processes]
    assert cache.get("counter") == 1200
    assert cache.get("down") == -1200
    won = sorted(i for result in results for i in result["won"])
    assert won == list(range(50))  # each add won by exactly one process
    assert all(result["persisted"] == {"from": "parent"} for result in results)


@pytest.mark.stress
def test_four_processes_of_four_threads_read_only_whole_values(backend: str, location: str) -> None:
    open_cache(backend, location)  # make the store before the children race to
    processes = [child(backend, location, "stress", STRESS_OPS, seed) for seed in range(4)]
    for process in processes:
        assert finish(process) == "done"
    cache = open_cache(backend, location)
    for i in range(10):
        check_value(f"key{i}", cache.get(f"key{i}"))
    if backend == "filesystem":
        leftovers = [n for n in os.listdir(location) if n.endswith(".mkc-tmp")]
        assert leftovers == []
    else:
        conn = cache._connection()  # type: ignore[attr-defined]  # the sqlite backend's
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


# -- SIGKILL at random points -------------------------------------------------------------


@pytest.mark.slow
def test_sigkill_during_writes_never_leaves_garbage(backend: str, location: str) -> None:
    cache = open_cache(backend, location)
    rng = random.Random(5)
    for _ in range(20):
        process = child(backend, location, "crash")
        assert process.stdout is not None
        assert process.stdout.readline() == "ready\n", process.stderr
        time.sleep(rng.uniform(0, 0.08))
        process.send_signal(signal.SIGKILL)
        process.communicate()
        assert process.returncode == -signal.SIGKILL
        for i in range(5):
            check_value(f"big{i}", cache.get(f"big{i}"))
    assert cache.get("big0") is not None
    cache.set("after", "crashes")
    assert cache.get("after") == "crashes"
    # A process that opens the store later removes what the killed writers left.
    assert finish(child(backend, location, "open")) == "opened"
    if backend == "filesystem":
        assert [n for n in os.listdir(location) if n.endswith(".mkc-tmp")] == []
    else:
        conn = cache._connection()  # type: ignore[attr-defined]  # the sqlite backend's
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


# -- fork ----------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")
def test_fork_child_uses_its_own_connection_and_parent_keeps_working(
    backend: str, location: str
) -> None:
    cache = open_cache(backend, location)
    cache.set("parent", 1)
    assert cache.get("parent") == 1
    before: Any = cache._connection() if backend == "sqlite" else None  # type: ignore[attr-defined]
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child, which exits below
        code = 1
        try:
            if backend == "sqlite":
                from memokit.backends import sqlite

                assert cache._connection() is not before  # type: ignore[attr-defined]
                assert any(state.conn is before for state in sqlite._inherited)
            assert cache.get("parent") == 1
            cache.set("child", 2)
            assert cache.incr("parent") == 2
            del cache
            gc.collect()
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    if backend == "sqlite":
        assert cache._connection() is before  # type: ignore[attr-defined]
    assert cache.get("child") == 2
    assert cache.get("parent") == 2
    cache.set("after", 3)
    assert cache.incr("after") == 4


# -- asyncio -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("primitive", "call"),
    [
        ("_get", lambda cache: cache.aget("key")),
        ("_set", lambda cache: cache.aset("key", 2)),
        ("_incr", lambda cache: cache.aincr("key")),
        ("_get_many", lambda cache: cache.aget_many(["key"])),
    ],
)
def test_async_twins_never_block_the_event_loop(
    backend: str,
    location: str,
    monkeypatch: pytest.MonkeyPatch,
    primitive: str,
    call: Callable[[BaseCache], Any],
) -> None:
    cache = open_cache(backend, location)
    cache.set("key", 1)
    real = getattr(cache, primitive)

    def slow(*args: Any) -> Any:
        time.sleep(0.3)  # a disk that takes its time
        return real(*args)

    monkeypatch.setattr(cache, primitive, slow)

    async def scenario() -> int:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        task = asyncio.create_task(ticker())
        await call(cache)
        task.cancel()
        return ticks

    assert asyncio.run(scenario()) >= 5


# -- opening a fresh store from everywhere at once ------------------------------------------


@pytest.mark.slow
def test_processes_and_threads_open_a_fresh_store_at_once(backend: str, location: str) -> None:
    processes = [child(backend, location, "open") for _ in range(4)]
    start = threading.Barrier(16)
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            start.wait()
            cache = open_cache(backend, location)
            cache.set(n, n)
            assert cache.incr(n) == n + 1
        except BaseException as exc:  # recorded and asserted on below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert [finish(process) for process in processes] == ["opened"] * 4
    assert open_cache(backend, location).get_many(range(16)) == {n: n + 1 for n in range(16)}
