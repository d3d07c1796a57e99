"""A child forked while a parent thread holds a client library's lock works at once.

A lock held by another thread at the instant of ``fork`` stays held for good in
the child, where that thread does not exist. redis-py's pool ``reset()`` (run by
its after-fork pid check) takes the pool's ``_lock``, and pymemcache's
``close()`` takes its pool's ``_lock``: a child forked while a parent thread was
inside either hung forever. Each test holds one such lock in a parent thread
while forking, so the bad interleaving happens every time instead of once in
thousands of forks (tests/chaos/test_fork.py found it once in CI).
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

import memokit
from memokit import BaseCache

pytestmark = [
    # Python 3.12+ warns that a fork of a multi-threaded process may deadlock the
    # child: that is exactly what these tests fork into and check.
    pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning"),
]

CHILD_DEADLINE = 2.0
"""Seconds a child may take; a healthy one takes milliseconds."""


@contextmanager
def held_by_another_thread(lock: Any) -> Iterator[None]:
    """Hold ``lock`` in a parent thread for the duration of the block."""
    taken = threading.Event()
    done = threading.Event()

    def hold() -> None:
        with lock:
            taken.set()
            done.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    assert taken.wait(5)
    try:
        yield
    finally:
        done.set()
        thread.join(5)


def child_works(cache: BaseCache) -> int:
    """What the child does (sync and async); its exit status."""
    try:
        cache.set("child", 1)
        assert cache.get("child") == 1
        assert cache.incr("child") == 2

        async def main() -> None:
            await cache.aset("achild", 1)
            assert await cache.aget("achild") == 1

        asyncio.run(main())
        return 0
    except BaseException:
        os.write(2, f"child: {traceback.format_exc()}".encode())
        return 1


def fork_and_wait(cache: BaseCache) -> str:
    """Fork a child that uses ``cache``; 'ok', 'failed' or 'hung'."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit code
        os._exit(child_works(cache))
    deadline = time.monotonic() + CHILD_DEADLINE
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return "ok" if os.waitstatus_to_exitcode(status) == 0 else "failed"
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return "hung"
        time.sleep(0.005)


def redis_locks(cache: Any) -> dict[str, Any]:
    pool = cache._primary.connection_pool
    return {"pool": pool._lock, "fork": pool._fork_lock, "async": cache._async_lock}


def memcached_locks(cache: Any) -> dict[str, Any]:
    return {"pool": cache._client.client_pool._lock}


LOCKS: dict[str, Callable[[Any], dict[str, Any]]] = {
    "redis": redis_locks,
    "memcached": memcached_locks,
}


@pytest.fixture(params=list(LOCKS))
def remote(request: pytest.FixtureRequest) -> Iterator[tuple[str, BaseCache]]:
    """A cache on this run's server of the backend, under a key prefix of its own."""
    backend = request.param
    server = request.getfixturevalue(f"{backend}_server")
    cache = memokit.create_cache(
        {"BACKEND": backend, "LOCATION": str(server.url), "KEY_PREFIX": "fork-held-locks"}
    )
    yield backend, cache
    cache.delete_many(["parent", "child", "achild"])
    cache.close()


@pytest.mark.timeout(30)
def test_child_forked_while_a_thread_holds_a_client_lock_works(
    remote: tuple[str, BaseCache],
) -> None:
    backend, cache = remote
    cache.set("parent", 1)  # the pool has a connection, as in a busy process
    outcomes = {}
    for name, lock in LOCKS[backend](cache).items():
        with held_by_another_thread(lock):
            outcomes[name] = fork_and_wait(cache)
    assert outcomes == dict.fromkeys(outcomes, "ok")
    # The parent still works on its own pool.
    assert cache.incr("parent") == 2
