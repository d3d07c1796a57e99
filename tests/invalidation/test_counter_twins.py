"""The counters' algorithms are written once: sync and async answer alike on every backend.

Each scenario runs through the sync helpers and through their async twins, and
both must see the same thing: a missing counter created fresh, a counter
overwritten by something else replaced (never an error, never an old value).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

import memokit
from memokit import BaseCache, cached
from memokit.counters import COUNTER_VERSION, fresh_counter, tag_counter_key

T = TypeVar("T")


def _sync(name: str) -> Callable[..., Any]:
    return getattr(memokit, name)  # type: ignore[no-any-return]  # a memokit helper


def _async(name: str) -> Callable[..., Any]:
    helper: Callable[..., Awaitable[Any]] = getattr(memokit, f"a{name}")
    return lambda *args, **kwargs: asyncio.run(helper(*args, **kwargs))


@pytest.fixture(params=["sync", "async"])
def helper(request: pytest.FixtureRequest) -> Callable[[str], Callable[..., Any]]:
    return _sync if request.param == "sync" else _async


def test_a_missing_counter_is_created_fresh(
    cache: BaseCache, helper: Callable[[str], Callable[..., Any]]
) -> None:
    before = fresh_counter() >> 20  # milliseconds; the low bits are random
    version = helper("get_version")("t", cache=cache)
    assert version >> 20 >= before  # a fresh value, not 0 or 1
    assert helper("get_version")("t", cache=cache) == version
    assert cache.get(tag_counter_key("t"), version=COUNTER_VERSION) == version
    assert cache.delete(tag_counter_key("t"), version=COUNTER_VERSION)
    bumped = helper("incr_version")("t", cache=cache)
    assert bumped >> 20 >= before
    assert bumped != version


def test_a_counter_overwritten_by_something_else_is_replaced(
    cache: BaseCache, helper: Callable[[str], Callable[..., Any]]
) -> None:
    cache.set(tag_counter_key("t"), "garbage", version=COUNTER_VERSION)
    version = helper("get_version")("t", cache=cache)
    assert type(version) is int
    assert cache.get(tag_counter_key("t"), version=COUNTER_VERSION) == version
    cache.set(tag_counter_key("t"), "garbage", version=COUNTER_VERSION)
    bumped = helper("incr_version")("t", cache=cache)
    assert type(bumped) is int
    assert helper("get_version")("t", cache=cache) == bumped


@pytest.mark.parametrize("twin", ["sync", "async"])
def test_a_read_with_a_damaged_tag_counter_is_a_miss(cache: BaseCache, twin: str) -> None:
    calls: list[int] = []

    def compute(x: int) -> int:
        calls.append(x)
        return x

    if twin == "sync":
        read: Callable[[int], int] = cached(cache=cache, tags="t:{x}")(compute)
    else:

        @cached(cache=cache, tags="t:{x}")
        async def acompute(x: int) -> int:
            return compute(x)

        def read(x: int) -> int:
            return asyncio.run(acompute(x))

    assert [read(1), read(1)] == [1, 1]
    cache.set(tag_counter_key("t:1"), "garbage", version=COUNTER_VERSION)
    assert [read(1), read(1)] == [1, 1]
    assert calls == [1, 1]  # one miss for the replaced counter, then hits again
