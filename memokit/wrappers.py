"""The callables ``@cached`` returns: binding, the hit path, helpers and storing.

A decorated function becomes a :class:`CachedFunction` (or an
:class:`AsyncCachedFunction` for a coroutine function). Every call builds a key,
reads it through the core API and, on a miss, runs the function and stores its
result with the semantics of ``get_or_set``: ``add``, and when another caller
stored first, their value wins. A stored entry that is not valid (another
format, other versions) counts as a miss and is replaced. ``None`` is cached
like any value.

The objects are descriptors: on an instance they bind like a method, on a
``@classmethod`` they bind the class, on a ``@staticmethod`` nothing, and the
helpers (``key``, ``invalidate``, ``refresh`` ...) bind the same way, so
``obj.method.invalidate(3)`` drops the entry of ``obj.method(3)``. They are plain
classes rather than ``wrapt.FunctionWrapper``: wrapt's proxy costs about 0.4 µs
per call on a plain function, a third of the hit budget, and the binding rules
above are all ``@cached`` needs from it.
"""

from __future__ import annotations

import functools
import inspect
import pickle
import types
from collections.abc import Callable, Coroutine
from typing import (
    TYPE_CHECKING,
    Any,
    Concatenate,
    Final,
    Generic,
    NamedTuple,
    ParamSpec,
    Self,
    TypeVar,
    overload,
)

from . import counters
from .backends.base import MISSING, UNREADABLE, BaseCache
from .config import caches
from .counters import (
    ReadPlan,
    TagsBuilder,
    aread_entry,
    decode_entry,
    read_entry,
    unreadable_entry,
)
from .entry import FORMAT, Versions, make_payload, valid_value
from .exceptions import ValueTooLarge
from .invalidation import ainvalidate_all, invalidate_all
from .keybuilders import KeyBuilder
from .keyhints import check_annotations
from .locks import BackendLock
from .resilience import CircuitBreaker, breaker_for, fail_open, is_value_failure
from .singleflight import JOINED, AsyncSingleFlight, Shared, SingleFlight
from .switches import GATE, helper_cache, routed
from .timeouts import Timeout

P = ParamSpec("P")
P2 = ParamSpec("P2")
R = TypeVar("R")
T = TypeVar("T")
S = TypeVar("S")
O = TypeVar("O")  # noqa: E741 - the owner class of a classmethod

_MISS: Final = object()
"""Default given to ``cache.get``: tells a miss apart from a stored None."""

_UNBOUND: Final = object()
"""``_bound`` of an object that is not bound to an instance or a class."""


class ErrorCounts(int):
    """The ``errors`` of :class:`CacheInfo`: their total, an ``int``, told apart by kind."""

    backend: int
    """Backend failures (connect, timeout, disk full, locked database): they feed the breaker."""
    value: int
    """Value failures (an entry that could not be read, a value the backend could not
    hold, a result the serializer could not encode): they concern one key only."""

    def __new__(cls, backend: int = 0, value: int = 0) -> ErrorCounts:
        made = super().__new__(cls, backend + value)
        made.backend = backend
        made.value = value
        return made

    def __repr__(self) -> str:
        return f"ErrorCounts(backend={self.backend}, value={self.value})"

    def __reduce__(self) -> tuple[type[ErrorCounts], tuple[int, int]]:
        return (ErrorCounts, (self.backend, self.value))


class CacheInfo(NamedTuple):
    """Counters of one decorated function, as ``functools.lru_cache`` users know them."""

    hits: int
    """Calls served from the cache."""
    misses: int
    """Calls that ran the function."""
    errors: int
    """Failed cache operations: an :class:`ErrorCounts`, whose ``backend`` and
    ``value`` attributes tell backend failures from value failures."""


class CachedState:
    """What every binding of one decorated function shares: settings and counters."""

    __slots__ = (
        "aflights",
        "alias",
        "binding",
        "bound_dict",
        "build",
        "cache",
        "counter_names",
        "errors",
        "fast",
        "flights",
        "func",
        "hits",
        "lock",
        "misses",
        "none_timeout",
        "safe_keys",
        "tags",
        "timeout",
        "unbound",
        "unless",
        "value_errors",
        "version",
    )

    def __init__(
        self,
        func: Callable[..., Any],
        binding: str,
        build: KeyBuilder,
        cache: BaseCache | None,
        alias: str,
        timeout: Timeout,
        none_timeout: Timeout,
        version: int | None,
        unless: Callable[[Any], object] | None,
        safe_keys: bool,
        lock: BackendLock | None = None,
        counter_names: list[str] | None = None,
        tags: TagsBuilder | None = None,
    ) -> None:
        self.func = func
        self.safe_keys = safe_keys  # keys come from the default builder: clean, <= 200
        self.binding = binding  # "instance", "class" or "none"
        self.build = build
        self.cache = cache
        self.alias = alias
        self.timeout = timeout
        self.none_timeout = none_timeout
        self.version = version
        self.unless = unless
        self.unbound: Any = None
        self.bound_dict: dict[str, Any] = {}
        # The counters every call reads with its entry (see memokit.counters):
        # the function's own first, then fixed tags; per-call tags from `tags`.
        self.counter_names = counter_names or []
        self.tags = tags
        self.hits = 0
        self.misses = 0
        self.errors = 0  # backend failures
        self.value_errors = 0  # value failures (memokit.resilience)
        # How calls read the current cache (made-key prefixes, primitives);
        # rebuilt by counters.plan_for when the cache or its prefix changes.
        self.fast: ReadPlan | None = None
        # Single flight (memokit.singleflight), and the opt-in lock in the backend.
        self.flights = SingleFlight()
        self.aflights = AsyncSingleFlight()
        self.lock = lock

    def resolve(self) -> BaseCache:
        """The cache calls use now: a switch's (memokit.switches), else the function's."""
        switched = routed() if GATE.on else None
        if switched is not None:
            return switched
        return self.cache if self.cache is not None else caches[self.alias]

    def target(self) -> BaseCache:
        """The cache invalidation helpers act on: never the dummy of caching_disabled()."""
        switched = helper_cache() if GATE.on else None
        if switched is not None:
            return switched
        return self.cache if self.cache is not None else caches[self.alias]

    @property
    def cycles(self) -> int:
        """Callers that computed for themselves because waiting would close a cycle."""
        return self.flights.cycles + self.aflights.cycles

    def timeout_for(self, value: Any) -> Timeout:
        return self.none_timeout if value is None else self.timeout


class _Cached(Generic[P, R]):
    """What sync and async decorated callables share: binding and the sync helpers."""

    __slots__ = ("__dict__", "_bound", "_state")

    _state: CachedState
    _bound: Any

    def _bind(self, instance: Any, owner: Any) -> Any:
        state = self._state
        if state.binding == "none":
            return self
        if state.binding == "class":
            if owner is None:
                owner = type(instance)
            target = owner
        else:
            if instance is None:
                return self
            target = instance
        bound = object.__new__(type(self))
        bound._state = state
        bound._bound = target
        # __name__, __doc__ ... as the unbound object, without its __wrapped__:
        # the bound one is the bound original (see __getattr__).
        bound.__dict__ = state.bound_dict
        return bound

    def __getattr__(self, name: str) -> Any:
        # Reached only when normal lookup fails, so the hit path never pays for it.
        if name in ("_state", "_bound"):
            raise AttributeError(name)  # not set yet; never recurse
        if self._bound is _UNBOUND:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        if name == "__wrapped__":
            return self.uncached
        return getattr(self._state.unbound, name)

    def _args(self, args: tuple[Any, ...]) -> tuple[Any, ...]:
        bound = self._bound
        return args if bound is _UNBOUND else (bound, *args)

    def key(self, *args: P.args, **kwargs: P.kwargs) -> str:
        """Return the key this call is stored under (before KEY_PREFIX and version)."""
        state = self._state
        args = self._args(args)  # type: ignore[assignment]  # P.args with the instance
        key = state.build(args, kwargs)
        check_annotations(state.func, "key", args, kwargs)
        return key

    @property
    def uncached(self) -> Callable[P, R]:
        """The original function, bound like this object; calling it skips the cache."""
        func = self._state.func
        if self._bound is _UNBOUND:
            return func
        return types.MethodType(func, self._bound)

    @property
    def cache(self) -> BaseCache:
        """The backend in use now (an alias is looked up at each access)."""
        return self._state.resolve()

    def cache_info(self) -> CacheInfo:
        """Return the hits, misses and errors (backend and value) counted since decoration."""
        state = self._state
        return CacheInfo(state.hits, state.misses, ErrorCounts(state.errors, state.value_errors))

    def __repr__(self) -> str:
        state = self._state
        where = repr(state.cache) if state.cache is not None else repr(state.alias)
        bound = "" if self._bound is _UNBOUND else f" bound to {self._bound!r}"
        name = getattr(state.func, "__qualname__", None) or repr(state.func)
        return f"<cached {name} in {where}{bound}>"

    def __reduce__(self) -> str:
        # Pickled by reference, like a function (multiprocessing sends it by name).
        name = getattr(self._state.func, "__qualname__", None)
        if not isinstance(name, str):
            raise TypeError(f"cannot pickle {self!r}: it has no qualified name to find it by")
        return name


class CachedFunction(_Cached[P, R]):
    """A memoised sync callable; call it as the original."""

    __slots__ = ()

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        state = self._state
        bound = self._bound
        if bound is not _UNBOUND:
            args = (bound, *args)  # type: ignore[assignment]  # P.args with the instance
        key = state.build(args, kwargs)
        breaker: CircuitBreaker | None = None
        if GATE.on:  # a switch is on, or a cache failed lately (memokit.switches)
            cache, breaker = _guarded(state)
            if breaker is not None and breaker.open_until and not breaker.allow():
                # The breaker is open: skip the backend (memokit.resilience).
                missed: R = _miss(state, None, breaker, key, args, kwargs, ())
                return missed
        else:
            cache = state.cache if state.cache is not None else caches[state.alias]
        since = state.flights.ended  # before the read: see memokit.singleflight
        try:
            plan = state.fast
            # One read of `seen`: another thread may replace it meanwhile.
            seen = plan.seen if plan is not None else None
            if (
                seen is not None
                and seen[0] == counters.epoch
                and plan is not None
                and plan.cache is cache
                and plan.key_prefix is cache.key_prefix
                and plan.version is cache.version
                and plan.entry_prefix is not None
            ):
                # A store only this process sees, no invalidation since the counters
                # were read: the entry alone (read_entry's first case, inlined).
                payload = plan.get(plan.entry_prefix + key)
                if payload is not MISSING and type(payload) is not tuple:
                    try:
                        payload = plan.decode(payload)
                    except UNREADABLE as exc:
                        payload = unreadable_entry(state, cache, plan.entry_prefix + key, exc)
                versions = seen[1]
            else:
                # The entry and the counters it must match, in one read (see
                # memokit.counters); `versions` is what a computed value is stored under.
                payload, versions = read_entry(state, cache, key, args, kwargs)
        except Exception as exc:
            _count(state, exc)
            breaker = breaker_for(cache)
            if not fail_open(breaker, exc):
                raise
            failed: R = _miss(state, None, breaker, key, args, kwargs, ())
            return failed
        if breaker is not None and breaker.failures:
            breaker.record_success()
        try:
            # An entry is a 4-tuple; anything else (a miss, a foreign value) fails
            # here or on the tag, and unpacking is cheaper than checking first.
            tag, _, stored_versions, stored = payload
        except (TypeError, ValueError):
            tag = None
        if tag == FORMAT and stored_versions == versions:
            state.hits += 1
            return stored  # type: ignore[no-any-return]  # the stored R
        replace = payload is not MISSING
        value: R = _miss(state, cache, breaker, key, args, kwargs, versions, replace, since)
        return value

    def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> bool:
        """Drop the entry of this call; return whether there was one."""
        state = self._state
        args = self._args(args)  # type: ignore[assignment]  # P.args with the instance
        key = state.build(args, kwargs)
        check_annotations(state.func, "invalidate", args, kwargs)
        return _counted(state, lambda: state.target().delete(key, state.version))

    def refresh(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run the function for this call, store the result and return it."""
        state = self._state
        args = self._args(args)  # type: ignore[assignment]  # P.args with the instance
        key = state.build(args, kwargs)
        cache = state.target()  # an explicit write, like an invalidation
        # The versions are read before the function runs, as on a miss.
        _, versions = _counted(state, lambda: read_entry(state, cache, key, args, kwargs))
        value: R = state.func(*args, **kwargs)
        state.misses += 1
        return _store(state, cache, key, value, versions, replace=True)[0]

    def invalidate_all(self) -> int:
        """Invalidate every call of the function, in every process; return its new version."""
        return _counted(self._state, lambda: invalidate_all(self))

    if TYPE_CHECKING:

        @overload
        def __get__(self, instance: None, owner: type[Any] | None = None) -> Self: ...

        @overload
        def __get__(
            self: CachedFunction[Concatenate[S, P2], R],
            instance: S,
            owner: type[Any] | None = None,
        ) -> CachedFunction[P2, R]: ...

        def __get__(self, instance: Any, owner: type[Any] | None = None) -> Any: ...

    else:
        __get__ = _Cached._bind


class AsyncCachedFunction(_Cached[P, Coroutine[Any, Any, T]]):
    """A memoised coroutine function; ``await`` it as the original."""

    __slots__ = ()

    async def __call__(self, *args: P.args, **kwargs: P.kwargs) -> T:
        state = self._state
        bound = self._bound
        if bound is not _UNBOUND:
            args = (bound, *args)  # type: ignore[assignment]  # P.args with the instance
        key = state.build(args, kwargs)
        breaker: CircuitBreaker | None = None
        if GATE.on:  # a switch is on, or a cache failed lately (memokit.switches)
            cache, breaker = _guarded(state)
        else:
            cache = state.cache if state.cache is not None else caches[state.alias]
        if breaker is not None and breaker.open_until and not breaker.allow():
            missed: T = await _amiss(state, None, breaker, key, args, kwargs, ())
            return missed
        since = state.aflights.ended  # before the read: see memokit.singleflight
        try:
            payload, versions = await aread_entry(state, cache, key, args, kwargs)
        except Exception as exc:
            _count(state, exc)
            breaker = breaker_for(cache)
            if not fail_open(breaker, exc):
                raise
            failed: T = await _amiss(state, None, breaker, key, args, kwargs, ())
            return failed
        if breaker is not None and breaker.failures:
            breaker.record_success()
        if (
            type(payload) is tuple
            and len(payload) == 4
            and payload[0] == FORMAT
            and payload[2] == versions
        ):
            state.hits += 1
            return payload[3]  # type: ignore[no-any-return]  # the stored T
        replace = payload is not MISSING
        value: T = await _amiss(state, cache, breaker, key, args, kwargs, versions, replace, since)
        return value

    async def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> bool:
        """Drop the entry of this call; return whether there was one."""
        state = self._state
        args = self._args(args)  # type: ignore[assignment]  # P.args with the instance
        key = state.build(args, kwargs)
        check_annotations(state.func, "invalidate", args, kwargs)
        try:
            return await state.target().adelete(key, state.version)
        except Exception as exc:
            _count(state, exc)
            raise

    async def refresh(self, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run the coroutine for this call, store the result and return it."""
        state = self._state
        args = self._args(args)  # type: ignore[assignment]  # P.args with the instance
        key = state.build(args, kwargs)
        cache = state.target()  # an explicit write, like an invalidation
        try:
            _, versions = await aread_entry(state, cache, key, args, kwargs)
        except Exception as exc:
            _count(state, exc)
            raise
        value: T = await state.func(*args, **kwargs)
        state.misses += 1
        return (await _astore(state, cache, key, value, versions, replace=True))[0]

    async def invalidate_all(self) -> int:
        """Invalidate every call of the function, in every process; return its new version."""
        try:
            return await ainvalidate_all(self)
        except Exception as exc:
            _count(self._state, exc)
            raise

    if TYPE_CHECKING:

        @overload
        def __get__(self, instance: None, owner: type[Any] | None = None) -> Self: ...

        @overload
        def __get__(
            self: AsyncCachedFunction[Concatenate[S, P2], T],
            instance: S,
            owner: type[Any] | None = None,
        ) -> AsyncCachedFunction[P2, T]: ...

        def __get__(self, instance: Any, owner: type[Any] | None = None) -> Any: ...

    else:
        __get__ = _Cached._bind


class CachedClassMethod(CachedFunction[Concatenate[type[O], P], R], Generic[O, P, R]):
    """A memoised classmethod: binds the class, from the class or from an instance."""

    __slots__ = ()

    if TYPE_CHECKING:

        def __get__(  # type: ignore[override]  # binds the class, never the instance
            self, instance: object, owner: type[Any] | None = None
        ) -> CachedFunction[P, R]: ...


class AsyncCachedClassMethod(AsyncCachedFunction[Concatenate[type[O], P], T], Generic[O, P, T]):
    """A memoised async classmethod."""

    __slots__ = ()

    if TYPE_CHECKING:

        def __get__(  # type: ignore[override]  # binds the class, never the instance
            self, instance: object, owner: type[Any] | None = None
        ) -> AsyncCachedFunction[P, T]: ...


# -- storing ----------------------------------------------------------------------


def _count(state: CachedState, exc: BaseException) -> None:
    if is_value_failure(exc):
        state.value_errors += 1
    else:
        state.errors += 1


def _counted(state: CachedState, operation: Callable[[], T]) -> T:
    try:
        return operation()
    except Exception as exc:
        _count(state, exc)
        raise


def _refuse_awaitable(state: CachedState, value: Any) -> None:
    if inspect.isawaitable(value):
        if inspect.iscoroutine(value):
            value.close()  # never awaited: close it rather than leak a warning
        raise TypeError(
            f"{state.func!r} returned an awaitable, but it is not a coroutine function, so "
            f"@cached took it for a sync one; apply @cached to the async def itself, or mark "
            f"the wrapper with inspect.markcoroutinefunction (Python 3.12+)"
        )


def _encode(state: CachedState, cache: BaseCache, value: Any, versions: Versions) -> Any:
    """Encode the entry of ``value``; a result the serializer cannot encode is a TypeError.

    Such a result is a bug in the caller's code, raised on every backend: the
    dummy backend keeps values as they are, so it is checked with the serializer.
    """
    payload = make_payload(value, versions)
    try:
        encoded = cache._encode(payload)
        if not cache.capabilities.stores:
            cache.serializer.dumps(payload)
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


def _store(
    state: CachedState,
    cache: BaseCache,
    key: str,
    value: T,
    versions: Versions,
    *,
    replace: bool,
    guard: CircuitBreaker | None = None,
) -> tuple[T, Shared | None]:
    """Store a computed value with get_or_set semantics.

    Return what the caller gets, and the entry as encoded for the store, from
    which each waiter of the flight decodes its own copy (None when nothing was
    encoded: the flight then encodes the value itself if anyone waits). A value
    the backend cannot hold is a value failure: counted, reported once per key
    and window, and the value returned unstored. A backend failure raises, or
    with ``guard`` (the cache's breaker) fails open: the value is returned
    unstored.
    """
    _refuse_awaitable(state, value)
    version = state.version
    # The predicate is the user's code: its exceptions are not backend errors.
    skip = state.unless is not None and state.unless(value)
    # Encoded once, before any I/O: what is stored is what the waiters decode
    # their copies from, and a result no serializer can encode raises here.
    payload = None if skip else _encode(state, cache, value, versions)
    shared = None
    made = ""
    try:
        if skip:
            if replace:
                cache.delete(key, version)
            return value, None
        made = cache.make_and_validate_key(key, version)
        seconds = cache._seconds(state.timeout_for(value))
        if cache.capabilities.stores:  # the dummy cache encodes nothing
            shared = Shared(payload, _entry_decoder(cache))
        if seconds is not None and seconds <= 0:
            if replace:
                cache._delete(made)  # nothing is stored under a timeout of 0
        elif replace:
            cache._set(made, payload, seconds)
        elif not cache._add(made, payload, seconds):
            # Another caller stored first: theirs wins, as with get_or_set, if valid.
            current = cache._get(made)
            found = MISSING if current is MISSING else decode_entry(state, cache, made, current)
            theirs = valid_value(found, versions)
            if theirs is not MISSING:
                value = theirs
                shared = Shared(current, shared.decode) if shared is not None else None
            else:
                cache._set(made, payload, seconds)
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


async def _astore(
    state: CachedState,
    cache: BaseCache,
    key: str,
    value: T,
    versions: Versions,
    *,
    replace: bool,
    guard: CircuitBreaker | None = None,
) -> tuple[T, Shared | None]:
    """The async twin of :func:`_store`."""
    _refuse_awaitable(state, value)
    version = state.version
    # The predicate is the user's code: its exceptions are not backend errors.
    skip = state.unless is not None and state.unless(value)
    payload = None if skip else _encode(state, cache, value, versions)
    shared = None
    made = ""
    try:
        if skip:
            if replace:
                await cache.adelete(key, version)
            return value, None
        made = cache.make_and_validate_key(key, version)
        seconds = cache._seconds(state.timeout_for(value))
        if cache.capabilities.stores:
            shared = Shared(payload, _entry_decoder(cache))
        if seconds is not None and seconds <= 0:
            if replace:
                await cache._adelete(made)
        elif replace:
            await cache._aset(made, payload, seconds)
        elif not await cache._aadd(made, payload, seconds):
            current = await cache._aget(made)
            found = MISSING if current is MISSING else decode_entry(state, cache, made, current)
            theirs = valid_value(found, versions)
            if theirs is not MISSING:
                value = theirs
                shared = Shared(current, shared.decode) if shared is not None else None
            else:
                await cache._aset(made, payload, seconds)
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


def _entry_decoder(cache: BaseCache) -> Callable[[Any], Any]:
    decode = cache._decode

    def value_of(payload: Any) -> Any:
        return decode(payload)[3]  # the value of a (FORMAT, created, versions, value) entry

    return value_of


def _guarded(state: CachedState) -> tuple[BaseCache, CircuitBreaker | None]:
    """The cache a call uses while a switch or a breaker is on, and its breaker if troubled."""
    cache = state.resolve()
    breaker = breaker_for(cache)
    return cache, breaker if breaker.failures else None


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
    def lead(recheck: bool) -> tuple[Any, Shared | None]:
        if cache is None:
            value = state.func(*args, **kwargs)
            state.misses += 1
            _refuse_awaitable(state, value)
            return value, None
        guard = breaker if breaker is not None else breaker_for(cache)
        lock = state.lock
        token = None
        if lock is not None:
            # The lock looks at the cache itself once it holds the lock.
            token, found = lock.acquire(cache, key, state.version, guard, check)
            if found is not MISSING:
                state.hits += 1  # another process computed it meanwhile
                return found, None
        elif recheck:
            # A flight of this function ended since this caller's read: it may
            # have stored this very entry (a first-call race otherwise).
            try:
                found = check()
            except Exception as exc:
                _count(state, exc)
                if not fail_open(guard, exc):
                    raise
                found = MISSING
            if found is not MISSING:
                state.hits += 1
                return found, None
        try:
            value = state.func(*args, **kwargs)
            state.misses += 1
            return _store_open(state, cache, guard, key, value, versions, replace=replace)
        finally:
            if token is not None:
                lock.release(cache, key, state.version, token)  # type: ignore[union-attr]

    def check() -> Any:
        return valid_value(cache.get(key, _MISS, state.version), versions)  # type: ignore[union-attr]

    value, role = state.flights.run((id(cache), key, state.version, versions), lead, since)
    if role == JOINED:
        state.hits += 1
    return value


def _store_open(
    state: CachedState,
    cache: BaseCache,
    breaker: CircuitBreaker,
    key: str,
    value: T,
    versions: Versions,
    *,
    replace: bool,
) -> tuple[T, Shared | None]:
    """:func:`_store`, except that a backend failure returns the value (fail open)."""
    if breaker.open_until and not breaker.allow():
        _refuse_awaitable(state, value)
        return value, None  # the breaker opened while the function ran
    return _store(state, cache, key, value, versions, replace=replace, guard=breaker)


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
    async def lead(recheck: bool) -> tuple[Any, Shared | None]:
        if cache is None:
            value = await state.func(*args, **kwargs)
            state.misses += 1
            return value, None
        guard = breaker if breaker is not None else breaker_for(cache)
        lock = state.lock
        token = None
        if lock is not None:
            token, found = await lock.aacquire(cache, key, state.version, guard, check)
            if found is not MISSING:
                state.hits += 1
                return found, None
        elif recheck:
            try:
                found = await check()
            except Exception as exc:
                _count(state, exc)
                if not fail_open(guard, exc):
                    raise
                found = MISSING
            if found is not MISSING:
                state.hits += 1
                return found, None
        try:
            value = await state.func(*args, **kwargs)
            state.misses += 1
            return await _astore_open(state, cache, guard, key, value, versions, replace=replace)
        finally:
            if token is not None:
                await lock.arelease(cache, key, state.version, token)  # type: ignore[union-attr]

    async def check() -> Any:
        payload = await cache.aget(key, _MISS, state.version)  # type: ignore[union-attr]
        return valid_value(payload, versions)

    flights = state.aflights
    value, role = await flights.run((id(cache), key, state.version, versions), lead, since)
    if role == JOINED:
        state.hits += 1
    return value


async def _astore_open(
    state: CachedState,
    cache: BaseCache,
    breaker: CircuitBreaker,
    key: str,
    value: T,
    versions: Versions,
    *,
    replace: bool,
) -> tuple[T, Shared | None]:
    """The async twin of :func:`_store_open`."""
    if breaker.open_until and not breaker.allow():
        return value, None
    return await _astore(state, cache, key, value, versions, replace=replace, guard=breaker)


# -- making one -----------------------------------------------------------------


def wrap(state: CachedState) -> _Cached[Any, Any]:
    """Return the unbound cached callable for ``state.func``, with its metadata."""
    target = state.func
    is_async = inspect.iscoroutinefunction(target)
    cls: type[_Cached[Any, Any]]
    if state.binding == "class":
        cls = AsyncCachedClassMethod if is_async else CachedClassMethod
    else:
        cls = AsyncCachedFunction if is_async else CachedFunction
    made = object.__new__(cls)
    made._state = state
    made._bound = _UNBOUND
    made.__dict__ = {}
    functools.update_wrapper(made, target)  # also sets __wrapped__ for inspect.signature
    if is_async:
        _mark_coroutine_function(made)
    state.unbound = made
    state.bound_dict = {k: v for k, v in made.__dict__.items() if k != "__wrapped__"}
    return made


def is_cached(obj: object) -> bool:
    """True for an object that ``@cached`` made."""
    return isinstance(obj, _Cached)


def _mark_coroutine_function(obj: Any) -> None:
    # So that inspect.iscoroutinefunction() and frameworks that check it see a
    # coroutine function: Python 3.12+ has a marker for this; on 3.11 inspect
    # recognises an object that looks like a function with a coroutine code.
    mark = getattr(inspect, "markcoroutinefunction", None)
    if mark is not None:
        mark(obj)
        return
    target = obj.__wrapped__
    obj.__code__ = target.__code__
    obj.__defaults__ = getattr(target, "__defaults__", None)
    obj.__kwdefaults__ = getattr(target, "__kwdefaults__", None)
