"""The opt-in lock in the backend that extends single flight across processes.

``@cached(lock_lease=30)``: on a miss, the caller that leads this process's single
flight also takes a lock entry next to the value's key with ``add`` (atomic on
every storing backend), for at most ``lock_lease`` seconds. Callers in other
processes that find the lock taken poll for the value instead of computing it.

Every wait has a deadline: the lease, and at most the cache's ``LOCK_TIMEOUT``
(``OPTIONS['LOCK_TIMEOUT']``, 5 s by default). A caller that has waited that long
computes the value itself, so a holder that died, was paused (``SIGSTOP``, a
debugger) or is merely slow costs the others at most that wait. The lock entry
itself expires after ``lock_lease`` seconds. Choose a lease longer
than the function's usual run time. Releasing compares the token before
deleting, in two steps; a holder whose run outlasted its lease can therefore,
rarely, release the next holder's lock, which costs one extra computation and
never a wrong value.

A backend failure while locking fails open like any other (the caller computes
without the lock).
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Final

from .backends.base import MISSING, BaseCache
from .keybuilders import LOCK_SUFFIX, MAX_KEY_LENGTH
from .keys import key_is_clean
from .resilience import CircuitBreaker, fail_open, is_backend_failure

SUFFIX: Final = LOCK_SUFFIX
"""Appended to an entry's key to make its lock's key."""
_FIRST_POLL: Final = 0.01
_LAST_POLL: Final = 0.25


def check_lease(lease: object) -> float | None:
    """Validate the ``lock_lease`` decorator argument."""
    if lease is None:
        return None
    if isinstance(lease, bool) or not isinstance(lease, int | float) or not 0 < lease < math.inf:
        raise TypeError(
            f"lock_lease must be None (no lock across processes) or a finite number of "
            f"seconds > 0, not {lease!r}; e.g. lock_lease=30, longer than the function runs"
        )
    return float(lease)


def lock_key_for(key: str) -> str:
    """Return the key of ``key``'s lock, never longer than ``MAX_KEY_LENGTH``.

    Default keys leave room for the suffix; a ``key=`` of the caller's that does
    not (or that memcached could not store) gets a digest, so the lock key is
    always valid, whatever the entry's key.
    """
    made = key + SUFFIX
    if len(made) <= MAX_KEY_LENGTH and made.isascii() and key_is_clean(made):
        return made
    digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=32).hexdigest()
    return f"memokit.lock:#{digest}"


class BackendLock:
    """Waits for a turn to compute one key, through a lock entry in the backend."""

    __slots__ = ("lease",)

    def __init__(self, lease: float) -> None:
        self.lease = lease

    def acquire(
        self,
        cache: BaseCache,
        key: str,
        version: int | None,
        breaker: CircuitBreaker,
        check: Callable[[], Any],
    ) -> tuple[str | None, Any]:
        """Wait for the lock or the value; return ``(token, MISSING)`` or ``(None, value)``.

        ``check`` reads the value (MISSING when absent or invalid). A token means
        the lock is held and must be released; a value means another process
        computed it meanwhile; ``(None, MISSING)`` means compute without the lock
        (the lease ran out, or the backend failed).
        """
        token = uuid.uuid4().hex
        lock_key = lock_key_for(key)
        limit = self.wait_limit(cache)
        deadline = time.monotonic() + limit
        delay = _FIRST_POLL
        slept = 0.0  # also bounds the wait when the clock is frozen (freezegun in tests)
        while True:
            try:
                if cache.add(lock_key, token, self.lease, version):
                    # The previous holder may have stored the value just before releasing.
                    found = check()
                    if found is MISSING:
                        return token, MISSING
                    self.release(cache, key, version, token)
                    return None, found
                found = check()
            except Exception as exc:
                if not fail_open(breaker, exc):
                    raise
                return None, MISSING
            if found is not MISSING:
                return None, found
            remaining = min(deadline - time.monotonic(), limit - slept)
            if remaining <= 0:
                return None, MISSING  # the holder is slow or gone: compute without it
            pause = min(delay, remaining)
            time.sleep(pause)
            slept += pause
            delay = min(delay * 2, _LAST_POLL)

    def wait_limit(self, cache: BaseCache) -> float:
        """Seconds a caller waits for the lock: the lease, at most ``LOCK_TIMEOUT``."""
        return min(self.lease, cache.lock_timeout)

    def release(self, cache: BaseCache, key: str, version: int | None, token: str) -> None:
        """Remove the lock if it is still ours; a failure leaves it to expire."""
        lock_key = lock_key_for(key)
        try:
            if cache.get(lock_key, None, version) == token:
                cache.delete(lock_key, version)
        except Exception as exc:
            # Not worth a warning or the breaker: the lease ends the lock anyway.
            if not is_backend_failure(exc):
                raise

    async def aacquire(
        self,
        cache: BaseCache,
        key: str,
        version: int | None,
        breaker: CircuitBreaker,
        check: Callable[[], Awaitable[Any]],
    ) -> tuple[str | None, Any]:
        """The async twin of :meth:`acquire`."""
        token = uuid.uuid4().hex
        lock_key = lock_key_for(key)
        limit = self.wait_limit(cache)
        deadline = time.monotonic() + limit
        delay = _FIRST_POLL
        slept = 0.0  # also bounds the wait when the clock is frozen (freezegun in tests)
        while True:
            try:
                if await cache.aadd(lock_key, token, self.lease, version):
                    found = await check()
                    if found is MISSING:
                        return token, MISSING
                    await self.arelease(cache, key, version, token)
                    return None, found
                found = await check()
            except Exception as exc:
                if not fail_open(breaker, exc):
                    raise
                return None, MISSING
            if found is not MISSING:
                return None, found
            remaining = min(deadline - time.monotonic(), limit - slept)
            if remaining <= 0:
                return None, MISSING
            pause = min(delay, remaining)
            await asyncio.sleep(pause)
            slept += pause
            delay = min(delay * 2, _LAST_POLL)

    async def arelease(self, cache: BaseCache, key: str, version: int | None, token: str) -> None:
        """The async twin of :meth:`release`."""
        lock_key = lock_key_for(key)
        try:
            if await cache.aget(lock_key, None, version) == token:
                await cache.adelete(lock_key, version)
        except Exception as exc:
            # Not worth a warning or the breaker: the lease ends the lock anyway.
            if not is_backend_failure(exc):
                raise
