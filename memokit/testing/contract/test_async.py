"""Every async twin gives the same results as its sync twin."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from memokit import BaseCache

CacheFactory = Any

# A script of calls; each runs through the sync API on one cache and through the
# async API on another (same store, other prefix), and the results must match.
SCRIPT: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = [
    ("get", ("a",), {}),
    ("get", ("a", "default"), {}),
    ("set", ("a", 1), {}),
    ("get", ("a",), {}),
    ("add", ("a", 2), {}),
    ("add", ("b", None), {}),
    ("add", ("zero", 1, 0), {}),
    ("get", ("b", "default"), {}),
    ("has_key", ("b",), {}),
    ("has_key", ("nope",), {}),
    ("get_or_set", ("c", 3), {}),
    ("get_or_set", ("c", 4), {}),
    ("get_or_set", ("d", None), {}),
    ("incr", ("a",), {}),
    ("incr", ("a", 10), {}),
    ("decr", ("a", 5), {}),
    ("touch", ("a", 100), {}),
    ("touch", ("a", None), {}),
    ("touch", ("nope", 10), {}),
    ("set_many", ({"m1": 1, "m2": [2]},), {}),
    ("get_many", (["m1", "m2", "m3"],), {}),
    ("delete_many", (["m1"],), {}),
    ("get_many", (["m1", "m2"],), {}),
    ("set", ("v", "x"), {"version": 2}),
    ("incr_version", ("v",), {"version": 2}),
    ("get", ("v",), {"version": 3}),
    ("decr_version", ("v",), {"version": 3}),
    ("get", ("v",), {"version": 2}),
    ("delete", ("a",), {}),
    ("delete", ("a",), {}),
    ("touch", ("c", 0), {}),
    ("get", ("c",), {}),
    ("set", ("e", "gone", 0), {}),
    ("get", ("e",), {}),
]

ERRORS: list[tuple[str, tuple[Any, ...]]] = [
    ("incr", ("missing",)),
    ("decr", ("missing",)),
    ("incr_version", ("missing",)),
    ("decr_version", ("missing",)),
]


def run_sync(cache: BaseCache) -> list[Any]:
    results = []
    for name, args, kwargs in SCRIPT:
        try:
            results.append(getattr(cache, name)(*args, **kwargs))
        except Exception as exc:
            results.append(("raised", type(exc), str(exc)))
    return results


async def run_async(cache: BaseCache) -> list[Any]:
    results = []
    for name, args, kwargs in SCRIPT:
        try:
            results.append(await getattr(cache, "a" + name)(*args, **kwargs))
        except Exception as exc:
            results.append(("raised", type(exc), str(exc)))
    return results


def test_async_twins_match_sync(make_any_cache: CacheFactory) -> None:
    sync_cache = make_any_cache(KEY_PREFIX="sync")
    async_cache = make_any_cache(KEY_PREFIX="async")
    expected = run_sync(sync_cache)
    assert asyncio.run(run_async(async_cache)) == expected
    assert sync_cache.get_many(["a", "b", "c", "d", "m2"]) == async_cache.get_many(
        ["a", "b", "c", "d", "m2"]
    )


@pytest.mark.parametrize(("name", "args"), ERRORS)
def test_async_twins_raise_like_sync(make_any_cache: CacheFactory, name: str, args: Any) -> None:
    cache = make_any_cache()
    with pytest.raises(ValueError, match="Key 'missing' not found"):
        getattr(cache, name)(*args)

    async def call() -> None:
        await getattr(cache, "a" + name)(*args)

    with pytest.raises(ValueError, match="Key 'missing' not found"):
        asyncio.run(call())


def test_aclear_and_aclose(cache: BaseCache) -> None:
    async def scenario() -> Any:
        await cache.aset("key", 1)
        await cache.aclear()
        await cache.aclose()
        return await cache.aget("key")

    assert asyncio.run(scenario()) is None


def test_aclose_calls_close(cache: BaseCache, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(cache, "close", lambda **kwargs: calls.append(kwargs))
    asyncio.run(cache.aclose(reason="test"))
    assert calls == [{"reason": "test"}]


def test_async_expiry_under_frozen_time(cache: BaseCache, clock: Any) -> None:
    async def scenario() -> tuple[Any, Any]:
        await cache.aset("key", "value", 1)
        before = await cache.aget("key")
        clock.advance(2)
        await asyncio.sleep(0)
        return before, await cache.aget("key")

    assert asyncio.run(scenario()) == ("value", None)


def test_aincr_keeps_the_expiry(cache: BaseCache, clock: Any) -> None:
    async def scenario() -> Any:
        await cache.aset("n", 1, 4)  # see test_incr_keeps_the_expiry for the margins
        assert await cache.aincr("n") == 2
        clock.advance(2)
        assert await cache.aget("n") == 2
        clock.advance(3)
        return await cache.aget("n")

    assert asyncio.run(scenario()) is None


# Each call is cancelled after 0, 1, 2 ... turns of the event loop, so that some
# cancellation lands while the backend's I/O is in flight, in every state of it.
# Python 3.11's asyncio.wait_for (which redis-py's async client puts around each
# write) returned the result of a write that finished in the same turn as the
# cancellation and dropped the cancellation: on Redis the call then completed as if
# never cancelled (seen for 1-3 turns, every time).
CANCELLED_CALLS: list[tuple[str, tuple[Any, ...]]] = [
    ("aget", ("k",)),
    ("aset", ("k", 2)),
    ("aadd", ("new", 3)),
    ("aincr", ("n",)),
    ("aget_many", (["k", "n"],)),
    ("aset_many", ({"m": 1},)),
    ("adelete", ("gone",)),
    ("ahas_key", ("k",)),
    ("atouch", ("k", 60)),
    ("aget_or_set", ("k", 4)),
]


@pytest.mark.parametrize(("method", "args"), CANCELLED_CALLS, ids=[c[0] for c in CANCELLED_CALLS])
def test_a_cancelled_call_raises_cancelled_error(
    cache: BaseCache, method: str, args: tuple[Any, ...]
) -> None:
    cache.set("k", 1)
    cache.set("n", 1)

    async def main() -> list[int]:
        lost = []
        for turns in range(12):
            call = asyncio.ensure_future(getattr(cache, method)(*args))
            for _ in range(turns):
                await asyncio.sleep(0)
            if not call.cancel():  # already done: nothing to lose
                await call
                continue
            try:
                await call
            except asyncio.CancelledError:
                pass
            else:
                lost.append(turns)
        return lost

    assert asyncio.run(main()) == []
