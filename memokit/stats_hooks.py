"""Metrics hooks and the logging events of statistics.

A :class:`MetricsHook` receives what memokit cannot count for later reading:
each computation's duration, a breaker opening or closing, a failed refresh.
Counts (hits, misses, errors ...) are read when a metrics system asks for them
(:func:`memokit.stats.process_stats`), so the hit path never calls a hook.
Every event is also a standard ``logging`` record on the ``memokit`` logger,
with ``record.memokit_event`` naming it (see docs/operations.md).

This module imports nothing else of memokit: the breaker (``resilience.py``)
reports through it.
"""

from __future__ import annotations

import logging
import threading
from typing import Final

__all__ = [
    "BOUNDS",
    "EVENTS",
    "MetricsHook",
    "add_hook",
    "hooks",
    "remove_hook",
]

logger = logging.getLogger("memokit")

BOUNDS: Final = (0.001, 0.01, 0.1, 1.0, 10.0)
"""Upper bounds (seconds, inclusive) of the compute-time buckets; one more bucket above."""

EVENTS: Final = ("breaker_opened", "breaker_closed", "refresh_failed")
"""The values of ``record.memokit_event`` on memokit's log records."""


class MetricsHook:
    """Receives memokit's events; subclass it and override what you need.

    Every method is called in the thread that saw the event, outside memokit's
    locks; it must be quick and must not raise (an exception is logged and
    dropped). The defaults do nothing.
    """

    def computed(self, function: str, seconds: float) -> None:
        """A decorated function (``module:qualname``) ran for ``seconds`` on a miss."""

    def breaker_opened(self, cache: str, error: BaseException) -> None:
        """The circuit breaker of ``cache`` (its repr) opened after ``error``."""

    def breaker_closed(self, cache: str) -> None:
        """The cache answered again after its breaker had opened."""

    def refresh_failed(self, function: str, error: BaseException) -> None:
        """Recomputing an entry of ``function`` ahead of its expiry raised ``error``."""


_hooks: tuple[MetricsHook, ...] = ()
_lock = threading.Lock()


def add_hook(hook: MetricsHook) -> MetricsHook:
    """Send memokit's events to ``hook`` (once, however often it is added); return it."""
    if not isinstance(hook, MetricsHook):
        raise TypeError(
            f"hook must be a memokit.stats.MetricsHook instance (subclass it), not {hook!r}"
        )
    global _hooks
    with _lock:
        if hook not in _hooks:
            _hooks = (*_hooks, hook)
    return hook


def remove_hook(hook: MetricsHook) -> None:
    """Stop sending events to ``hook``; nothing happens if it was not added."""
    global _hooks
    with _lock:
        _hooks = tuple(h for h in _hooks if h is not hook)


def hooks() -> tuple[MetricsHook, ...]:
    """The hooks that receive events now."""
    return _hooks


def _each(method: str, *args: object) -> None:
    for hook in _hooks:
        try:
            getattr(hook, method)(*args)
        except Exception:
            # A metrics system's failure must not become the application's.
            logger.exception("memokit: metrics hook %r failed in %s()", hook, method)


def computed(function: str, seconds: float) -> None:
    """Report a computation's duration to the hooks (called on the miss path only)."""
    if _hooks:
        _each("computed", function, seconds)


def breaker_opened(cache: str, error: BaseException, window: float) -> None:
    """Log and report a breaker that opened."""
    logger.warning(
        "memokit: cache %s failed (%s: %s); decorated calls compute their values and "
        "skip this cache for %.3g s, then probe it again",
        cache,
        type(error).__name__,
        error,
        window,
        extra={"memokit_event": "breaker_opened", "memokit_cache": cache},
    )
    _each("breaker_opened", cache, error)


def breaker_closed(cache: str) -> None:
    """Log and report a cache that answers again."""
    logger.warning(
        "memokit: cache %s answers again; caching resumes",
        cache,
        extra={"memokit_event": "breaker_closed", "memokit_cache": cache},
    )
    _each("breaker_closed", cache)


def refresh_failed(function: str, error: BaseException) -> None:
    """Log and report a failed recomputation ahead of expiry (the stale value stays)."""
    logger.warning(
        "memokit: refreshing an entry of %s failed (%s: %s); the current value is kept",
        function,
        type(error).__name__,
        error,
        extra={"memokit_event": "refresh_failed", "memokit_function": function},
    )
    _each("refresh_failed", function, error)
