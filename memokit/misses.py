"""The miss path of ``@cached``: single flight, the backend lock, storing, failing open.

A call that found no valid entry (see :mod:`memokit.wrappers`) comes here: the
function runs once per key in this process (:mod:`memokit.singleflight`), or
once across processes with ``lock_lease=`` (:mod:`memokit.locks`), and its
result is stored with the semantics of ``get_or_set``. Backend failures fail
open (:mod:`memokit.resilience`).
"""

from __future__ import annotations

import inspect
import pickle
from collections.abc import Awaitable, Callable, Generator
from functools import partial
from time import perf_counter_ns
from typing import Any, Final, NamedTuple, TypeAlias, TypeVar

from .backends.base import MISSING, BaseCache
from .counters import aread_entry, entry_value, read_entry, tier_only
from .entry import Times, Versions, encode_entry, value_of
from .exceptions import ValueTooLarge
from .fnstate import CachedState, _count
from .freshness import called_timeout
from .resilience import CircuitBreaker, breaker_for, fail_open
from .singleflight import JOINED, Shared
from .stats import record_compute

T = TypeVar("T")


def _refuse_awaitable(state: CachedState, value: Any) -> None:
    if inspect.isawaitable(value):
        if inspect.iscoroutine(value):
            value.close()  # never awaited: close it rather than leak a warning
        raise TypeError(
            f"{state.func!r} returned an awaitable, but it is not a coroutine function, so "
            f"@cached took it for a sync one; apply @cached to the async def itself, or mark "
            f"the wrapper with inspect.markcoroutinefunction (Python 3.12+)"
        )


def _encode(
    state: CachedState, cache: BaseCache, value: Any, versions: Versions, times: Times
) -> Any:
    """Encode the entry of ``value``; a result the serializer cannot encode is a TypeError.

    Such a result is a bug in the caller's code, raised on every backend: the
    dummy backend keeps values as they are, so it is checked with the serializer.
    """
    try:
        encoded = encode_entry(cache, value, versions, times)
        if not cache.capabilities.stores:
            cache.serializer.dumps(value)
    except pickle.PickleError as exc:
        state.value_errors += 1
        func = state.func
        name = f"{getattr(func, '__module__', None)}.{getattr(func, '__qualname__', func)}"
        raise TypeError(
            f"@cached function {name} returned a {type(value).__qualname__!r} object, which "
            f"the cache's serializer cannot encode, so it cannot be cached; return a value "
            f"it can store (a list rather than a generator, data rather than a lock), or "
            f"leave such results out with unless="
        ) from exc
    return encoded


def _not_stored(state: CachedState, cache: BaseCache, made: str, exc: ValueTooLarge) -> None:
    state.value_errors += 1
    cache._not_stored(made, exc)


def _store_steps(
    state: CachedState,
    cache: BaseCache,
    key: str,
    value: T,
    versions: Versions,
    replace: bool,
    guard: CircuitBreaker | None,
    took: float = 0.0,
) -> Steps[tuple[T, Shared | None]]:
    """Store a computed value with get_or_set semantics, yielding the I/O (see :func:`_run`).

    ``took`` is how long the computation took, recorded in the entry for
    early recomputation (:mod:`memokit.freshness`).

    Return what the caller gets, and the entry as encoded for the store, from
    which each waiter of the flight decodes its own copy (None when nothing was
    encoded: the flight then encodes the value itself if anyone waits). A value
    the backend cannot hold is a value failure: counted, reported once per key
    and window, and the value returned unstored. A backend failure raises, or
    with ``guard`` (the cache's breaker) fails open: the value is returned
    unstored. Run inside the flight's leader and ``refresh()``.
    """
    _refuse_awaitable(state, value)
    version = state.version
    # The predicate is the user's code: its exceptions are not backend errors.
    skip = state.unless is not None and state.unless(value)
    timeout = state.timeout_for(value)
    if callable(timeout):
        if skip:
            seconds: float | None = 0.0  # nothing is stored: the callable is not asked
        else:
            seconds, problem = called_timeout(timeout, value)  # its errors propagate
            if problem:
                state.value_errors += 1
                cache._not_stored(cache.make_and_validate_key(key, version), problem)
                return value, None
    else:
        seconds = cache._seconds(timeout)
    policy = state.policy
    times = policy.times(seconds, took)
    # Encoded once, before any I/O: what is stored is what the waiters decode
    # their copies from, and a result no serializer can encode raises here.
    payload = None if skip else _encode(state, cache, value, versions, times)
    shared = None
    made = ""
    try:
        if skip:
            if replace:
                yield _io(cache.delete, cache.adelete, key, version)
            return value, None
        made = cache.make_and_validate_key(key, version)
        seconds = policy.kept(times, seconds)
        if cache.capabilities.stores:  # the dummy cache encodes nothing
            shared = Shared(payload, _entry_decoder(cache))
        if seconds is not None and seconds <= 0:
            if replace:  # nothing is stored under a timeout of 0
                yield _io(cache._delete, cache._adelete, made)
        elif replace:
            yield _io(cache._set, cache._aset, made, payload, seconds)
        else:
            # One round trip where the backend can (Redis): store ours, or find theirs.
            current = yield _io(cache._add_or_get, cache._aadd_or_get, made, payload, seconds)
            if current is not MISSING:
                value, shared, overwrite = _raced(
                    state, cache, made, current, value, shared, versions
                )
                if overwrite:
                    yield _io(cache._set, cache._aset, made, payload, seconds)
    except ValueTooLarge as exc:
        _not_stored(state, cache, made, exc)
        return value, shared
    except Exception as exc:
        _count(state, exc)
        if guard is None or not fail_open(guard, exc):
            raise
        return value, shared
    if guard is not None and guard.failures:
        guard.record_success()
    return value, shared


def _raced(
    state: CachedState,
    cache: BaseCache,
    made: str,
    current: Any,
    value: T,
    shared: Shared | None,
    versions: Versions,
) -> tuple[T, Shared | None, bool]:
    """Another caller stored first: theirs wins, as with get_or_set, if valid.

    Return the value and shared entry the callers get, and whether ours must
    overwrite theirs (an entry of other versions, another format, unreadable).
    """
    theirs = entry_value(state, cache, made, current, versions)
    if theirs is MISSING:
        return value, shared, True
    return theirs, (Shared(current, shared.decode) if shared is not None else None), False


def _entry_decoder(cache: BaseCache) -> Callable[[Any], Any]:
    def decoded_value(payload: Any) -> Any:
        return value_of(payload, cache)

    return decoded_value


def _guarded(state: CachedState) -> tuple[BaseCache | None, CircuitBreaker | None]:
    """The cache a call uses while a switch or a breaker is on, and its breaker if troubled.

    The cache is None while the breaker is open: the call skips the backend.
    """
    cache = state.resolve()
    breaker = breaker_for(cache)
    if not breaker.failures:
        return cache, None
    if breaker.open_until and not breaker.allow():
        return None, breaker
    return cache, breaker


def _read_failed(state: CachedState, cache: BaseCache, exc: Exception) -> CircuitBreaker:
    """Count a failed read and return the breaker the call fails open with; else raise ``exc``."""
    _count(state, exc)
    breaker = breaker_for(cache)
    if not fail_open(breaker, exc):
        raise exc
    return breaker


# -- the miss path: single flight, the backend lock, fail-open storing ----------------
# ``cache`` is None when the backend is skipped (the breaker is open, or the read
# failed): the value is computed, once per key in this process, and not stored.
# ``versions`` are those the caller's read was made under; they are part of the
# flight key, so a read made after an invalidation never joins an older flight.
# The cache enters the key by id(): it is alive while its flight is, and a
# backend need not be hashable. ``since`` is the flights' ``ended`` as read
# before the caller's read (see memokit.singleflight).


def _miss(
    state: CachedState,
    cache: BaseCache | None,
    breaker: CircuitBreaker | None,
    key: str,
    args: Any,
    kwargs: Any,
    versions: Versions,
    replace: bool = False,
    since: int | None = None,
) -> Any:
    """Compute and store the value of a call that found no valid entry."""
    if cache is None and breaker is not None:
        served = _from_tier_one(state, key, args, kwargs)
        if served is not MISSING:
            return served

    def lead(recheck: bool) -> tuple[Any, Shared | None]:
        steps = _lead_steps(state, cache, breaker, key, args, kwargs, versions, replace, recheck)
        return _run(steps)

    return _joined(state, *state.flights.run(_flight(cache, key, state, versions), lead, since))


async def _amiss(
    state: CachedState,
    cache: BaseCache | None,
    breaker: CircuitBreaker | None,
    key: str,
    args: Any,
    kwargs: Any,
    versions: Versions,
    replace: bool = False,
    since: int | None = None,
) -> Any:
    """The async twin of :func:`_miss`: the same steps, awaiting each I/O."""
    if cache is None and breaker is not None:
        served = _from_tier_one(state, key, args, kwargs)
        if served is not MISSING:
            return served

    async def lead(recheck: bool) -> tuple[Any, Shared | None]:
        steps = _lead_steps(state, cache, breaker, key, args, kwargs, versions, replace, recheck)
        return await _arun(steps)

    flight = _flight(cache, key, state, versions)
    return _joined(state, *await state.aflights.run(flight, lead, since))


def _from_tier_one(state: CachedState, key: str, args: Any, kwargs: Any) -> Any:
    """While the backend is skipped, a hit that tier one holds within its bound
    (memokit.backends.tiered: a tiered cache fails open to its tier one first)."""
    try:
        served = tier_only(state, state.resolve(), key, args, kwargs)
    except Exception:  # a switch or a key the cache refuses: compute, as without a tier
        return MISSING
    if served is not MISSING:
        state.hits += 1
    return served


def _flight(
    cache: BaseCache | None, key: str, state: CachedState, versions: Versions
) -> tuple[Any, ...]:
    """The key of a call's flight: a caller that read other versions never joins it."""
    return (id(cache), key, state.version, versions)


def _joined(state: CachedState, value: Any, role: Any) -> Any:
    if role == JOINED:
        state.hits += 1  # the value another caller computed
    return value


def _lead_steps(
    state: CachedState,
    cache: BaseCache | None,
    breaker: CircuitBreaker | None,
    key: str,
    args: Any,
    kwargs: Any,
    versions: Versions,
    replace: bool,
    recheck: bool,
) -> Steps[tuple[Any, Shared | None]]:
    """What the leader of a flight does, yielding its I/O (see :func:`_run`)."""
    call = _call(state, args, kwargs)
    if cache is None:
        started = perf_counter_ns()
        value = yield call
        state.misses += 1
        record_compute(state, started)
        _refuse_awaitable(state, value)
        return value, None
    guard = breaker if breaker is not None else breaker_for(cache)
    version = state.version
    check, acheck = _checks(state, cache, key, version, versions)
    lock = state.lock
    token = None
    if lock is not None:
        # The lock looks at the cache itself once it holds the lock.
        token, found = yield _Io(
            partial(lock.acquire, cache, key, version, guard, check),
            partial(lock.aacquire, cache, key, version, guard, acheck),
        )
        if found is not MISSING:
            state.hits += 1  # another process computed it meanwhile
            return found, None
    elif recheck:
        # A flight of this function ended since this caller's read: it may
        # have stored this very entry (a first-call race otherwise).
        try:
            found = yield _Io(check, acheck)
        except Exception as exc:
            _count(state, exc)
            if not fail_open(guard, exc):
                raise
            found = MISSING
        if found is not MISSING:
            state.hits += 1
            return found, None
    try:
        started = perf_counter_ns()
        value = yield call
        took = (perf_counter_ns() - started) / 1e9
        state.misses += 1
        record_compute(state, started)
        if guard.open_until and not guard.allow():
            _refuse_awaitable(state, value)
            return value, None  # the breaker opened while the function ran
        return (yield from _store_steps(state, cache, key, value, versions, replace, guard, took))
    finally:
        if token is not None and lock is not None:
            yield _io(lock.release, lock.arelease, cache, key, version, token)


def _refresh_steps(state: CachedState, key: str, args: Any, kwargs: Any) -> Steps[Any]:
    """``refresh()``: run the function for this call and store its result, replacing any."""
    cache = state.target()  # an explicit write, like an invalidation
    try:
        # The versions are read before the function runs, as on a miss.
        _, versions = yield _Io(
            partial(read_entry, state, cache, key, args, kwargs),
            partial(aread_entry, state, cache, key, args, kwargs),
        )
    except Exception as exc:
        _count(state, exc)
        raise
    started = perf_counter_ns()
    value = yield _call(state, args, kwargs)
    took = (perf_counter_ns() - started) / 1e9
    state.misses += 1
    record_compute(state, started)
    stored, _ = yield from _store_steps(state, cache, key, value, versions, True, None, took)
    return stored


def _checks(
    state: CachedState, cache: BaseCache, key: str, version: int | None, versions: Versions
) -> tuple[Callable[[], Any], Callable[[], Awaitable[Any]]]:
    """Look at the cache for a valid entry: the value, or MISSING (sync and async)."""

    def check() -> Any:
        made = cache.make_and_validate_key(key, version)
        return entry_value(state, cache, made, cache._get(made), versions)

    async def acheck() -> Any:
        made = cache.make_and_validate_key(key, version)
        return entry_value(state, cache, made, await cache._aget(made), versions)

    return check, acheck


# -- one algorithm, two shells ---------------------------------------------------------
# The miss path's algorithms are generators that yield each I/O as an _Io (its
# sync and its async form) and receive its result, or its exception, back. A
# sync shell runs them with _run, an async one with _arun: the decisions are
# written once, and a fix to them lands in both.


class _Io(NamedTuple):
    """One I/O step: how to do it in a sync caller and in an async one."""

    sync: Callable[[], Any]
    aio: Callable[[], Awaitable[Any]]


Steps: TypeAlias = Generator[_Io, Any, T]


def _io(sync: Callable[..., Any], aio: Callable[..., Awaitable[Any]], *args: Any) -> _Io:
    return _Io(partial(sync, *args), partial(aio, *args))


def _call(state: CachedState, args: Any, kwargs: Any) -> _Io:
    """Running the function: a sync shell calls it, an async one awaits its coroutine."""
    run = partial(state.func, *args, **kwargs)
    return _Io(run, run)


def _run(steps: Steps[T]) -> T:
    """Run ``steps`` doing each I/O in its sync form."""
    try:
        io = next(steps)
        while True:
            try:
                result = io.sync()
            except BaseException as exc:  # the steps decide (a cancellation releases a lock)
                io = steps.throw(exc)
            else:
                io = steps.send(result)
    except (StopIteration, RuntimeError) as end:
        done: T = _ended(end)
        return done


async def _arun(steps: Steps[T]) -> T:
    """Run ``steps`` awaiting each I/O in its async form."""
    try:
        io = next(steps)
        while True:
            try:
                result = await io.aio()
            except BaseException as exc:  # the steps decide (a cancellation releases a lock)
                io = steps.throw(exc)
            else:
                io = steps.send(result)
    except (StopIteration, RuntimeError) as end:
        done: T = _ended(end)
        return done


def _ended(end: StopIteration | RuntimeError) -> Any:
    """What the steps returned; or raise what left them, as the caller's code raised it."""
    if isinstance(end, StopIteration):
        return end.value
    escaped = _escaped(end)
    if escaped is None:
        raise end
    raise escaped from None  # not chained to the RuntimeError that carried it


def _escaped(exc: RuntimeError) -> StopIteration | None:
    """The StopIteration that left a steps generator, which Python made ``exc`` (PEP 479).

    Found by its place: the RuntimeError made where a steps generator was resumed
    (PEP 479 names the StopIteration as its cause).

    A caller's function (or its ``unless``) that raises StopIteration raises it
    to the caller, as it would without the cache; any other RuntimeError is kept.
    """
    cause = exc.__cause__
    tb = exc.__traceback__
    if not isinstance(cause, StopIteration) or tb is None:
        return None
    while tb.tb_next is not None:
        tb = tb.tb_next
    return cause if tb.tb_frame.f_code in _STEPS else None


# Python makes that RuntimeError in the frame that resumed the generator: a
# driver, or a steps generator delegating with `yield from`.
_STEPS: Final = frozenset(
    code.__code__ for code in (_store_steps, _lead_steps, _refresh_steps, _run, _arun)
)
