"""Invalidation helpers: one call, many calls, a function, tags, namespace versions.

Built on the counters of :mod:`memokit.counters`, so that every helper works the
same on every backend, needs no key scan, and is seen at once by every process
sharing the backend. Each has an ``a``-prefixed async twin.

Each pair is one helper: its arguments are checked and turned into the cache,
keys or counter to touch by the same plain function, and only the last step,
the I/O, differs (``delete`` or ``adelete``, ``bump`` or ``abump``).

Reads fail open elsewhere (the decorator's policy); every helper here raises
when the backend cannot be reached, since an invalidation that silently did
nothing would serve old values.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, ParamSpec, TypeAlias

from .backends.base import BaseCache
from .config import DEFAULT_CACHE_ALIAS, DefaultCacheProxy, caches
from .counters import (
    abump,
    aread_counter,
    bump,
    read_counter,
    tag_counter_key,
)
from .fnstate import CachedState
from .switches import GATE, helper_cache

if TYPE_CHECKING:
    # Typing only: the decorated callables (memokit.wrappers) call these helpers.
    from .wrappers import _Cached

P = ParamSpec("P")


def _state(fn: object, helper: str) -> CachedState:
    # What @cached makes carries its CachedState (see memokit.wrappers); asking
    # for it here keeps this module below the wrappers in the import order.
    state = getattr(fn, "_state", None)
    if not isinstance(state, CachedState):
        raise TypeError(f"memokit.{helper}() takes a function decorated with @cached, not {fn!r}")
    return state


def _cache(cache: str | BaseCache) -> BaseCache:
    switched = helper_cache() if GATE.on else None
    if switched is not None:
        # use_cache()/isolated_cache() route this context's decorators to one cache:
        # their tags live there. caching_disabled() routes nothing here (see switches).
        return switched
    if isinstance(cache, BaseCache):
        return cache
    if isinstance(cache, DefaultCacheProxy):
        return caches[DEFAULT_CACHE_ALIAS]
    if isinstance(cache, str):
        return caches[cache]
    raise TypeError(
        f"cache must be an alias such as 'default' or a memokit cache instance, not {cache!r}"
    )


def _tags(tags: tuple[object, ...]) -> list[str]:
    names = []
    for tag in tags:
        if not isinstance(tag, str) or not tag:
            raise TypeError(
                f"tags are non-empty str such as 'user:5', not {tag!r}; to pass a list, "
                f"unpack it: invalidate_tags(*tags)"
            )
        names.append(tag_counter_key(tag))
    return list(dict.fromkeys(names))


Target: TypeAlias = "str | _Cached[Any, Any]"
"""A namespace: a tag name, or a cached function (its per-function counter)."""


def _counter_of(
    target: object, helper: str, cache: str | BaseCache | None
) -> tuple[BaseCache, str]:
    if isinstance(target, str):
        if not target:
            raise ValueError(f"memokit.{helper}() needs a non-empty tag name")
        return _cache(DEFAULT_CACHE_ALIAS if cache is None else cache), tag_counter_key(target)
    if cache is not None:
        raise TypeError(
            f"memokit.{helper}() takes cache= with a tag only; a cached function uses its own cache"
        )
    return _function_counter(target, helper)


def invalidate(fn: _Cached[P, Any], /, *args: P.args, **kwargs: P.kwargs) -> bool:
    """Drop the entry of one call of a cached function; return whether there was one.

    Works for coroutine functions too (with the sync cache API): a script can
    invalidate what an async service caches.
    """
    target, key, version = _one_call(fn, "invalidate", args, kwargs)
    return target.delete(key, version)


async def ainvalidate(fn: _Cached[P, Any], /, *args: P.args, **kwargs: P.kwargs) -> bool:
    """Async :func:`invalidate`."""
    target, key, version = _one_call(fn, "ainvalidate", args, kwargs)
    return await target.adelete(key, version)


def _one_call(
    fn: _Cached[Any, Any], helper: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[BaseCache, str, int | None]:
    """The cache, key and version of one call's entry."""
    state = _state(fn, helper)
    return state.target(), state.build(fn._args(args), kwargs), state.version


def _many_calls(
    fn: _Cached[Any, Any], helper: str, calls: Iterable[object]
) -> tuple[BaseCache, list[str], int | None]:
    """The cache, keys and version of many calls' entries."""
    state = _state(fn, helper)
    keys = []
    for call in calls:
        if isinstance(call, Call):
            args, kwargs = call.args, call.kwargs
        elif isinstance(call, tuple):
            args, kwargs = call, {}
        else:
            raise TypeError(
                f"each call is a tuple of positional arguments or memokit.call(...), "
                f"not {call!r}; for f(5) write (5,) or memokit.call(5)"
            )
        keys.append(state.build(fn._args(args), dict(kwargs)))
    return state.target(), keys, state.version


class Call:
    """The arguments of one call, for :func:`invalidate_many`: ``memokit.call(5, page=2)``."""

    __slots__ = ("args", "kwargs")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args
        self.kwargs = kwargs

    def __repr__(self) -> str:
        parts = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"call({', '.join(parts)})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Call) and (self.args, self.kwargs) == (other.args, other.kwargs)

    __hash__ = None  # type: ignore[assignment]  # holds dicts, so unhashable like them


call = Call
"""``memokit.call(*args, **kwargs)``: one call's arguments, for :func:`invalidate_many`."""


def invalidate_many(fn: _Cached[Any, Any], /, calls: Iterable[Call | tuple[Any, ...]]) -> None:
    """Drop the entries of many calls with one ``delete_many``.

    Each call is a tuple of positional arguments or ``memokit.call(*args, **kwargs)``.
    """
    target, keys, version = _many_calls(fn, "invalidate_many", calls)
    target.delete_many(keys, version)


async def ainvalidate_many(
    fn: _Cached[Any, Any], /, calls: Iterable[Call | tuple[Any, ...]]
) -> None:
    """Async :func:`invalidate_many`."""
    target, keys, version = _many_calls(fn, "ainvalidate_many", calls)
    await target.adelete_many(keys, version)


def invalidate_all(fn: _Cached[Any, Any], /) -> int:
    """Invalidate every call of a cached function, in every process; return its new version."""
    return bump(*_function_counter(fn, "invalidate_all"), 1)


async def ainvalidate_all(fn: _Cached[Any, Any], /) -> int:
    """Async :func:`invalidate_all`."""
    return await abump(*_function_counter(fn, "ainvalidate_all"), 1)


def _function_counter(fn: object, helper: str) -> tuple[BaseCache, str]:
    """The cache and name of a cached function's counter."""
    state = _state(fn, helper)
    return state.target(), state.counter_names[0]


def invalidate_tags(*tags: str, cache: str | BaseCache = DEFAULT_CACHE_ALIAS) -> None:
    """Invalidate every entry, of any function, that carries one of ``tags``.

    One ``incr`` per tag (plus an ``add`` for a tag whose counter is missing).
    """
    target = _cache(cache)
    for name in _tags(tags):
        bump(target, name, 1)


async def ainvalidate_tags(*tags: str, cache: str | BaseCache = DEFAULT_CACHE_ALIAS) -> None:
    """Async :func:`invalidate_tags`."""
    target = _cache(cache)
    for name in _tags(tags):
        await abump(target, name, 1)


def get_version(target: Target, /, *, cache: str | BaseCache | None = None) -> int:
    """Return the stored version of a namespace: a tag, or a cached function's counter."""
    where, name = _counter_of(target, "get_version", cache)
    return read_counter(where, name)


async def aget_version(target: Target, /, *, cache: str | BaseCache | None = None) -> int:
    """Async :func:`get_version`."""
    where, name = _counter_of(target, "aget_version", cache)
    return await aread_counter(where, name)


def incr_version(target: Target, /, delta: int = 1, *, cache: str | BaseCache | None = None) -> int:
    """Move a namespace (a tag or a cached function) to a new version; return it.

    Entries computed under the previous version stop being served, in every
    process. ``incr_version("catalog")`` is ``invalidate_tags("catalog")``.
    """
    return bump(*_version_move(target, delta, "incr_version", cache, 1))


async def aincr_version(
    target: Target, /, delta: int = 1, *, cache: str | BaseCache | None = None
) -> int:
    """Async :func:`incr_version`."""
    return await abump(*_version_move(target, delta, "aincr_version", cache, 1))


def decr_version(target: Target, /, delta: int = 1, *, cache: str | BaseCache | None = None) -> int:
    """Move a namespace back by ``delta`` versions; return the version now current.

    Entries computed under that version and still stored are served again:
    a rollback. When the counter was lost meanwhile, there is nothing to go
    back to and the namespace starts afresh instead (never onto old values).
    """
    return bump(*_version_move(target, delta, "decr_version", cache, -1))


async def adecr_version(
    target: Target, /, delta: int = 1, *, cache: str | BaseCache | None = None
) -> int:
    """Async :func:`decr_version`."""
    return await abump(*_version_move(target, delta, "adecr_version", cache, -1))


def _version_move(
    target: object, delta: object, helper: str, cache: str | BaseCache | None, sign: int
) -> tuple[BaseCache, str, int]:
    """The cache and counter name a version helper moves, and by how much."""
    if type(delta) is not int or delta < 1:
        raise ValueError(f"memokit.{helper}() takes a positive int delta, not {delta!r}")
    where, name = _counter_of(target, helper, cache)
    return where, name, sign * delta
