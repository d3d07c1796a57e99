"""Switches for tests and operations: turn decorator caching off, or point it elsewhere.

Every decorated call asks :data:`ROUTE` first: when it names a cache, that cache
is used instead of the one the decorator was given (an alias or an instance).

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


class Route:
    """Where decorated calls go: ``cache`` when set, else where each decorator says."""

    __slots__ = ("cache",)

    def __init__(self) -> None:
        self.cache: BaseCache | None = None


ROUTE: Final = Route()
_lock = threading.Lock()


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
        previous = ROUTE.cache
        ROUTE.cache = cache
    try:
        yield cache
    finally:
        with _lock:
            ROUTE.cache = previous


@contextlib.contextmanager
def caching_disabled() -> Iterator[None]:
    """Turn decorator caching off inside the block: every call runs its function."""
    with use_cache(DummyCache("memokit-caching-disabled")):
        yield


if disabled_by_environment():
    ROUTE.cache = DummyCache("memokit-caching-disabled")
