"""``@cached``: memoise a function, coroutine function or method in a memokit cache.

This module validates the decorator's arguments, once, when ``cached(...)`` is
called, and builds the :mod:`memokit.wrappers` object for the function: its key
builder (see :mod:`memokit.keybuilders`), how it binds, sync or async.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, Concatenate, Final, ParamSpec, Protocol, TypeVar, overload

from .backends.base import BaseCache
from .config import DEFAULT_CACHE_ALIAS, DefaultCacheProxy
from .counters import TagsSpec, prepare_counters
from .exceptions import UnkeyableArgument
from .identity import function_identity, signature_of
from .keybuilders import make_callable_builder, make_key_builder, make_template_builder
from .locks import BackendLock, check_lease
from .timeouts import DEFAULT_TIMEOUT, Timeout, check_timeout
from .wrappers import (
    AsyncCachedClassMethod,
    AsyncCachedFunction,
    CachedClassMethod,
    CachedFunction,
    CachedState,
    is_cached,
    wrap,
)

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")
O = TypeVar("O")  # noqa: E741 - the owner class of a classmethod


class _SameAsTimeout:
    __slots__ = ()

    def __repr__(self) -> str:
        return "SAME_AS_TIMEOUT"


SAME_AS_TIMEOUT: Final = _SameAsTimeout()
"""Default of ``none_timeout``: a None result is kept as long as any other result."""


class CachedDecorator(Protocol):
    """What ``cached(...)`` with arguments returns: apply it to a function."""

    @overload
    def __call__(  # type: ignore[overload-overlap]  # async classmethods first
        self, func: Callable[Concatenate[type[O], P], Coroutine[Any, Any, T]], /
    ) -> AsyncCachedClassMethod[O, P, T]: ...

    @overload
    def __call__(  # type: ignore[overload-overlap]  # coroutine functions before others
        self, func: Callable[P, Coroutine[Any, Any, T]], /
    ) -> AsyncCachedFunction[P, T]: ...

    @overload
    def __call__(
        self, func: Callable[Concatenate[type[O], P], R], /
    ) -> CachedClassMethod[O, P, R]: ...

    @overload
    def __call__(self, func: Callable[P, R], /) -> CachedFunction[P, R]: ...


@overload
def cached(  # type: ignore[overload-overlap]  # async classmethods first
    func: Callable[Concatenate[type[O], P], Coroutine[Any, Any, T]], /
) -> AsyncCachedClassMethod[O, P, T]: ...


@overload
def cached(  # type: ignore[overload-overlap]  # coroutine functions before others
    func: Callable[P, Coroutine[Any, Any, T]], /
) -> AsyncCachedFunction[P, T]: ...


@overload
def cached(func: Callable[Concatenate[type[O], P], R], /) -> CachedClassMethod[O, P, R]: ...


@overload
def cached(func: Callable[P, R], /) -> CachedFunction[P, R]: ...


@overload
def cached(
    *,
    timeout: Timeout = DEFAULT_TIMEOUT,
    cache: str | BaseCache = DEFAULT_CACHE_ALIAS,
    key: str | Callable[..., str] | None = None,
    version: int | None = None,
    ignore: Iterable[str] = (),
    unless: Callable[[Any], object] | None = None,
    none_timeout: Timeout | _SameAsTimeout = SAME_AS_TIMEOUT,
    lock_lease: float | None = None,
    tags: TagsSpec = (),
    name: str | None = None,
) -> CachedDecorator: ...


def cached(
    func: Any = None,
    /,
    *,
    timeout: Timeout = DEFAULT_TIMEOUT,
    cache: str | BaseCache = DEFAULT_CACHE_ALIAS,
    key: str | Callable[..., str] | None = None,
    version: int | None = None,
    ignore: Iterable[str] = (),
    unless: Callable[[Any], object] | None = None,
    none_timeout: Timeout | _SameAsTimeout = SAME_AS_TIMEOUT,
    lock_lease: float | None = None,
    tags: TagsSpec = (),
    name: str | None = None,
) -> Any:
    """Memoise a function, coroutine function or method in a memokit cache.

    Use it bare (``@cached``) or with arguments:

    - ``timeout``: seconds, ``None`` for never, or the cache's default;
    - ``cache``: an alias (looked up at each call, so configuring later works)
      or a cache instance;
    - ``key``: a template over the arguments (``"user:{user_id}"``) or a callable
      taking the call's arguments and returning a str; replaces the default key;
    - ``version``: passed to the cache as ``version=``;
    - ``ignore``: names of arguments left out of the key;
    - ``unless``: a predicate on the result; when true the result is not stored;
    - ``none_timeout``: the timeout of a ``None`` result (default: ``timeout``);
    - ``lock_lease``: seconds; take a lock in the backend on a miss, so that one
      process computes while the others wait (see :mod:`memokit.locks`);
    - ``tags``: templates over the arguments (``"user:{user_id}"``) or a callable
      returning tags; ``memokit.invalidate_tags(...)`` drops the entries carrying one;
    - ``name``: the function's identity in its keys and counters, instead of the
      one memokit derives (``module:qualname``); required for a lambda, and the
      way to name each function a factory makes (``name=f"scale:{factor}"``).

    A function or argument memokit cannot tell apart from another is refused
    with :class:`~memokit.exceptions.UnkeyableArgument` (see "How a call becomes
    a key" in docs/decorators.md).

    Concurrent misses of one key in this process always run the function once
    (:mod:`memokit.singleflight`); backend failures make the call compute and
    return its value anyway (:mod:`memokit.resilience`).
    """
    options = _Options(
        timeout, cache, key, version, ignore, unless, none_timeout, lock_lease, tags, name
    )
    if func is None:
        return options.apply
    return options.apply(func)


class _Options:
    """Validated decorator arguments, checked once when ``cached(...)`` is called."""

    def __init__(
        self,
        timeout: object,
        cache: object,
        key: object,
        version: object,
        ignore: object,
        unless: object,
        none_timeout: object,
        lock_lease: object = None,
        tags: object = (),
        name: object = None,
    ) -> None:
        self.timeout: Timeout = (
            DEFAULT_TIMEOUT if timeout is DEFAULT_TIMEOUT else check_timeout(timeout, "timeout")
        )
        if none_timeout is SAME_AS_TIMEOUT:
            self.none_timeout: Timeout = self.timeout
        elif none_timeout is DEFAULT_TIMEOUT:
            self.none_timeout = DEFAULT_TIMEOUT
        else:
            self.none_timeout = check_timeout(none_timeout, "none_timeout")
        if isinstance(cache, DefaultCacheProxy):
            cache = DEFAULT_CACHE_ALIAS
        # A Django cache served by memokit (memokit.contrib.django.MemokitCache)
        # carries the memokit cache it forwards to: cache in that one.
        served = getattr(cache, "memokit", None)
        if not isinstance(cache, str | BaseCache) and isinstance(served, BaseCache):
            cache = served
        if not isinstance(cache, str | BaseCache):
            raise TypeError(
                f"cache must be an alias such as 'default' or a memokit cache instance, "
                f"not {cache!r}"
            )
        self.cache = cache
        if version is not None and (type(version) is not int):
            raise TypeError(f"version must be an int or None, not {version!r}; e.g. version=2")
        self.version: int | None = version
        if isinstance(ignore, str) or not isinstance(ignore, Iterable):
            raise TypeError(
                f"ignore must be a collection of argument names, not {ignore!r}; "
                f"write for example ignore=('request',)"
            )
        self.ignore = tuple(ignore)
        for ignored in self.ignore:
            if not isinstance(ignored, str):
                raise TypeError(f"ignore must hold argument names (str), not {ignored!r}")
        if unless is not None and not callable(unless):
            raise TypeError(
                f"unless must be a predicate on the result, not {unless!r}; "
                f"for example unless=lambda result: result is None"
            )
        self.unless: Callable[[Any], object] | None = unless
        if key is not None and not (isinstance(key, str) or callable(key)):
            raise TypeError(
                f"key must be a template such as 'user:{{user_id}}' or a callable "
                f"returning a str, not {key!r}"
            )
        if key is not None and self.ignore:
            raise ValueError(
                "ignore= applies to the default key only; with key=... leave the "
                "arguments out of the template or callable instead"
            )
        self.key: str | Callable[..., object] | None = key  # its result checked per call
        self.lock_lease = check_lease(lock_lease)
        if not (callable(tags) or isinstance(tags, str | Iterable)):
            raise TypeError(
                f"tags must be a template such as 'user:{{user_id}}', a list of them, or a "
                f"callable returning tags, not {tags!r}"
            )
        # A generator would be used up by the first function decorated: keep a tuple.
        self.tags = tags if callable(tags) or isinstance(tags, str) else tuple(tags)
        if name is not None and (not isinstance(name, str) or not name.strip()):
            raise TypeError(
                f"name must be a non-empty str that identifies the function, not {name!r}; "
                f"e.g. name='prices.scale'"
            )
        self.name: str | None = name

    def apply(self, func: Any) -> Any:
        target, binding = _unwrap_method(func)
        signature_of(target)  # refuses, now, a callable whose calls cannot be bound
        try:
            identity: str | None = function_identity(target, self.name)
        except UnkeyableArgument:
            if self.key is None:
                raise
            identity = None  # the key= template or callable stands for the function
        if self.key is None:
            build = make_key_builder(
                target, ignore=self.ignore, name=identity, derived=self.name is None
            )
        elif isinstance(self.key, str):
            build = make_template_builder(target, self.key)
        else:
            build = make_callable_builder(self.key)
        counter_names, tags = prepare_counters(target, self.key, self.tags, identity)
        cache = self.cache
        state = CachedState(
            func=target,
            binding=binding,
            build=build,
            cache=cache if isinstance(cache, BaseCache) else None,
            alias=cache if isinstance(cache, str) else DEFAULT_CACHE_ALIAS,
            timeout=self.timeout,
            none_timeout=self.none_timeout,
            version=self.version,
            unless=self.unless,
            safe_keys=self.key is None,
            lock=None if self.lock_lease is None else BackendLock(self.lock_lease),
            counter_names=counter_names,
            tags=tags,
        )
        if identity is not None:
            state.identity = identity  # what statistics are shared under (memokit.stats)
        if binding == "instance":
            state.class_body = _class_body()
        return wrap(state)


def _class_body() -> dict[str, Any] | None:
    """The namespace of the class body that applies the decorator, or None.

    The first frame outside memokit is the decorating code. A class body's
    namespace holds ``__module__`` and ``__qualname__`` and is not the module's.
    """
    frame = sys._getframe(2)
    while frame is not None and frame.f_globals.get("__name__", "").startswith("memokit."):
        frame = frame.f_back  # type: ignore[assignment]  # None ends the loop
    if frame is None:
        return None
    namespace = frame.f_locals
    if (
        namespace is not frame.f_globals
        and isinstance(namespace, dict)
        and "__module__" in namespace
        and "__qualname__" in namespace
    ):
        return namespace
    return None


def _unwrap_method(func: Any) -> tuple[Callable[..., Any], str]:
    """Return the function to call and how it binds: "instance", "class" or "none"."""
    if isinstance(func, classmethod):
        target, binding = func.__func__, "class"
    elif isinstance(func, staticmethod):
        target, binding = func.__func__, "none"
    else:
        target, binding = func, "instance"
    if isinstance(target, property):
        raise TypeError(
            "@cached does not apply to a property; put @cached under @property, "
            "or cache the value per instance with a method"
        )
    if isinstance(target, type) or not callable(target):
        raise TypeError(
            f"@cached applies to a function, coroutine function or method, not {target!r}; "
            f"to give a timeout write @cached(timeout=...)"
        )
    if inspect.isgeneratorfunction(target) or inspect.isasyncgenfunction(target):
        raise TypeError(
            f"@cached cannot cache the generator function {target.__qualname__}: a generator "
            f"can be consumed once only; return a list or a tuple instead"
        )
    if is_cached(target):
        raise TypeError(f"{target!r} is already cached; apply @cached once")
    return target, binding
