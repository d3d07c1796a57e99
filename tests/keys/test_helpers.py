"""Helpers speak plainly; decoration refuses what it cannot identify; keys fit every backend."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import warnings
from typing import Any

import pytest

import memokit
from memokit import ArgumentTypeWarning, BaseCache, InvalidCacheKey, UnkeyableArgument, cached
from memokit.keybuilders import MAX_KEY_LENGTH

CacheFactory = Any

# -- binding errors: Python's own message -------------------------------------------


def price(sku: str) -> int:
    return len(sku)


class Shop:
    def __cache_key__(self) -> int:
        return 1

    @cached
    def price(self, sku: str) -> int:
        return len(sku)


def test_calls_and_helpers_that_do_not_bind_raise_pythons_message(store: BaseCache) -> None:
    f = cached(cache=store)(price)
    expected = r"^price\(\) takes 1 positional argument but 2 were given$"
    for attempt in (f, f.key, f.invalidate, f.refresh):
        with pytest.raises(TypeError, match=expected):
            attempt("a", "b")  # type: ignore[call-arg]  # the mistake under test
    with pytest.raises(TypeError, match=r"^price\(\) got an unexpected keyword argument 'x'$"):
        f.key(x=1)  # type: ignore[call-arg]  # the mistake under test
    with pytest.raises(TypeError, match=r"^price\(\) missing 1 required positional argument"):
        f.invalidate()  # type: ignore[call-arg]  # the mistake under test
    expected = r"^Shop.price\(\) takes 2 positional arguments but 3 were given$"
    with pytest.raises(TypeError, match=expected):
        Shop().price("a", "b")  # type: ignore[call-arg]  # the mistake under test
    with pytest.raises(TypeError, match=expected):
        Shop().price.key("a", "b")  # type: ignore[call-arg]  # the mistake under test


def test_async_helpers_that_do_not_bind_raise_pythons_message(store: BaseCache) -> None:
    @cached(cache=store)
    async def fetch(item_id: int) -> int:
        return item_id

    with pytest.raises(TypeError, match=r"fetch\(\) takes 1 positional argument but 2 were"):
        asyncio.run(fetch.invalidate(1, 2))  # type: ignore[call-arg]  # the mistake under test


# -- annotation warnings (key and invalidate only) ----------------------------------


def test_key_and_invalidate_warn_when_a_value_contradicts_the_annotation(
    store: BaseCache,
) -> None:
    @cached(cache=store)
    def profile(user_id: int, note: str | None = None, ratio: float = 1.0) -> str:
        return f"{user_id}"

    profile(5)
    with pytest.warns(ArgumentTypeWarning, match="argument 'user_id' is '5'") as caught:
        assert profile.invalidate("5") is False  # type: ignore[arg-type]  # under test
    assert caught[0].filename == __file__  # points at the caller's line
    with pytest.warns(ArgumentTypeWarning, match="'user_id'"):
        profile.key("5")  # type: ignore[arg-type]  # the mistake under test
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert profile.invalidate(5) is True  # the right type: silent
        profile.key(5, None, 2)  # an int is a fine float (PEP 484)
        profile("6")  # type: ignore[arg-type]  # the call path never checks


def test_async_invalidate_warns_too(store: BaseCache) -> None:
    @cached(cache=store)
    async def fetch(item_id: int, tags: list[str] | None = None) -> int:
        return item_id

    with pytest.warns(ArgumentTypeWarning, match="'item_id'"):
        asyncio.run(fetch.invalidate("1"))  # type: ignore[arg-type]  # the mistake under test
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        asyncio.run(fetch.invalidate(1, ["a"]))  # generic annotations are not checked


# -- decoration-time refusals and identities ----------------------------------------


def add(a: int, b: int) -> int:
    return a + b


@dataclasses.dataclass(frozen=True)
class Multiplier:
    factor: int

    def __call__(self, x: int) -> int:
        return x * self.factor


class Opaque:
    def __call__(self, x: int) -> int:
        return x


def test_partials_and_callable_objects(store: BaseCache) -> None:
    with pytest.raises(UnkeyableArgument, match=r"(?i)wrap it in a def") as refused:
        cached(cache=store)(functools.partial(int, base=2))
    assert not isinstance(refused.value, ValueError)  # not inspect's error
    one, two = (cached(cache=store)(functools.partial(add, n)) for n in (1, 2))
    assert one(b=5) == 6
    assert two(b=5) == 7  # a partial is its function plus its arguments
    double, triple = cached(cache=store)(Multiplier(2)), cached(cache=store)(Multiplier(3))
    assert double(4) == 8
    assert triple(4) == 12  # a callable object is its class plus its key
    with pytest.raises(UnkeyableArgument, match="Opaque"):
        cached(cache=store)(Opaque())
    assert cached(cache=store, key="opaque:{x}")(Opaque())(3) == 3  # key= stands for it


def test_name_must_be_a_non_empty_str() -> None:
    for bad in ("", "  ", 3):
        with pytest.raises(TypeError, match="name must be a non-empty str"):
            cached(name=bad)  # type: ignore[call-overload]  # the mistake under test


def test_refusals_are_type_errors_exported_at_the_top() -> None:
    assert issubclass(memokit.UnkeyableArgument, TypeError)
    assert issubclass(memokit.UnkeyableArgument, memokit.MemokitError)
    assert memokit.UnkeyableArgument is memokit.exceptions.UnkeyableArgument


# -- keys memokit makes fit every backend --------------------------------------------

LONG_PREFIX = "tenant-0123456789abcdef0123456789abcdef-prod-47"
assert len(LONG_PREFIX) == 47


def test_lock_and_counter_keys_fit_with_a_47_character_prefix(make_cache: CacheFactory) -> None:
    # On memcached the decorated call raised InvalidCacheKey on 54ac4a8: the lock
    # key was the entry's key, already sized to the limit, plus "~lock".
    cache = make_cache(KEY_PREFIX=LONG_PREFIX)

    @cached(cache=cache, lock_lease=5, tags=["t" * 150, "team:{team}"])
    def members(team: str) -> int:
        return len(team)

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # not even a CacheKeyWarning
        for size in range(150, 200):
            team = "x" * size  # keys right at the limit and past it (digested)
            assert len(members.key(team)) <= MAX_KEY_LENGTH - len("~lock")
            assert members(team) == size
            assert members(team) == size
        memokit.invalidate_tags("t" * 150, cache=cache)
        assert members("x" * 199) == 199


def test_a_callers_long_key_gets_a_valid_lock_key(make_cache: CacheFactory) -> None:
    cache = make_cache(KEY_PREFIX=LONG_PREFIX)

    @cached(cache=cache, lock_lease=5, key="report:{day}")
    def report(day: str) -> str:
        return day

    day = "d" * (250 - len(LONG_PREFIX) - len(":1:report:"))  # the made key is 250 long
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert report(day) == day  # the lock key is digested, never over the limit
    # A caller's key keeps Django's rules: memcached raises, the others warn.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(InvalidCacheKey if cache.capabilities.strict_keys else Warning):
            report(day + "x")
