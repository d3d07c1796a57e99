"""``@cached_property``: a per-instance value computed once, optionally shared or timed.

Three modes, chosen by the arguments:

- **plain** (``@cached_property``): like :class:`functools.cached_property`, a
  non-data descriptor that writes the value into the instance's ``__dict__``,
  so a hit is an ordinary attribute read. Unlike functools since Python 3.12,
  concurrent first reads compute once: a lock per instance and attribute
  (never one per class) is held while the value is computed, and dropped
  afterwards, so nothing keeps the instance alive.
- **timed** (``timeout=60``): the value is kept in ``__dict__`` with a deadline
  (``time.monotonic()``), and computed again on the first read after it.
- **shared** (``cache="default"`` or a cache instance): the value lives in the
  cache under a key built from the instance's declared identity
  (``__cache_key__``), so every process that reads the same object shares it;
  this mode is ``@cached`` on the getter, with its single flight and fail-open.

An ``async def`` getter gives an awaitable: ``await obj.attr`` computes once
(concurrent awaits share one computation), then returns the stored result.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, Final, Generic, Protocol, Self, TypeVar, overload

from .backends.base import BaseCache
from .config import DefaultCacheProxy
from .fnstate import CacheInfo
from .stats import Stats
from .timeouts import DEFAULT_TIMEOUT, Timeout, check_timeout

T = TypeVar("T")

_ABSENT: Final = object()


class CachedProperty(Generic[T]):
    """The plain mode: a non-data descriptor that stores the value in ``__dict__``."""

    def __init__(self, func: Callable[[Any], Any]) -> None:
        if not callable(func) or isinstance(func, property | type):
            raise TypeError(f"@cached_property applies to a method taking only self, not {func!r}")
        self.func = func
        self.attrname: str | None = None
        self.owner: type[Any] | None = None  # the class it was assigned in (pickling)
        self.is_async = inspect.iscoroutinefunction(func)
        self.__doc__ = func.__doc__
        self.__module__ = getattr(func, "__module__", None)  # type: ignore[assignment]  # as functools
        self.__name__ = getattr(func, "__name__", None)
        self.__qualname__ = getattr(func, "__qualname__", None)  # pyright: ignore[reportAttributeAccessIssue]  # as functools
        self.__wrapped__ = func
        self._locks = _InstanceLocks()

    def __set_name__(self, owner: type[Any], name: str) -> None:
        if self.attrname is None:
            self.attrname = name
            self.owner = owner
        elif name != self.attrname:
            raise TypeError(
                f"cannot give one cached_property two names ({self.attrname!r} and {name!r}); "
                f"decorate each method separately"
            )

    @overload
    def __get__(self, instance: None, owner: type[Any] | None = None) -> Self: ...

    @overload
    def __get__(self, instance: object, owner: type[Any] | None = None) -> T: ...

    def __get__(self, instance: object, owner: type[Any] | None = None) -> Any:
        if instance is None:
            return self
        # Reached only while __dict__ holds no value: a hit never calls this.
        name = self._name()
        stored = _instance_dict(instance, name)
        with self._locks.holding(instance):
            value = stored.get(name, _ABSENT)
            if value is _ABSENT:
                value = self._compute(instance)
                stored[name] = value
            return value

    def _compute(self, instance: object) -> Any:
        if self.is_async:
            return AwaitOnce(self.func, instance, self)
        return self.func(instance)

    def _name(self) -> str:
        if self.attrname is None:
            raise TypeError(
                "cannot use a cached_property without a name: assign it in a class body "
                "(or call __set_name__(owner, name) when adding it to a class later)"
            )
        return self.attrname

    def invalidate(self, instance: object) -> bool:
        """Forget the value of ``instance``; return whether there was one."""
        return _instance_dict(instance, self._name()).pop(self._name(), _ABSENT) is not _ABSENT

    def __repr__(self) -> str:
        return f"<cached_property {getattr(self.func, '__qualname__', self.func)!r}>"

    def __reduce__(self) -> tuple[Any, ...]:
        # By reference, as the attribute of its class: a pending async value
        # (AwaitOnce) names its property this way when its instance is pickled.
        if self.owner is None or self.attrname is None:
            raise TypeError(f"cannot pickle {self!r}: it was never assigned in a class body")
        return (getattr, (self.owner, self.attrname))


class TimedCachedProperty(CachedProperty[T]):
    """The timed mode: a data descriptor, so every read checks the deadline."""

    def __init__(self, func: Callable[[Any], Any], timeout: float) -> None:
        super().__init__(func)
        self.timeout = timeout

    def __get__(self, instance: object, owner: type[Any] | None = None) -> Any:
        if instance is None:
            return self
        name = self._name()
        stored = _instance_dict(instance, name)
        value = _unexpired(stored.get(name))
        if value is not _ABSENT:
            return value
        with self._locks.holding(instance):
            value = _unexpired(stored.get(name))  # another thread may have computed it
            if value is not _ABSENT:
                return value
            value = self._compute(instance)
            stored[name] = (value, time.monotonic() + self.timeout)
            return value

    def __set__(self, instance: object, value: T) -> None:
        name = self._name()
        _instance_dict(instance, name)[name] = (value, time.monotonic() + self.timeout)

    def __delete__(self, instance: object) -> None:
        if not self.invalidate(instance):
            raise AttributeError(self._name())


def _unexpired(entry: tuple[Any, float] | None) -> Any:
    """The value of a timed property's ``(value, deadline)`` before its deadline, else absent."""
    if entry is not None and time.monotonic() < entry[1]:
        return entry[0]
    return _ABSENT


class SharedCachedProperty(CachedProperty[T]):
    """The shared mode: the value lives in a cache, keyed by the instance's identity."""

    def __init__(
        self, func: Callable[[Any], Any], timeout: Timeout, cache: str | BaseCache
    ) -> None:
        from .decorators import cached  # decorators imports nothing from here

        super().__init__(func)
        self.cached: Any = cached(timeout=timeout, cache=cache)(func)

    def __get__(self, instance: object, owner: type[Any] | None = None) -> Any:
        if instance is None:
            return self
        return self.cached(instance)

    def __set__(self, instance: object, value: T) -> None:
        raise AttributeError(
            f"cannot assign {self._name()!r}: its value is shared through a cache; call "
            f"{type(instance).__qualname__}.{self._name()}.invalidate(obj) to recompute it"
        )

    def __delete__(self, instance: object) -> None:
        self.invalidate(instance)

    def cache_info(self) -> CacheInfo:
        """Hits, misses and errors of this property, over every instance (this process)."""
        info: CacheInfo = self.cached.cache_info()
        return info

    def stats(self) -> Stats:
        """Statistics of this property over every instance, as ``@cached``'s ``stats()``."""
        found: Stats = self.cached.stats()
        return found

    def invalidate(self, instance: object) -> bool:
        """Drop the shared value of ``instance`` from the cache; return whether there was one.

        A backend error propagates: a value that might be stale is worse than an error.
        """
        cached = self.cached
        state = cached._state
        # Under caching_disabled() too: an invalidation must reach the real cache.
        deleted: bool = state.target().delete(cached.key(instance), state.version)
        return deleted


class AwaitOnce(Generic[T]):
    """The value of an async cached property: awaitable any number of times, computed once.

    Concurrent awaits share one computation (a cancelled awaiter does not cancel
    it for the others). If it raises, every awaiter gets the exception and the
    next await computes again.
    """

    __slots__ = ("_done", "_func", "_instance", "_lock", "_source", "_task", "_value")

    def __init__(
        self,
        func: Callable[[Any], Awaitable[T]],
        instance: object,
        source: CachedProperty[Any] | None = None,
    ) -> None:
        self._func: Callable[[Any], Awaitable[T]] | None = func
        self._instance: object = instance
        self._source = source  # the property it belongs to, to pickle a pending one
        self._lock = threading.Lock()
        self._task: asyncio.Task[T] | None = None
        self._done = False
        self._value: T | None = None

    def __await__(self) -> Iterator[Any]:
        return self._result().__await__()

    async def _result(self) -> T:
        if self._done:
            return self._value  # type: ignore[return-value]  # set with _done
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._done:
                return self._value  # pyright: ignore[reportReturnType]  # set with _done
            task = self._task
            if task is None or task.done() or task.get_loop() is not loop:
                task = self._task = loop.create_task(self._run())
                task.add_done_callback(_retrieve)
        return await asyncio.shield(task)

    async def _run(self) -> T:
        func = self._func
        if func is None:  # finished by a computation on another event loop
            return self._value  # type: ignore[return-value]  # set with _done
        value = await func(self._instance)
        with self._lock:
            if not self._done:
                self._value, self._done = value, True
                # Drop the references: the instance holds this object in its __dict__.
                self._func = self._instance = None
            return self._value  # type: ignore[return-value]  # set just above

    def __repr__(self) -> str:
        return f"<AwaitOnce {'done' if self._done else 'pending'}>"

    def __reduce__(self) -> tuple[Any, ...]:
        # The lock and the task belong to this process and its event loop: an
        # instance that is pickled or deep-copied takes the result when there is
        # one, else a fresh computation of the same property on the copy.
        if self._done:
            return (_awaited, (self._value,))
        source = self._source if self._source is not None else self._func
        return (_pending, (source, self._instance))


def _awaited(value: T) -> AwaitOnce[T]:
    made: AwaitOnce[T] = AwaitOnce(_never, None)
    made._value, made._done = value, True
    made._func = made._instance = None
    return made


def _pending(source: Any, instance: object) -> AwaitOnce[Any]:
    if isinstance(source, CachedProperty):
        return AwaitOnce(source.func, instance, source)
    return AwaitOnce(source, instance)


async def _never(instance: object) -> Any:
    raise AssertionError("a finished AwaitOnce never computes")  # pragma: no cover


def _retrieve(task: asyncio.Task[Any]) -> None:
    # When every awaiter was cancelled nobody reads the exception; asyncio would log it.
    if not task.cancelled():
        task.exception()


def _instance_dict(instance: object, name: str) -> dict[str, Any]:
    try:
        return instance.__dict__
    except AttributeError:
        cls = type(instance).__qualname__
        raise TypeError(
            f"cached_property {name!r} needs a __dict__ to keep its value, and {cls} has "
            f"__slots__ without '__dict__'; add '__dict__' to {cls}.__slots__, or keep the "
            f"value in a cache with @cached_property(cache='default')"
        ) from None


class _InstanceLocks:
    """One lock per instance, held only while its value is computed."""

    __slots__ = ("_lock", "_locks")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # id(instance) -> [lock, holders]; an entry exists only while someone holds or
        # waits for it, so the instance is alive and its id cannot be reused.
        self._locks: dict[int, list[Any]] = {}

    @contextmanager
    def holding(self, instance: object) -> Iterator[None]:
        ident = id(instance)
        with self._lock:
            entry = self._locks.get(ident)
            if entry is None:
                # Reentrant: a getter that reads its own property recurses, not deadlocks.
                entry = self._locks[ident] = [threading.RLock(), 0]
            entry[1] += 1
        try:
            with entry[0]:
                yield
        finally:
            with self._lock:
                entry[1] -= 1
                if entry[1] == 0:
                    del self._locks[ident]


# -- the decorator ---------------------------------------------------------------------


@overload
def cached_property(
    func: Callable[[Any], Coroutine[Any, Any, T]], /
) -> CachedProperty[Awaitable[T]]: ...


@overload
def cached_property(func: Callable[[Any], T], /) -> CachedProperty[T]: ...


@overload
def cached_property(
    *, timeout: Timeout = DEFAULT_TIMEOUT, cache: str | BaseCache | None = None
) -> _PropertyDecorator: ...


def cached_property(
    func: Any = None,
    /,
    *,
    timeout: Timeout = DEFAULT_TIMEOUT,
    cache: str | BaseCache | None = None,
) -> Any:
    """Compute a property once per instance; optionally for ``timeout`` seconds or in a cache.

    - bare, or without arguments: kept in the instance's ``__dict__`` for its life;
    - ``timeout``: seconds after which the next read computes again (``None``:
      never, the default);
    - ``cache``: an alias or a cache instance; the value is kept there under the
      instance's ``__cache_key__()``, shared by every process, for ``timeout``
      (default: the cache's ``TIMEOUT``).

    ``del obj.attr`` and ``Class.attr.invalidate(obj)`` forget the value.
    """
    if timeout is not DEFAULT_TIMEOUT:
        timeout = check_timeout(timeout, "timeout")
    if cache is not None and not isinstance(cache, str | BaseCache | DefaultCacheProxy):
        raise TypeError(
            f"cache must be None (keep the value on the instance), an alias such as "
            f"'default' or a memokit cache instance, not {cache!r}"
        )

    def apply(getter: Callable[[Any], Any]) -> CachedProperty[Any]:
        made: CachedProperty[Any]
        if cache is not None:
            made = SharedCachedProperty(getter, timeout, cache)
        elif timeout is DEFAULT_TIMEOUT or timeout is None:
            made = CachedProperty(getter)
        else:
            made = TimedCachedProperty(getter, float(timeout))
        return made

    if func is None:
        return apply
    return apply(func)


class _PropertyDecorator(Protocol):
    """What ``cached_property(...)`` with arguments returns: apply it to a getter."""

    @overload
    def __call__(
        self, func: Callable[[Any], Coroutine[Any, Any, T]], /
    ) -> CachedProperty[Awaitable[T]]: ...

    @overload
    def __call__(self, func: Callable[[Any], T], /) -> CachedProperty[T]: ...
