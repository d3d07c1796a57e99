"""The callables ``@cached`` returns: binding, the hit path and the helpers.

A decorated function becomes a :class:`CachedFunction` (or an
:class:`AsyncCachedFunction` for a coroutine function). Every call builds a key
and reads it with its counters (:mod:`memokit.counters`); a valid entry is a
hit and returns here. Anything else (a miss, an entry of another format or
other versions) goes to the miss path, :mod:`memokit.misses`, which runs the
function and stores its result. ``None`` is cached like any value.

The objects are ``wrapt.FunctionWrapper`` subclasses, so ``inspect`` and
``isinstance`` see the function (``isfunction``, ``iscoroutinefunction``,
``__wrapped__``, ``__signature__``, ``__qualname__``, annotations). Each has its
own ``__call__``, the hit path, rather than wrapt's generic call into a wrapper
function (about 0.8 µs a call). Binding makes a ``wrapt.BoundFunctionWrapper``
subclass: on an instance like a method (in wrapt's own ``__get__``), on a
``@classmethod`` the class, on a ``@staticmethod`` nothing. The helpers
(``key``, ``invalidate``, ``refresh``, ``cache_info``, ``stats`` ...) bind the same way, so
``obj.method.invalidate(3)`` drops the entry of ``obj.method(3)``. The
per-function :class:`CachedState` travels as wrapt's ``wrapper`` slot, which
wrapt never calls here, and the bound target as its ``instance`` slot.
"""

from __future__ import annotations

import functools
import inspect
import sys
import types
from collections.abc import Callable, Coroutine
from time import monotonic
from time import time as _now
from typing import (
    TYPE_CHECKING,
    Any,
    Concatenate,
    Final,
    Generic,
    ParamSpec,
    Self,
    SupportsIndex,
    TypeVar,
    overload,
)

from . import counters
from .backends.base import MISSING, UNREADABLE, BaseCache
from .config import caches
from .counters import aread_entry, read_entry, unreadable_entry
from .entry import local_versions, valid_value
from .fastindex import DECODE, SINGLE, index_key, indexed, learn
from .fnstate import CachedState, CacheInfo, ErrorCounts, _count, _counted
from .invalidation import ainvalidate_all, invalidate_all
from .keyhints import check_annotations
from .misses import _amiss, _arun, _guarded, _miss, _read_failed, _refresh_steps, _run
from .proxies import (
    _Annotations,
    _bound_of,
    _BoundFunctionWrapper,
    _FunctionWrapper,
    _state_of,
)
from .resilience import CircuitBreaker
from .stats import Stats, aflush, flush, rearm, register, stats_of
from .switches import GATE

__all__ = [
    "AsyncCachedClassMethod",
    "AsyncCachedFunction",
    "CacheInfo",
    "CachedClassMethod",
    "CachedFunction",
    "CachedState",
    "ErrorCounts",
    "is_cached",
    "wrap",
]

P = ParamSpec("P")
P2 = ParamSpec("P2")
R = TypeVar("R")
T = TypeVar("T")
S = TypeVar("S")
O = TypeVar("O")  # noqa: E741 - the owner class of a classmethod

_UNBOUND: Final = object()
"""``_bound`` of an object that is not bound to an instance or a class."""


def _unreadable(state: CachedState, cache: BaseCache, key: str, exc: BaseException) -> Any:
    """A valid entry whose value could not be decoded: reported, and a miss (MISSING)."""
    return unreadable_entry(state, cache, cache.make_and_validate_key(key, state.version), exc)


_HIDDEN_CLASS: Final = sys.version_info >= (3, 13)
"""Python 3.13's ``classmethod`` no longer passes ``__get__`` on to what it wraps."""


def _hiding_classmethod(state: CachedState) -> tuple[str, Any] | None:
    """The name and ``classmethod`` wrapping this object in its class body, if any."""
    for name, value in (state.class_body or {}).items():
        if isinstance(value, classmethod) and value.__func__ is state.unbound:
            return name, value
    return None


def _refuse_hidden_class(state: CachedState, args: tuple[Any, ...]) -> None:
    """Refuse a helper call of ``@classmethod`` above ``@cached`` that lacks its class.

    On Python 3.13 ``Owner.method`` is then a plain method whose helpers reach the
    unbound object: ``Owner.method.key(1)`` would take ``1`` for ``cls``, and with
    more parameters build (or invalidate) another call's key without a word. A
    first argument that is a class holding the method passes, as an explicit
    ``Owner.method.key(Owner, 1)`` does.
    """
    found = _hiding_classmethod(state)
    if found is None:
        return
    name, method = found
    first = args[0] if args else None
    if isinstance(first, type) and any(vars(klass).get(name) is method for klass in first.__mro__):
        return
    raise TypeError(
        f"{state.func.__qualname__}: on Python 3.13 and later, @classmethod above "
        f"@cached hides the class from the helpers (key, invalidate, refresh, "
        f"uncached), which would build another call's key; put @cached above "
        f"@classmethod (the call itself works in either order), or pass the class "
        f"first: Owner.{name}.key(Owner, ...)"
    )


class _Cached(Generic[P, R]):
    """What sync and async decorated callables share: binding and the sync helpers.

    A mixin ahead of ``wrapt.FunctionWrapper`` (or ``BoundFunctionWrapper``) in
    the classes below. wrapt's proxy sends every attribute it does not find on
    the class to the wrapped function; the ones defined here come first.
    """

    __slots__ = ()

    if TYPE_CHECKING:
        # Set by wrapt's initialiser: the state (passed as its `wrapper`) and the
        # instance or class bound, None for an unbound object.
        _self_wrapper: CachedState
        _self_instance: Any
        _self_owner: Any
        __wrapped__: Callable[..., Any]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.__annotations__ = _Annotations()

    @property
    def _state(self) -> CachedState:
        return self._self_wrapper

    @property
    def _bound(self) -> Any:
        bound = self._self_instance
        return _UNBOUND if bound is None else bound

    def _bind_class(self, instance: Any, owner: Any) -> Any:
        # __get__ of a cached classmethod: bind the class, reached from the class
        # or an instance. (An instance method binds in wrapt's own __get__.)
        state = _state_of(self)
        target = owner if owner is not None else type(instance)
        # wrapt's BoundFunctionWrapper(wrapped, instance, wrapper, enabled, binding,
        # parent, owner): the bound original is what introspection sees.
        return state.bound_cls(
            types.MethodType(state.func, target), target, state, None, "classmethod", self, owner
        )

    def _bind_nothing(self, instance: Any, owner: Any) -> Any:
        return self  # __get__ of a cached staticmethod

    def __set_name__(self, owner: type[Any], name: str) -> None:
        state = self._self_wrapper
        state.name, state.owner = name, owner

    def _args(self, args: tuple[Any, ...]) -> tuple[Any, ...]:
        bound = self._self_instance
        if bound is not None:
            return (bound, *args)
        if _HIDDEN_CLASS and self._state.class_body is not None:
            _refuse_hidden_class(self._state, args)
        return args

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
        func = self._self_wrapper.func
        bound = self._self_instance
        if bound is None:
            if _HIDDEN_CLASS and _hiding_classmethod(self._state) is not None:
                state = self._state

                def checked(*args: Any, **kwargs: Any) -> Any:
                    _refuse_hidden_class(state, args)
                    return func(*args, **kwargs)

                return functools.wraps(func)(checked)
            return func
        return types.MethodType(func, bound)

    @property
    def cache(self) -> BaseCache:
        """The backend in use now (an alias is looked up at each access)."""
        return self._state.resolve()

    def cache_info(self) -> CacheInfo:
        """Return the hits, misses and errors (backend and value) counted since decoration."""
        state = self._state
        return CacheInfo(state.hits, state.misses, ErrorCounts(state.errors, state.value_errors))

    def stats(self) -> Stats:
        """Return this process's statistics: counts, errors by kind, compute time, sharing."""
        return stats_of(self._state)

    def __repr__(self) -> str:
        state = self._state
        where = repr(state.cache) if state.cache is not None else repr(state.alias)
        bound = "" if self._self_instance is None else f" bound to {self._self_instance!r}"
        name = getattr(state.func, "__qualname__", None) or repr(state.func)
        return f"<cached {name} in {where}{bound}>"

    def __str__(self) -> str:
        return self.__repr__()  # not the proxy's str() of the function

    def __reduce_ex__(self, protocol: SupportsIndex) -> str | tuple[Any, ...]:
        # Pickled by reference, like a function or a bound method (multiprocessing
        # sends it by name): unbound by its qualified name, bound as the attribute
        # of what it is bound to.
        bound = self._self_instance
        if bound is not None:
            return (getattr, (bound, self._self_wrapper.name))
        state = self._self_wrapper
        if isinstance(self, _BoundFunctionWrapper):  # an instance method through its class
            return (getattr, (self._self_owner, state.name))
        if state.owner is not None:  # the object in its class's __dict__
            return (_class_attribute, (state.owner, state.name))
        name = getattr(state.func, "__qualname__", None)
        if not isinstance(name, str):
            raise TypeError(f"cannot pickle {self!r}: it has no qualified name to find it by")
        return name

    def __reduce__(self) -> str | tuple[Any, ...]:
        return self.__reduce_ex__(2)

    def __copy__(self) -> Self:
        return self  # as a function: copy.copy() and deepcopy() keep the same one

    def __deepcopy__(self, memo: dict[int, Any]) -> Self:
        return self


def _class_attribute(owner: type[Any], name: str) -> Any:
    """Unpickle the unbound object of a method: as its class holds it."""
    return owner.__dict__[name]


_Cached.__annotations__ = _Annotations()  # __init_subclass__ covers the subclasses


class CachedFunction(_Cached[P, R]):
    """A memoised sync callable; call it as the original."""

    __slots__ = ()

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        state = _state_of(self)
        # The unbound object is bound to nothing: its type says so, cheaper than the slot.
        bound = None if type(self) is state.unbound_type else _bound_of(self)
        if bound is not None:
            args = (bound, *args)  # type: ignore[assignment]  # P.args with the instance
        elif state.index is not None and not GATE.on:
            # The fast index: a call of scalars that hit before (memokit.fastindex.indexed,
            # written out: a nested call would cost a tenth of this hit).
            ix = state.index
            cache = state.cache if state.cache is not None else caches[state.alias]
            if (
                cache is ix.cache
                and cache.key_prefix is ix.key_prefix
                and cache.version is ix.version
                and cache.key_func is ix.key_func
            ):
                if not kwargs and len(args) == 1 and type(args[0]) in SINGLE:
                    item = ix.items.get(args[0])
                else:
                    ikey = index_key(args, kwargs)
                    item = None if ikey is None else ix.items.get(ikey)
                if item is not None:
                    made, record, at, found = item
                    if (
                        at == counters.epoch
                        and ix.records.get(made) is record
                        # On the clock the store's records end on (IndexView).
                        and record[1] > (monotonic() if ix.monotonic else _now())
                    ):
                        recent = ix.recent
                        if recent is not None:
                            try:  # noqa: SIM105 - a suppress() costs a fifth of a hit
                                recent(made)
                            except KeyError:
                                pass  # removed meanwhile: this hit read it before that
                        if found is DECODE:
                            try:
                                found = cache._decode(record[0][3])
                            except UNREADABLE:
                                found = MISSING  # the string key reports it
                        if found is not MISSING:
                            state.hits += 1
                            if ix.tier:
                                state.tier_hits += 1
                            if state.due and monotonic() >= state.due:
                                flush(state)  # shared statistics (memokit.stats)
                            return found  # type: ignore[no-any-return]  # the stored R
        key = state.build(args, kwargs)
        breaker: CircuitBreaker | None = None
        if GATE.on:  # a switch is on, or a cache failed lately (memokit.switches)
            cache, breaker = _guarded(state)
            if cache is None:  # the breaker is open: skip the backend (memokit.resilience)
                missed: R = _miss(state, None, breaker, key, args, kwargs, ())
                return missed
        else:
            cache = state.cache if state.cache is not None else caches[state.alias]
        since = state.flights.ended  # before the read: see memokit.singleflight
        try:
            plan = state.fast
            versions = local_versions(plan, cache, counters.epoch)
            if versions is not None:
                # A store only this process sees, no invalidation since the counters
                # were read: the entry alone (read_entry's first case).
                payload = plan.get(plan.entry_prefix + key)
            else:
                # The entry and the counters it must match, in one read (see
                # memokit.counters); `versions` is what a computed value is stored under.
                payload, versions = read_entry(state, cache, key, args, kwargs)
        except Exception as exc:
            breaker = _read_failed(state, cache, exc)
            failed: R = _miss(state, None, breaker, key, args, kwargs, ())
            return failed
        if breaker is not None and breaker.failures:
            breaker.record_success()
        try:
            # Only a current entry's value is decoded (memokit.entry).
            stored = valid_value(payload, versions, cache)
        except UNREADABLE as exc:
            stored = _unreadable(state, cache, key, exc)
        if stored is not MISSING:
            state.hits += 1
            if bound is None:
                learn(state, cache, key, args, kwargs, payload, versions)
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
        value: R = _run(_refresh_steps(state, state.build(args, kwargs), args, kwargs))
        return value

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


class AsyncCachedFunction(_Cached[P, Coroutine[Any, Any, T]]):
    """A memoised coroutine function; ``await`` it as the original."""

    __slots__ = ()

    async def __call__(self, *args: P.args, **kwargs: P.kwargs) -> T:
        state = _state_of(self)
        bound = None if type(self) is state.unbound_type else _bound_of(self)
        if bound is not None:
            args = (bound, *args)  # type: ignore[assignment]  # P.args with the instance
        elif state.index is not None and not GATE.on:
            # As in CachedFunction.__call__: the fast index.
            cache = state.cache if state.cache is not None else caches[state.alias]
            ix = state.index
            found = indexed(ix, cache, args, kwargs)
            if found is not MISSING:
                state.hits += 1
                if ix.tier:
                    state.tier_hits += 1
                if state.due and monotonic() >= state.due:
                    await aflush(state)
                return found  # type: ignore[no-any-return]  # the stored T
        key = state.build(args, kwargs)
        breaker: CircuitBreaker | None = None
        if GATE.on:  # a switch is on, or a cache failed lately (memokit.switches)
            cache, breaker = _guarded(state)
            if cache is None:  # the breaker is open: skip the backend (memokit.resilience)
                missed: T = await _amiss(state, None, breaker, key, args, kwargs, ())
                return missed
        else:
            cache = state.cache if state.cache is not None else caches[state.alias]
        since = state.aflights.ended  # before the read: see memokit.singleflight
        try:
            plan = state.fast
            versions = local_versions(plan, cache, counters.epoch)
            if versions is not None:
                # As in CachedFunction.__call__: the entry alone.
                payload = await cache._aget(plan.entry_prefix + key)
            else:
                payload, versions = await aread_entry(state, cache, key, args, kwargs)
        except Exception as exc:
            breaker = _read_failed(state, cache, exc)
            failed: T = await _amiss(state, None, breaker, key, args, kwargs, ())
            return failed
        if breaker is not None and breaker.failures:
            breaker.record_success()
        try:
            # Only a current entry's value is decoded (memokit.entry).
            stored = valid_value(payload, versions, cache)
        except UNREADABLE as exc:
            stored = _unreadable(state, cache, key, exc)
        if stored is not MISSING:
            state.hits += 1
            if bound is None:
                learn(state, cache, key, args, kwargs, payload, versions)
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
        value: T = await _arun(_refresh_steps(state, state.build(args, kwargs), args, kwargs))
        return value

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


# -- the wrapt classes -----------------------------------------------------------
# The classes above hold the calls and helpers, and the typing; the objects are
# of the classes below, which add wrapt's proxy: FunctionWrapper for the unbound
# object and BoundFunctionWrapper for a bound one. An instance method binds in
# wrapt's __get__ (C code: binding is about 0.2 µs cheaper than a Python
# __get__), which makes __bound_function_wrapper__; reached through the class,
# the bound object has no instance and takes it as first argument. A cached
# classmethod binds its class (_bind_class), a cached staticmethod nothing.


def _wrapt_classes(public: type[Any]) -> dict[str, type[Any]]:
    """The unbound classes by binding ("instance", "class", "none"), and "bound"."""
    namespace = {"__slots__": (), "__module__": __name__}
    name = public.__name__
    bound = type(f"Bound{name}", (public, _BoundFunctionWrapper), dict(namespace))
    classes: dict[str, type[Any]] = {"bound": bound}
    for binding, get in (("instance", None), ("class", "_bind_class"), ("none", "_bind_nothing")):
        body: dict[str, Any] = {**namespace, "__bound_function_wrapper__": bound}
        if get is not None:
            body["__get__"] = getattr(public, get)
        classes[binding] = type(f"{name}[{binding}]", (public, _FunctionWrapper), body)
    return classes


_SYNC = _wrapt_classes(CachedFunction)
_ASYNC = _wrapt_classes(AsyncCachedFunction)
_SYNC["class"] = _wrapt_classes(CachedClassMethod)["class"]
_ASYNC["class"] = _wrapt_classes(AsyncCachedClassMethod)["class"]


# -- making one -----------------------------------------------------------------


def wrap(state: CachedState) -> _Cached[Any, Any]:
    """Return the unbound cached callable for ``state.func``."""
    classes = _ASYNC if inspect.iscoroutinefunction(state.func) else _SYNC
    state.bound_cls = classes["bound"]
    # wrapt's FunctionWrapper(wrapped, wrapper): the state rides in the wrapper slot.
    made: _Cached[Any, Any] = classes[state.binding](state.func, state)
    state.unbound = made
    state.unbound_type = type(made)
    register(state)
    return made


def is_cached(obj: object) -> bool:
    """True for an object that ``@cached`` made."""
    return isinstance(obj, _Cached)
