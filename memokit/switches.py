"""Switches for tests and operations: turn decorator caching off, or point it elsewhere.

Every decorated call reads :data:`GATE` first. ``GATE.on`` is False in normal
operation, which costs the hit path one attribute read; it is True while any
switch is on anywhere in the process, or while some cache's circuit breaker
counts failures (:mod:`memokit.resilience`), and the call then takes the
slower, guarded path, which asks :func:`routed` where to go.

- :func:`caching_disabled` routes decorated calls to a :class:`DummyCache`,
  which stores nothing: each call runs the function.
- :func:`use_cache` routes them to a given cache;
  :func:`memokit.testing.isolated_cache` does so with a fresh memory cache.

These switches cover the context that entered the block (a ``ContextVar``):
the code inside it, and the asyncio tasks and ``contextvars.copy_context()``
runs started inside it, as long as the block lasts. A thread started inside
is covered only if it runs in a copy of the context. Blocks in other threads
and tasks do not see them, so blocks that overlap across threads compose.

``MEMOKIT_DISABLE_CACHING=1`` (read at import) and
``caching_disabled(process_wide=True)`` turn caching off for every thread and
event loop; the process-wide blocks are counted, so overlapping ones compose.
A context's own switch wins over the process-wide one.

The invalidation helpers never act on the dummy cache: under
``caching_disabled()`` they act on the cache the function would use without it
(see :func:`helper_cache`). The low-level API (``memokit.cache``,
``caches[...]``) is not affected by any switch.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import threading
from collections.abc import Iterator
from typing import Final

from .backends.base import BaseCache
from .config import get_backend_class
from .exceptions import ImproperlyConfigured

ENVIRONMENT_VARIABLE: Final = "MEMOKIT_DISABLE_CACHING"
_TRUE: Final = frozenset({"1"})
_FALSE: Final = frozenset({"", "0"})
_DISABLED_LOCATION: Final = "memokit-caching-disabled"


class Gate:
    """What decorated calls check before using a cache."""

    __slots__ = ("disabled", "on", "switches", "troubled")

    def __init__(self) -> None:
        self.on = False
        """True while any of the counts below is above zero."""
        self.switches = 0
        """Context switches (``use_cache``, ``caching_disabled()``) in force somewhere."""
        self.disabled = 0
        """Process-wide ``caching_disabled`` blocks in force (the environment counts one)."""
        self.troubled = 0
        """Circuit breakers that count failures now."""

    def _update(self) -> None:
        self.on = self.switches > 0 or self.disabled > 0 or self.troubled > 0


GATE: Final = Gate()
# Reentrant: a breaker's __del__ (garbage collection) may run while this thread holds it.
_lock = threading.RLock()
_disabled_cache: BaseCache | None = None


def _disabled() -> BaseCache:
    """The cache that stores nothing, made on first use.

    Looked up by its short name in the backend registry, so this module depends on
    no concrete backend, and importing memokit imports no backend module.
    """
    global _disabled_cache
    found = _disabled_cache
    if found is None:
        with _lock:
            found = _disabled_cache
            if found is None:
                found = _disabled_cache = get_backend_class("dummy")(_DISABLED_LOCATION)
    return found


class _Switch:
    """One context switch block; ``outer`` is the one in force where it was entered."""

    __slots__ = ("active", "cache", "disabled", "outer", "owner")

    def __init__(self, cache: BaseCache, disabled: bool, outer: _Switch | None) -> None:
        self.cache = cache
        self.disabled = disabled
        self.outer = outer
        self.active = True
        self.owner = threading.get_ident()


_current: contextvars.ContextVar[_Switch | None] = contextvars.ContextVar(
    "memokit_switch", default=None
)
# Blocks in force, with their threads: a fork keeps only the forking thread's.
_active: dict[_Switch, int] = {}
_process_blocks: dict[object, int | None] = {}


def routed() -> BaseCache | None:
    """The cache decorated calls use instead of their own here and now, or None."""
    switch = _current.get()
    # A copied context (a task that outlived its block) may hold ended switches.
    while switch is not None and not switch.active:
        switch = switch.outer
    if switch is not None:
        return switch.cache
    if GATE.disabled:
        return _disabled()
    return None


def helper_cache() -> BaseCache | None:
    """The cache invalidation helpers act on instead of the function's own, or None.

    ``caching_disabled()`` is skipped: it changes what calls read, never where
    invalidations go, so nothing is lost in a dummy cache.
    """
    switch = _current.get()
    while switch is not None and (not switch.active or switch.disabled):
        switch = switch.outer
    return None if switch is None else switch.cache


def trouble(delta: int) -> None:
    """A circuit breaker started (+1) or stopped (-1) counting failures."""
    with _lock:
        GATE.troubled += delta
        GATE._update()


def disabled_by_environment(environ: dict[str, str] | os._Environ[str] = os.environ) -> bool:
    """Read ``MEMOKIT_DISABLE_CACHING``: ``1`` is off; ``0``, empty or unset is on."""
    value = environ.get(ENVIRONMENT_VARIABLE, "")
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(
        f"{ENVIRONMENT_VARIABLE}={value!r} is not understood; "
        f"use 1 (caching off) or 0 (caching on), or leave it unset"
    )


@contextlib.contextmanager
def use_cache(cache: BaseCache) -> Iterator[BaseCache]:
    """Route decorated calls in this context to ``cache`` inside the block; yield it."""
    if not isinstance(cache, BaseCache):
        raise TypeError(f"use_cache() takes a memokit cache instance, not {cache!r}")
    with _switched(cache, disabled=False):
        yield cache


@contextlib.contextmanager
def caching_disabled(*, process_wide: bool = False) -> Iterator[None]:
    """Turn decorator caching off inside the block: every call runs its function.

    It covers this context (and tasks started inside); with ``process_wide=True``,
    every thread and event loop. Invalidation helpers still reach the real cache.
    """
    if type(process_wide) is not bool:
        raise TypeError(f"process_wide must be True or False, not {process_wide!r}")
    if not process_wide:
        with _switched(_disabled(), disabled=True):
            yield
        return
    block = object()
    with _lock:
        _process_blocks[block] = threading.get_ident()
        GATE.disabled += 1
        GATE._update()
    try:
        yield
    finally:
        with _lock:
            if _process_blocks.pop(block, None) is not None:
                GATE.disabled -= 1
                GATE._update()


@contextlib.contextmanager
def _switched(cache: BaseCache, *, disabled: bool) -> Iterator[None]:
    switch = _Switch(cache, disabled, _current.get())
    with _lock:
        _active[switch] = switch.owner
        GATE.switches += 1
        GATE._update()
    token = _current.set(switch)
    try:
        yield
    finally:
        _end(switch)
        # Left in another context (an async fixture's teardown, say), reset fails;
        # the switch is inactive already, so the context that entered it is fine.
        with contextlib.suppress(ValueError):
            _current.reset(token)


def _end(switch: _Switch) -> None:
    with _lock:
        switch.active = False
        if _active.pop(switch, None) is not None:
            GATE.switches -= 1
            GATE._update()


if disabled_by_environment():
    _process_blocks[ENVIRONMENT_VARIABLE] = None  # for the life of the process
    GATE.disabled += 1
    GATE._update()


def _reset_after_fork() -> None:
    global _lock
    _lock = threading.RLock()
    # Only the forking thread lives on: blocks entered by others never end here.
    me = threading.get_ident()
    for switch, thread in list(_active.items()):
        if thread != me:
            switch.active = False
            del _active[switch]
    for block, owner in list(_process_blocks.items()):
        if owner is not None and owner != me:
            del _process_blocks[block]
    GATE.switches = len(_active)
    GATE.disabled = len(_process_blocks)
    GATE._update()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)
