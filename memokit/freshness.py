"""Freshness policies of ``@cached``: stale-while-revalidate, early recomputation, jitter.

``@cached(timeout=300, stale=60, early=1.0, jitter=0.1)``; every argument is
checked once, at decoration (:func:`check_policy`). What each one does to an
entry, whose header records its times (:class:`memokit.entry.Times`):

- ``jitter`` (a fraction in [0, 1)): each entry's fresh time is the timeout
  shortened by a random part of at most that fraction, so entries made in one
  burst do not expire together. An entry never stays fresh longer than the
  timeout.
- ``stale`` (seconds): the store keeps an entry for its fresh time plus the
  stale window (and a second of margin, as memcached counts whole seconds).
  Past its fresh time the entry is served at once and refreshed in the
  background (:mod:`memokit.refreshes`); past the window a call computes as
  on a miss.
- ``early`` (the ``beta`` of XFetch: Vattani, Chierichetti and Lowenstein, VLDB
  2015): a call that finds a fresh entry starts its recomputation in the
  background with probability ``exp(-(fresh_until - now) / (took * early))``,
  where ``took`` is how long the entry's computation took. The probability
  grows as expiry nears, and with the cost of the computation.
- a callable ``timeout`` (or ``none_timeout``) gets the result and returns
  its timeout: seconds, or None (never expire); 0 or less stores nothing. A
  return value that is not one of these is a value failure: counted in the
  function's ``value`` errors, reported once per key and window, and the
  result returned unstored.

The phases are judged from the entry's own times (``time.time()``), never from
the instant a server expires it.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from typing import Any, Final, cast

from .entry import Times
from .timeouts import DEFAULT_TIMEOUT, Timeout, check_timeout

MARGIN: Final = 1.0
"""Seconds a store keeps an entry past its stale window; the reader ends the window itself."""

_NEVER: Final = math.inf


class Policy:
    """The freshness settings of one decorated function (checked by :func:`check_policy`)."""

    __slots__ = ("early", "jitter", "random", "stale")

    def __init__(self, stale: float = 0.0, early: float | None = None, jitter: float = 0.0) -> None:
        self.stale = stale
        """Seconds an entry is served stale, while refreshed in the background."""
        self.early = early
        """XFetch's beta, or None: no early recomputation."""
        self.jitter = jitter
        """The largest fraction by which a fresh time is shortened."""
        # Injectable: the XFetch test draws from a seeded generator.
        self.random: Callable[[], float] = random.random

    @property
    def on_reads(self) -> bool:
        """True when a hit must look at the entry's times (stale window, early recomputation)."""
        return self.stale > 0 or self.early is not None

    def times(self, seconds: float | None, took: float, now: float | None = None) -> Times:
        """The times of an entry computed now in ``took`` seconds, kept ``seconds`` (jittered)."""
        created = time.time() if now is None else now
        if seconds is None:
            return Times(created, _NEVER, _NEVER, took)
        if self.jitter and seconds > 0:
            seconds *= 1.0 - self.jitter * self.random()
        fresh_until = created + seconds
        return Times(created, fresh_until, fresh_until + self.stale, took)

    def kept(self, times: Times, seconds: float | None) -> float | None:
        """Seconds the store keeps an entry with ``times`` (its fresh time plus the window)."""
        if seconds is None or seconds <= 0:
            return seconds
        fresh = times.fresh_until - times.created
        if self.stale > 0:
            return fresh + self.stale + MARGIN
        return fresh

    def counter_seconds(self, seconds: float | None) -> float | None:
        """Seconds the function's counters are kept: for ever, under a policy.

        A counter that expires makes every entry stored under it invalid at
        once, however recently refreshed or jittered: the crowd of callers
        these policies exist to avoid. A policy's counters are kept without
        expiry (as those of a function whose entries never expire); a store
        may still evict one, which costs misses, never a wrong value.
        """
        if seconds is None or seconds <= 0 or not (self.on_reads or self.jitter):
            return seconds
        return None

    def due_early(self, now: float, times: Times) -> bool:
        """XFetch: whether this call recomputes a fresh entry early."""
        took = times.took
        if took <= 0 or self.early is None:
            return False
        # 1 - random() lies in (0, 1]: its log is finite and <= 0.
        return now - took * self.early * math.log(1.0 - self.random()) >= times.fresh_until


NO_POLICY: Final = Policy()
"""The policy of a function without freshness arguments: its entries expire in the store."""


def early_probability(gap: float, took: float, early: float) -> float:
    """The chance that one call recomputes an entry ``gap`` seconds before it goes stale."""
    if gap <= 0:
        return 1.0
    return math.exp(-gap / (took * early))


def check_policy(stale: object, early: object, jitter: object) -> Policy:
    """Validate ``stale``, ``early`` and ``jitter``; raise naming the one that is wrong."""
    if isinstance(stale, bool) or not isinstance(stale, int | float) or not 0 <= stale < _NEVER:
        raise ValueError(
            f"stale must be a finite number of seconds >= 0 (how long an expired entry is "
            f"still served while it is refreshed), not {stale!r}; e.g. stale=60"
        )
    if early is not None and (
        isinstance(early, bool) or not isinstance(early, int | float) or not 0 < early < _NEVER
    ):
        raise ValueError(
            f"early must be None or a finite number > 0 (XFetch's beta: 1.0 is the usual "
            f"choice, larger recomputes earlier), not {early!r}; e.g. early=1.0"
        )
    if isinstance(jitter, bool) or not isinstance(jitter, int | float) or not 0 <= jitter < 1:
        raise ValueError(
            f"jitter must be a fraction in [0, 1) by which timeouts are shortened at "
            f"random, not {jitter!r}; e.g. jitter=0.1"
        )
    if not stale and early is None and not jitter:
        return NO_POLICY
    return Policy(float(stale), None if early is None else float(early), float(jitter))


TimeoutSpec = Timeout | Callable[[Any], float | None]
"""A ``timeout=`` of ``@cached``: seconds, None, DEFAULT_TIMEOUT, or a callable of the result."""


def check_timeout_spec(timeout: object, name: str) -> TimeoutSpec:
    """Validate a decorator's ``timeout``/``none_timeout``: a number, None, or a callable."""
    if timeout is DEFAULT_TIMEOUT:
        return DEFAULT_TIMEOUT
    if callable(timeout) and not isinstance(timeout, type):
        # What it returns is checked at each call (called_timeout): a value failure.
        return cast("Callable[[Any], float | None]", timeout)
    try:
        return check_timeout(timeout, name)
    except TypeError:
        raise TypeError(
            f"{name} must be a number of seconds, None (never expire), DEFAULT_TIMEOUT or "
            f"a callable that takes the result and returns one of these, not {timeout!r}; "
            f"e.g. {name}=300 or {name}=lambda result: 60 if result else 5"
        ) from None


def called_timeout(timeout: Callable[[Any], object], value: Any) -> tuple[float | None, str]:
    """The timeout a callable gives ``value``, and what is wrong with it ("" when nothing).

    A return value that is not a number of seconds or None is a value failure,
    which the caller reports. The callable's own exceptions propagate: it is the
    caller's code.
    """
    given = timeout(value)
    try:
        # What timeout= itself accepts: any real number (not a bool, not NaN), or None.
        seconds = check_timeout(given, "timeout", ValueError)
    except ValueError:
        return 0.0, (
            f"the timeout callable returned {given!r} ({type(given).__name__}), which is "
            f"not a number of seconds or None"
        )
    return (None if seconds is None else float(seconds)), ""
