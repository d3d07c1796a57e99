"""A ``lock_lease=`` wait ends after the cache's LOCK_TIMEOUT (then the caller computes).

Another process's hold of the lock is played by an acquire made here that is never
released (tests/chaos/test_locks.py does it with real processes, killed or paused).
"""

from __future__ import annotations

import asyncio
import time

import pytest

import memokit
from memokit import cached
from memokit.backends.base import MISSING
from memokit.locks import BackendLock
from memokit.resilience import breaker_for


def hold_lock(cache: memokit.BaseCache, key: str) -> None:
    token, found = BackendLock(30).acquire(cache, key, None, breaker_for(cache), lambda: MISSING)
    assert token is not None
    assert found is MISSING


@pytest.mark.timeout(30)
def test_a_waiter_computes_after_lock_timeout_not_after_the_lease() -> None:
    cache = memokit.create_cache(
        {"BACKEND": "memory", "LOCATION": "lease-deadline", "OPTIONS": {"LOCK_TIMEOUT": 0.3}}
    )
    runs: list[int] = []

    @cached(cache=cache, lock_lease=30)
    def square(n: int) -> int:
        runs.append(n)
        return n * n

    hold_lock(cache, square.key(3))
    started = time.monotonic()
    assert square(3) == 9
    assert 0.25 < time.monotonic() - started < 2
    assert runs == [3]


@pytest.mark.timeout(30)
def test_the_async_wait_ends_alike() -> None:
    cache = memokit.create_cache(
        {"BACKEND": "memory", "LOCATION": "lease-deadline-async", "OPTIONS": {"LOCK_TIMEOUT": 0.3}}
    )

    @cached(cache=cache, lock_lease=30)
    async def square(n: int) -> int:
        return n * n

    hold_lock(cache, square.key(4))
    started = time.monotonic()
    assert asyncio.run(square(4)) == 16
    assert 0.25 < time.monotonic() - started < 2


def test_the_wait_is_the_lease_when_it_is_shorter() -> None:
    cache = memokit.create_cache({"BACKEND": "memory", "LOCATION": "lease-short"})
    assert BackendLock(0.5).wait_limit(cache) == 0.5
    assert BackendLock(30).wait_limit(cache) == 5.0
