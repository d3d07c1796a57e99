"""Switches for tests and operations: turn decorator caching off, or point it elsewhere.

Every decorated call reads :data:`GATE` first. ``GATE.on`` is False in normal
operation, which costs the hit path one attribute read; it is True while a switch
is on (``GATE.cache`` then names the cache used instead of the one each decorator
was given) or while some cache's circuit breaker counts failures
(:mod:`memokit.resilience`), and the call then takes the slower, guarded path.

- ``MEMOKIT_DISABLE_CACHING=1`` in the environment (read at import) and
  :func:`caching_disabled` route every decorator to a :class:`DummyCache`, which
  stores nothing: each call runs the function.
- :func:`use_cache` routes every decorator to a given cache;
  :func:`memokit.testing.isolated_cache` does so with a fresh memory cache.

The switches are process-wide (every thread and event loop sees them) and nest:
leaving a block restores what was in force when it was entered. The low-level
API (``memokit.cache``, ``caches[...]``) is not affected.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from typing import Final

from .backends.base import BaseCache
from .backends.dummy import DummyCache
from .exceptions import ImproperlyConfigured

ENVIRONMENT_VARIABLE: Final = "MEMOKIT_DISABLE_CACHING"
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"", "0", "false", "no", "off"})


class Gate:
    """What decorated calls check before using a cache."""

    __slots__ = ("cache", "on", "troubled")

    def __init__(self) -> None:
        self.on = False
        """True when ``cache`` is set or ``troubled`` > 0."""
        self.cache: BaseCache | None = None
        """Where every decorated call goes instead (a switch is on), else None."""
        self.troubled = 0
        """Circuit breakers that count failures now."""

    def _update(self) -> None:
        self.on = self.cache is not None or self.troubled > 0


GATE: Final = Gate()
# Reentrant: a breaker's __del__ (garbage collection) may run while this thread holds it.
_lock = threading.RLock()


def trouble(delta: int) -> None:
    """A circuit breaker started (+1) or stopped (-1) counting failures."""
    with _lock:
        GATE.troubled += delta
        GATE._update()


def disabled_by_environment(environ: dict[str, str] | os._Environ[str] = os.environ) -> bool:
    """Read ``MEMOKIT_DISABLE_CACHING``; an unknown value raises with the accepted ones."""
    value = environ.get(ENVIRONMENT_VARIABLE, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(
        f"{ENVIRONMENT_VARIABLE}={environ[ENVIRONMENT_VARIABLE]!r} is not understood; "
        f"use 1 (caching off) or 0 (caching on)"
    )


@contextlib.contextmanager
def use_cache(cache: BaseCache) -> Iterator[BaseCache]:
    """Route every decorated call to ``cache`` inside the block; yield it."""
    if not isinstance(cache, BaseCache):
        raise TypeError(f"use_cache() takes a memokit cache instance, not {cache!r}")
    with _lock:
        previous = GATE.cache
        GATE.cache = cache
        GATE._update()
    try:
        yield cache
    finally:
        with _lock:
            GATE.cache = previous
            GATE._update()


@contextlib.contextmanager
def caching_disabled() -> Iterator[None]:
    """Turn decorator caching off inside the block: every call runs its function."""
    with use_cache(DummyCache("memokit-caching-disabled")):
        yield


if disabled_by_environment():
    GATE.cache = DummyCache("memokit-caching-disabled")
    GATE._update()


def _reset_after_fork() -> None:
    global _lock
    _lock = threading.RLock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)
