"""@cached and its counters on a cache that makes or validates keys its own way.

The decorator layer skips key making and validation only where the cache says
the made key is a plain concatenation (``BaseCache._plain_key_prefix``); a
``KEY_FUNCTION``, a ``make_key`` or ``validate_key`` override must be honoured on
every read, hit or miss, sync or async, and by every invalidation helper.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import memokit
from memokit import BaseCache, cached
from memokit.counters import COUNTER_VERSION, function_counter_key, tag_counter_key

CacheFactory = Any


def custom_key(key: Any, key_prefix: str, version: Any) -> str:
    """A ``KEY_FUNCTION`` whose keys differ from Django's default ones."""
    return f"custom.{key_prefix}.{version}.{key}"


def _subclass(base: type[BaseCache], how: str, seen: list[str]) -> type[BaseCache]:
    if how == "make_key":

        def make_key(self: BaseCache, key: Any, version: int | None = None) -> str:
            return "sub." + base.make_key(self, key, version)

        return type(f"MakeKey{base.__name__}", (base,), {"make_key": make_key})

    def validate_key(self: BaseCache, key: str) -> None:
        seen.append(key)
        base.validate_key(self, key)

    return type(f"ValidateKey{base.__name__}", (base,), {"validate_key": validate_key})


class Calls(list[int]):
    """The arguments a function under test was called with; not part of its identity."""

    def __cache_key__(self) -> None:
        return None


class Custom:
    """A cache with custom keys, a plain one on the same store, and what was validated."""

    def __init__(self, cache: BaseCache, plain: BaseCache, seen: list[str]) -> None:
        self.cache, self.plain, self.seen = cache, plain, seen


@pytest.fixture(params=["KEY_FUNCTION", "make_key", "validate_key"])
def custom(request: pytest.FixtureRequest, make_cache: CacheFactory) -> Iterator[Custom]:
    plain = make_cache(KEY_PREFIX="p", VERSION=2)
    seen: list[str] = []
    if request.param == "KEY_FUNCTION":
        cache = make_cache(KEY_PREFIX="p", VERSION=2, KEY_FUNCTION=f"{__name__}.custom_key")
        yield Custom(cache, plain, seen)
        return
    config = {**make_cache.config, "BACKEND": _subclass(type(plain), request.param, seen)}
    cache = memokit.create_cache(config)
    try:
        yield Custom(cache, plain, seen)
    finally:
        cache.close()


def _function(custom: Custom, calls: Calls, **options: Any) -> Callable[[int], int]:
    @cached(cache=custom.cache, **options)
    def double(x: int) -> int:
        calls.append(x)
        return 2 * x

    return double


def _stored_where_the_cache_makes_keys(custom: Custom, fn: Any, *args: int) -> None:
    key = fn.key(*args)
    made = custom.cache.make_key(key)
    assert custom.cache.has_key(key), f"no entry at {made!r}"
    counter = function_counter_key(fn.__wrapped__)
    assert type(custom.cache.get(counter, version=COUNTER_VERSION)) is int
    if custom.cache.make_key(key) != custom.plain.make_key(key):
        # Not where Django's default key function would have put them.
        assert custom.plain.get(key) is None
        assert custom.plain.get(counter, version=COUNTER_VERSION) is None


def test_cached_reads_and_writes_through_the_caches_own_keys(custom: Custom) -> None:
    calls = Calls()
    double = _function(custom, calls)
    assert [double(7), double(7), double(7)] == [14, 14, 14]
    assert calls == [7]
    _stored_where_the_cache_makes_keys(custom, double, 7)
    if custom.seen:
        # A validate_key override sees every key read, hits included.
        before = len(custom.seen)
        double(7)
        assert custom.cache.make_key(double.key(7)) in custom.seen[before:]


def test_counters_use_the_caches_own_keys(custom: Custom) -> None:
    calls = Calls()
    double = _function(custom, calls, tags=["t"])
    double(3)
    memokit.invalidate_all(double)
    double(3)
    memokit.invalidate_tags("t", cache=custom.cache)
    double(3)
    assert calls == [3, 3, 3]
    assert double(3) == 6
    assert calls == [3, 3, 3]
    _stored_where_the_cache_makes_keys(custom, double, 3)
    tag = tag_counter_key("t")
    assert type(custom.cache.get(tag, version=COUNTER_VERSION)) is int
    version = memokit.get_version("t", cache=custom.cache)
    assert memokit.incr_version("t", cache=custom.cache) == version + 1
    assert custom.cache.get(tag, version=COUNTER_VERSION) == version + 1


def test_async_cached_uses_the_caches_own_keys(custom: Custom) -> None:
    calls = Calls()

    @cached(cache=custom.cache)
    async def double(x: int) -> int:
        calls.append(x)
        return 2 * x

    async def scenario() -> None:
        assert [await double(4), await double(4)] == [8, 8]
        await memokit.ainvalidate_all(double)
        assert await double(4) == 8
        assert await memokit.aincr_version(double) > 0
        assert await double(4) == 8

    asyncio.run(scenario())
    assert calls == [4, 4, 4]
    _stored_where_the_cache_makes_keys(custom, double, 4)
