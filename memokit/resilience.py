"""Fail open: a cache outage must not become an application outage.

When the backend behind ``@cached`` fails, the decorated call computes its value
and returns it anyway, and a circuit breaker, one per cache instance, keeps the
next calls away from the backend for a short window instead of letting each of
them wait on it again.

Two kinds of failure are told apart everywhere:

- a *backend* failure (checked by :func:`is_backend_failure`): the store cannot
  be reached or cannot do its job. :class:`memokit.BackendError` and its
  subclasses (the Redis and Memcached backends wrap their clients' transport and
  timeout errors in these); :class:`OSError`, which covers sockets, timeouts
  (``TimeoutError``), ``ConnectionError`` and file I/O such as a full disk
  (``ENOSPC``); :class:`sqlite3.Error` (a locked, read-only or damaged
  database). It feeds the breaker, and decorated calls fail open.
- a *value* failure (checked by :func:`is_value_failure`): one entry cannot be
  decoded (:class:`memokit.UnreadableEntry`, any ``pickle.UnpicklingError`` or
  ``EOFError`` from a serializer), or one value is too large for the backend
  (:class:`memokit.ValueTooLarge`). It concerns that key only: it never opens the
  breaker, the entry counts as a miss and the next computation replaces it, and
  it is reported once per key and window (:func:`report_value_failure`).

Everything else propagates: the function's own exceptions, bad arguments, a
result the serializer cannot encode (``TypeError`` naming the function), an
invalid key, a missing alias, and any other bug. Explicit invalidation never
fails open.
"""

from __future__ import annotations

import logging
import math
import os
import pickle
import sys
import threading
import time
import warnings
import weakref
from dataclasses import dataclass
from typing import Any, Final

from . import stats_hooks
from .backends import _reports
from .backends.base import BaseCache, _caller_stacklevel
from .exceptions import BackendError, CorruptEntryWarning, ValueFailure, ValueFailureWarning
from .switches import trouble

logger = logging.getLogger("memokit")

FAIL_OPEN_ERRORS: Final[tuple[type[BaseException], ...]] = (
    BackendError,
    OSError,
)
"""The exception types that count as a backend failure (see the module docstring), with
:class:`sqlite3.Error`, checked apart so that importing memokit does not import sqlite3."""

VALUE_FAILURE_ERRORS: Final[tuple[type[BaseException], ...]] = (
    ValueFailure,
    pickle.UnpicklingError,
    EOFError,
)
"""The exception types that concern one entry or value only (see the module docstring)."""

_MAX_REPORTED: Final = 4096
"""Keys whose last report a breaker remembers; older marks are dropped beyond this."""


def is_backend_failure(exc: BaseException) -> bool:
    """True when ``exc`` is a failure of the backend rather than of the caller's code."""
    if isinstance(exc, VALUE_FAILURE_ERRORS):
        return False
    if isinstance(exc, FAIL_OPEN_ERRORS):
        return True
    # Only the SQLite backend raises sqlite3.Error, and it has imported sqlite3 then.
    sqlite3 = sys.modules.get("sqlite3")
    return sqlite3 is not None and isinstance(exc, sqlite3.Error)


def is_value_failure(exc: BaseException) -> bool:
    """True when ``exc`` concerns one entry or value only (it never opens the breaker)."""
    return isinstance(exc, VALUE_FAILURE_ERRORS)


@dataclass(frozen=True)
class BreakerSettings:
    """How a breaker reacts to failures."""

    window: float = 5.0
    """Seconds the backend is skipped after it failed, before one call probes it again."""
    threshold: int = 1
    """Consecutive failures that open the breaker (1: the first one)."""
    fail_open: bool = True
    """False makes backend failures propagate (for debugging); the breaker is then unused."""


def _check_settings(window: object, threshold: object, fail_open: object) -> BreakerSettings:
    if (
        isinstance(window, bool)
        or not isinstance(window, int | float)
        or not 0 <= window < math.inf
    ):
        raise ValueError(
            f"window must be a finite number of seconds >= 0, not {window!r}; e.g. window=5"
        )
    if type(threshold) is not int or threshold < 1:
        raise ValueError(
            f"threshold must be an int >= 1 (failures in a row that open the breaker), "
            f"not {threshold!r}; e.g. threshold=1"
        )
    if type(fail_open) is not bool:
        raise TypeError(f"fail_open must be True or False, not {fail_open!r}")
    return BreakerSettings(float(window), threshold, fail_open)


class CircuitBreaker:
    """Failure state of one cache instance, shared by every decorated function using it.

    Closed (``failures == 0``): calls use the backend, and do not even look at the
    breaker (``memokit.switches.GATE`` is off while no breaker counts failures).
    Open (``open_until`` in the future): calls skip the backend and compute. When
    the window has passed, the first call probes the backend while the others
    keep skipping it; a success closes the breaker, a failure opens it for
    another window. One warning is logged per opening (an event of
    :mod:`memokit.stats_hooks`).
    """

    __slots__ = (
        "__weakref__",
        "_lock",
        "_name",
        "_quiet_until",
        "_settings",
        "failures",
        "open_until",
        "opened",
        "reported",
    )

    def __init__(self, name: str, settings: BreakerSettings | None = None) -> None:
        self._name = name
        self._settings = settings  # None: follow the defaults of configure_breaker()
        self._lock = threading.Lock()
        self.failures = 0
        """Failures in a row; 0 when the backend answered last time."""
        self.open_until = 0.0
        """``time.monotonic()`` until which calls skip the backend; 0.0 when closed."""
        self.opened = 0
        """How many times the breaker opened (each one logged one warning)."""
        self.reported: dict[tuple[str, type[Warning]], float] = {}
        """When each key's value failure was last reported (``time.monotonic()``)."""
        self._quiet_until = 0.0  # no second warning before this time.monotonic()

    @property
    def settings(self) -> BreakerSettings:
        """The settings in force: this cache's own, or the defaults."""
        return self._settings if self._settings is not None else _defaults

    @property
    def is_open(self) -> bool:
        """True while calls skip the backend."""
        return bool(self.open_until) and time.monotonic() < self.open_until

    def allow(self) -> bool:
        """Whether this call may use the backend; called only when ``open_until`` is set.

        After the window, exactly one caller is let through to probe; the window is
        pushed back for the others until the probe's outcome is known.
        """
        now = time.monotonic()
        if now < self.open_until:
            return False
        with self._lock:
            if not self.open_until:
                return True  # closed meanwhile by a success
            if now < self.open_until:
                return False  # another caller is probing
            self.open_until = now + self.settings.window
            return True

    def record_failure(self, exc: BaseException) -> None:
        """Count a failure; open the breaker (and log once) when the threshold is reached."""
        settings = self.settings
        with self._lock:
            self.failures += 1
            if self.failures == 1:
                trouble(+1)  # decorated calls now check this breaker (memokit.switches)
            if self.failures < settings.threshold:
                return
            # A first opening, or a failed probe: either starts a window and logs once.
            # Calls that were already waiting on the backend when it failed fail too,
            # just after; they push the window on but do not log again.
            now = time.monotonic()
            self.open_until = now + settings.window
            if now < self._quiet_until:
                return
            self._quiet_until = now + settings.window
            self.opened += 1
        stats_hooks.breaker_opened(self._name, exc, settings.window)

    def record_success(self) -> None:
        """The backend answered: close the breaker."""
        with self._lock:
            reopened = bool(self.open_until)
            if self.failures:
                trouble(-1)
            self.failures = 0
            self.open_until = 0.0
        if reopened:
            stats_hooks.breaker_closed(self._name)

    def reset(self) -> None:
        """Close the breaker and forget past failures (for tests and operations)."""
        with self._lock:
            if self.failures:
                trouble(-1)
            self.failures = 0
            self.open_until = 0.0
            self._quiet_until = 0.0

    def __del__(self) -> None:
        # A cache dropped while failing must not keep every call on the guarded path.
        if self.failures:
            trouble(-1)

    def __repr__(self) -> str:
        state = "open" if self.is_open else "closed"
        return f"<CircuitBreaker of {self._name} {state}, {self.failures} failure(s)>"


_defaults = BreakerSettings()
_breakers: weakref.WeakKeyDictionary[Any, CircuitBreaker] = weakref.WeakKeyDictionary()
_breakers_lock = threading.Lock()
_all: weakref.WeakSet[CircuitBreaker] = weakref.WeakSet()


def breaker_for(cache: BaseCache) -> CircuitBreaker:
    """Return the circuit breaker of a cache instance (made on first use)."""
    # Kept in the cache's public `breaker` attribute, so a decorated call finds it
    # with one attribute read; the weak mapping serves objects registered as
    # BaseCache (BaseCache.register) that lack it.
    found: CircuitBreaker | None = getattr(cache, "breaker", None)
    if found is not None:
        return found
    with _breakers_lock:
        has_attribute = hasattr(cache, "breaker")
        found = cache.breaker if has_attribute else _breakers.get(cache)
        if found is None:
            found = CircuitBreaker(repr(cache))
            _all.add(found)
            if has_attribute:
                cache.breaker = found
            else:
                _breakers[cache] = found
        return found


def configure_breaker(
    *,
    window: float | None = None,
    threshold: int | None = None,
    fail_open: bool | None = None,
    cache: str | BaseCache | None = None,
) -> BreakerSettings:
    """Set how decorated calls react to backend failures; return the settings now in force.

    Without ``cache``, this changes the defaults of every cache; with an alias or
    a cache instance, the settings of that instance only (an alias names the
    instance configured now; ``configure()`` makes new instances). Arguments left
    as None keep their current value. ``window=0`` retries the backend at every
    call; ``fail_open=False`` lets backend errors propagate.
    """
    target: CircuitBreaker | None = None
    if cache is None:
        global _defaults
        current = _defaults
    else:
        if isinstance(cache, str):
            from .config import caches

            cache = caches[cache]
        target = breaker_for(cache)
        current = target.settings
    settings = _check_settings(
        current.window if window is None else window,
        current.threshold if threshold is None else threshold,
        current.fail_open if fail_open is None else fail_open,
    )
    if target is None:
        _defaults = settings
    else:
        target._settings = settings
    return settings


def fail_open(breaker: CircuitBreaker, exc: BaseException) -> bool:
    """Decide for a failed backend operation: True to go on without the cache.

    Records a backend failure in the breaker; a value failure goes on without
    touching it. The caller re-raises on False.
    """
    if is_value_failure(exc):
        return True
    if not is_backend_failure(exc) or not breaker.settings.fail_open:
        return False
    breaker.record_failure(exc)
    return True


def report_value_failure(
    cache: BaseCache,
    key: str,
    problem: str,
    category: type[ValueFailureWarning] = CorruptEntryWarning,
) -> bool:
    """Warn that ``key`` (a made key) has a value failure, once per key and window.

    ``problem`` says what happened and what memokit did; it must never quote
    value bytes. The window is the cache's breaker window. Return whether a
    warning was issued.
    """
    breaker = breaker_for(cache)
    now = time.monotonic()
    mark = (key, category)
    window = breaker.settings.window
    with breaker._lock:
        reported = breaker.reported
        last = reported.get(mark)
        if last is not None and now - last < window:
            return False
        if len(reported) >= _MAX_REPORTED:
            for old in [m for m, at in reported.items() if now - at >= window]:
                del reported[old]
            if len(reported) >= _MAX_REPORTED:
                reported.clear()  # many bad keys at once: warning again is the safe side
        reported[mark] = now
    warnings.warn(f"{key!r} in {cache!r} {problem}", category, stacklevel=_caller_stacklevel())
    return True


def _reset_after_fork() -> None:
    # A lock held by another thread at fork time would stay held in the child.
    global _breakers_lock
    _breakers_lock = threading.Lock()
    for breaker in list(_all):
        breaker._lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


# The backends report value failures through this module without importing it.
_reports.install(
    report_value_failure,  # type: ignore[arg-type]  # takes a BaseCache, as every caller passes
    lambda cache: breaker_for(cache).settings.window,
)
