"""Forks under load: 150 children per backend, forked while three threads use the cache.

Each child uses the cache at once (a set, a get, an incr, reads of the parent's
keys) and exits; the parent waits for it with a deadline, so a child that hangs
fails the test in seconds instead of hanging it. On 54ac4a8 SQLite children hung
inside ``sqlite3`` or got "database is locked".
"""

from __future__ import annotations

import faulthandler
import os
import random
import signal
import threading
import time
import traceback
from typing import Any

import pytest

from memokit import BaseCache

pytestmark = [
    pytest.mark.chaos,
    # Python 3.12+ warns that a fork of a multi-threaded process may deadlock the
    # child: that is exactly what these tests fork into and check.
    pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning"),
]

FORKS = 150
THREADS = 3
CHILD_DEADLINE = 10.0
"""Seconds a child may take; a healthy one takes milliseconds."""

KEYS = [f"k{i}" for i in range(10)]


def value_for(key: str, seq: int) -> tuple[str, int, str]:
    return (key, seq, f"{key}/{seq}" * 20)


def check(key: str, value: Any) -> None:
    """Fail unless ``value`` is a miss or a whole value written for ``key``."""
    if value is None:
        return
    stored, seq, text = value
    assert stored == key, (stored, key)
    assert text == f"{key}/{seq}" * 20, f"garbage under {key!r}"


def busy(cache: BaseCache, seed: int, stop: threading.Event, errors: list[str]) -> None:
    rng = random.Random(seed)
    seq = 0
    try:
        while not stop.is_set():
            key = rng.choice(KEYS)
            roll = rng.random()
            if roll < 0.3:
                cache.set(key, value_for(key, seq))
            elif roll < 0.4:
                cache.delete(key)
            elif roll < 0.5:
                cache.incr("parent-counter")
            elif roll < 0.6:
                cache.get_many(KEYS[:3])
            else:
                check(key, cache.get(key))
            seq += 1
    except BaseException:
        errors.append(traceback.format_exc())


def in_child(cache: BaseCache, n: int) -> int:
    """What a forked child does; returns its exit status."""
    # A child that hangs shows where, before the parent kills it.
    faulthandler.dump_traceback_later(CHILD_DEADLINE - 1, exit=False)
    try:
        key = f"child{n}"
        cache.set(key, n)
        assert cache.get(key) == n
        assert cache.incr(key) == n + 1
        assert cache.add(f"{key}-added", n)
        for key in KEYS:
            check(key, cache.get(key))
        return 0
    except BaseException:
        os.write(2, f"child {n}: {traceback.format_exc()}".encode())
        return 1


def wait_for(pid: int) -> int | None:
    """The child's exit code, or None when it did not finish within the deadline."""
    deadline = time.monotonic() + CHILD_DEADLINE
    delay = 0.0005
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return None
        time.sleep(delay)
        delay = min(delay * 2, 0.01)


@pytest.mark.timeout(60)
def test_children_forked_under_load_work_at_once(make_cache: Any) -> None:
    # No culling: every child's entry is checked at the end.
    options = {"MAX_ENTRIES": 100_000} if make_cache().capabilities.culls else {}
    cache = make_cache(TIMEOUT=None, OPTIONS=options)
    cache.set("parent-counter", 0)
    stop = threading.Event()
    errors: list[str] = []
    threads = [
        threading.Thread(
            target=busy, args=(make_cache(TIMEOUT=None, OPTIONS=options), seed, stop, errors)
        )
        for seed in range(THREADS - 1)
    ]
    threads.append(threading.Thread(target=busy, args=(cache, THREADS, stop, errors)))
    for thread in threads:
        thread.start()
    outcomes: dict[str, int] = {}
    try:
        for n in range(FORKS):
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the child reports through its exit code
                os._exit(in_child(cache, n))
            code = wait_for(pid)
            outcome = "hung" if code is None else "ok" if code == 0 else "failed"
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            assert outcome == "ok", f"child {n} {outcome}; so far {outcomes}"
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
    assert errors == []
    assert outcomes == {"ok": FORKS}
    # The parent was not disturbed: it still reads, writes and counts.
    assert cache.get("parent-counter") >= 0
    cache.set("after", 1)
    assert cache.incr("after") == 2
    if cache.capabilities.cross_process:
        assert cache.get_many([f"child{n}" for n in range(FORKS)]) == {
            f"child{n}": n + 1 for n in range(FORKS)
        }
