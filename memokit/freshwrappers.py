"""The hit path of a function with a stale window or early recomputation.

``@cached(stale=...)`` or ``@cached(early=...)`` makes these classes instead of
those of :mod:`memokit.wrappers` (:mod:`memokit.decorators` chooses, once), so
the plain hit path never looks at an entry's times. Here a valid entry is judged by its own times
(:class:`memokit.entry.Times`, ``time.time()``):

- fresh: served; with ``early``, XFetch may start a background recomputation;
- past its fresh time, within its stale window: served at once, and one
  background refresh starts (:mod:`memokit.refreshes`);
- past its window: a miss, as any expired entry.

Everything else (binding, helpers, the miss path, fail-open) is the plain
classes', inherited.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from time import monotonic
from typing import Any, Concatenate, Final, Generic, ParamSpec, TypeVar

from .backends.base import MISSING, UNREADABLE, BaseCache
from .config import caches
from .counters import aread_entry, read_entry
from .entry import timed_value
from .fnstate import CachedState
from .misses import _amiss, _guarded, _miss, _read_failed
from .proxies import _bound_of, _state_of
from .refreshes import astart, start
from .resilience import CircuitBreaker
from .stats import aflush, flush, rearm
from .switches import GATE
from .wrappers import (
    AsyncCachedFunction,
    CachedFunction,
    _unreadable,
    _wrapt_classes,
)

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")
O = TypeVar("O")  # noqa: E741 - the owner class of a classmethod

Start = Callable[[CachedState, BaseCache, str, Any, Any, float], bool]


def _served(
    state: CachedState,
    cache: BaseCache,
    key: str,
    args: Any,
    kwargs: Any,
    payload: Any,
    versions: Any,
    begin: Start,
) -> Any:
    """The value a call serves from ``payload``, starting a refresh if due; else MISSING."""
    try:
        found = timed_value(payload, versions, cache)
    except UNREADABLE as exc:
        return _unreadable(state, cache, key, exc)
    if found is MISSING:
        return MISSING
    value, times = found
    now = time.time()
    if now < times.fresh_until:
        state.hits += 1
        policy = state.policy
        if (
            policy.early is not None
            and policy.due_early(now, times)
            and begin(state, cache, key, args, kwargs, times.created)
        ):
            state.early_recomputations += 1
        return value
    if now < times.stale_until:
        state.hits += 1
        state.stale_hits += 1
        begin(state, cache, key, args, kwargs, times.created)
        return value
    return MISSING  # past its window: the store may not have dropped it yet


class FreshCachedFunction(CachedFunction[P, R]):
    """A memoised sync callable whose entries have a stale window or early recomputation."""

    __slots__ = ()

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        state = _state_of(self)
        bound = _bound_of(self)
        if bound is not None:
            args = (bound, *args)  # type: ignore[assignment]  # P.args with the instance
        key = state.build(args, kwargs)
        breaker: CircuitBreaker | None = None
        if GATE.on:
            cache, breaker = _guarded(state)
            if cache is None:
                missed: R = _miss(state, None, breaker, key, args, kwargs, ())
                return missed
        else:
            cache = state.cache if state.cache is not None else caches[state.alias]
        since = state.flights.ended
        try:
            payload, versions = read_entry(state, cache, key, args, kwargs)
        except Exception as exc:
            breaker = _read_failed(state, cache, exc)
            failed: R = _miss(state, None, breaker, key, args, kwargs, ())
            return failed
        if breaker is not None and breaker.failures:
            breaker.record_success()
        stored = _served(state, cache, key, args, kwargs, payload, versions, start)
        if stored is not MISSING:
            if state.due and monotonic() >= state.due:  # shared statistics (memokit.stats)
                flush(state)
            return stored  # type: ignore[no-any-return]  # the stored R
        replace = payload is not MISSING
        value: R = _miss(state, cache, breaker, key, args, kwargs, versions, replace, since)
        if not state.due:
            rearm(state)  # its cache may share now (memokit.stats)
        elif monotonic() >= state.due:
            flush(state)
        return value


class AsyncFreshCachedFunction(AsyncCachedFunction[P, T]):
    """The coroutine twin of :class:`FreshCachedFunction`; refreshes run as tasks."""

    __slots__ = ()

    async def __call__(self, *args: P.args, **kwargs: P.kwargs) -> T:
        state = _state_of(self)
        bound = _bound_of(self)
        if bound is not None:
            args = (bound, *args)  # type: ignore[assignment]  # P.args with the instance
        key = state.build(args, kwargs)
        breaker: CircuitBreaker | None = None
        if GATE.on:
            cache, breaker = _guarded(state)
            if cache is None:
                missed: T = await _amiss(state, None, breaker, key, args, kwargs, ())
                return missed
        else:
            cache = state.cache if state.cache is not None else caches[state.alias]
        since = state.aflights.ended
        try:
            payload, versions = await aread_entry(state, cache, key, args, kwargs)
        except Exception as exc:
            breaker = _read_failed(state, cache, exc)
            failed: T = await _amiss(state, None, breaker, key, args, kwargs, ())
            return failed
        if breaker is not None and breaker.failures:
            breaker.record_success()
        stored = _served(state, cache, key, args, kwargs, payload, versions, astart)
        if stored is not MISSING:
            if state.due and monotonic() >= state.due:  # shared statistics (memokit.stats)
                await aflush(state)
            return stored  # type: ignore[no-any-return]  # the stored T
        replace = payload is not MISSING
        value: T = await _amiss(state, cache, breaker, key, args, kwargs, versions, replace, since)
        if not state.due:
            rearm(state)  # its cache may share now (memokit.stats)
        elif monotonic() >= state.due:
            await aflush(state)
        return value


class FreshCachedClassMethod(FreshCachedFunction[Concatenate[type[O], P], R], Generic[O, P, R]):
    """A memoised classmethod with a freshness policy."""

    __slots__ = ()


class AsyncFreshCachedClassMethod(
    AsyncFreshCachedFunction[Concatenate[type[O], P], T], Generic[O, P, T]
):
    """A memoised async classmethod with a freshness policy."""

    __slots__ = ()


SYNC: Final = _wrapt_classes(FreshCachedFunction)
ASYNC: Final = _wrapt_classes(AsyncFreshCachedFunction)
SYNC["class"] = _wrapt_classes(FreshCachedClassMethod)["class"]
ASYNC["class"] = _wrapt_classes(AsyncFreshCachedClassMethod)["class"]


def wrap_fresh(state: CachedState) -> CachedFunction[Any, Any]:
    """:func:`memokit.wrappers.wrap` for a function whose policy reads entries' times."""
    classes = ASYNC if inspect.iscoroutinefunction(state.func) else SYNC
    state.bound_cls = classes["bound"]
    made: CachedFunction[Any, Any] = classes[state.binding](state.func, state)
    state.unbound = made
    return made
