"""Invalidation helpers on every storing backend: one call, a function, tags, versions."""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest

import memokit
from memokit import MISSING, BaseCache, CacheInfo, Entry, MemoryCache, cached
from memokit.config import DEFAULT_CACHES
from memokit.counters import (
    COUNTER_VERSION,
    fresh_counter,
    function_counter_key,
    tag_counter_key,
)

T = TypeVar("T")


CacheFactory = Any


class Data:
    """Stands for a database: the functions under test read it; tests change it."""

    def __init__(self) -> None:
        self.version = 1
        self.calls = 0

    def read(self, *parts: object) -> str:
        self.calls += 1
        return ":".join([f"v{self.version}", *map(str, parts)])

    def __cache_key__(self) -> None:
        # Captured by the functions under test, so part of their identity: one
        # store per test, and each test has its own functions.
        return None


@pytest.fixture
def data() -> Data:
    return Data()


@pytest.fixture
def default_cache() -> Iterator[BaseCache]:
    memokit.configure(DEFAULT_CACHES)
    memokit.cache.clear()
    yield memokit.caches["default"]
    memokit.configure(DEFAULT_CACHES)


def count_primitives(cache: BaseCache) -> list[str]:
    """Record the name of every primitive ``cache`` runs from now on.

    Only outermost calls count: a backend's ``_get_many`` may loop over ``_get``.
    """
    calls: list[str] = []
    depth = [0]
    names = ("_get", "_get_many", "_set", "_set_many", "_add", "_add_or_get", "_delete", "_incr")
    for name in (*names, "_touch"):
        original = getattr(cache, name)

        def counted(*args: Any, _name: str = name, _original: Any = original) -> Any:
            if depth[0] == 0:
                calls.append(_name)
            depth[0] += 1
            try:
                return _original(*args)
            finally:
                depth[0] -= 1

        setattr(cache, name, counted)
    return calls


# -- one call ------------------------------------------------------------------------


def test_invalidate_one_call(cache: BaseCache, data: Data) -> None:
    @cached(cache=cache)
    def profile(user_id: int, page: int = 1) -> str:
        return data.read(user_id, page)

    assert profile(5) == "v1:5:1"
    assert profile(6) == "v1:6:1"
    data.version = 2
    assert memokit.invalidate(profile, 5, page=1) is True
    assert memokit.invalidate(profile, 5) is False  # already gone
    assert profile(5) == "v2:5:1"
    assert profile(6) == "v1:6:1"  # untouched
    assert profile.invalidate(6) is True
    assert profile(6) == "v2:6:1"


def test_invalidate_many(cache: BaseCache, data: Data) -> None:
    @cached(cache=cache)
    def profile(user_id: int, page: int = 1) -> str:
        return data.read(user_id, page)

    for user_id in (1, 2, 3):
        profile(user_id)
    profile(1, page=2)
    data.version = 2
    memokit.invalidate_many(profile, [(1,), memokit.call(2, page=1), memokit.call(1, page=2)])
    assert [profile(1), profile(2), profile(3), profile(1, page=2)] == [
        "v2:1:1",
        "v2:2:1",
        "v1:3:1",
        "v2:1:2",
    ]
    with pytest.raises(TypeError, match=r"memokit.call\(5\)"):
        memokit.invalidate_many(profile, [5])  # type: ignore[list-item]  # the mistake


def test_invalidate_many_is_one_backend_operation(make_cache: CacheFactory) -> None:
    cache = make_cache()

    @cached(cache=cache)
    def f(n: int) -> int:
        return n

    f(1)
    f(2)
    deleted: list[list[str]] = []
    original = cache._delete_many

    def record(keys: list[str]) -> None:
        deleted.append(list(keys))
        original(keys)

    cache._delete_many = record  # type: ignore[method-assign]  # recording the primitive
    memokit.invalidate_many(f, [(1,), (2,), (3,)])
    assert len(deleted) == 1
    assert len(deleted[0]) == 3
    assert cache.get(f.key(1)) is None
    assert cache.get(f.key(2)) is None


# -- every call of a function ---------------------------------------------------------


def test_invalidate_all_drops_every_call_of_one_function(cache: BaseCache, data: Data) -> None:
    @cached(cache=cache)
    def profile(user_id: int) -> str:
        return data.read(user_id)

    @cached(cache=cache)
    def other(user_id: int) -> str:
        return data.read("other", user_id)

    assert [profile(1), profile(2), other(1)] == ["v1:1", "v1:2", "v1:other:1"]
    data.version = 2
    before = memokit.get_version(profile)
    assert memokit.invalidate_all(profile) == before + 1
    assert [profile(1), profile(2), other(1)] == ["v2:1", "v2:2", "v1:other:1"]
    data.version = 3
    assert profile.invalidate_all() == before + 2
    assert [profile(1), profile(2)] == ["v3:1", "v3:2"]
    entry = Entry.read(cache, profile.key(1))
    assert entry is not None
    assert entry.versions == (before + 2,)


def test_old_entries_stay_stored_but_are_never_served(cache: BaseCache, data: Data) -> None:
    @cached(cache=cache)
    def f(n: int) -> str:
        return data.read(n)

    f(1)
    memokit.invalidate_all(f)
    # The entry is still there (it expires on its own), but counts as a miss.
    assert Entry.read(cache, f.key(1)) is not None
    data.version = 2
    assert f(1) == "v2:1"
    assert f.cache_info() == CacheInfo(hits=0, misses=2, errors=0)


def test_invalidate_all_on_methods_and_classmethods(
    cache: BaseCache, data: Data, module_level: Any
) -> None:
    @module_level
    class Shop:
        def __init__(self, shop_id: int) -> None:
            self.shop_id = shop_id

        def __cache_key__(self) -> int:
            return self.shop_id

        @cached(cache=cache, tags="shop:{self.shop_id}")
        def price(self, sku: str) -> str:
            return data.read(self.shop_id, sku)

        @cached(cache=cache)
        @classmethod
        def currencies(cls) -> str:
            return data.read(cls.__name__)

    one, two = Shop(1), Shop(2)
    assert [one.price("a"), two.price("a"), Shop.currencies()] == ["v1:1:a", "v1:2:a", "v1:Shop"]
    data.version = 2
    memokit.invalidate_tags("shop:1", cache=cache)
    assert [one.price("a"), two.price("a")] == ["v2:1:a", "v1:2:a"]
    assert memokit.invalidate(two.price, "a") is True
    assert two.price("a") == "v2:2:a"
    data.version = 3
    one.price.invalidate_all()  # the function's counter: every instance
    Shop.currencies.invalidate_all()
    assert [one.price("a"), two.price("a"), Shop.currencies()] == ["v3:1:a", "v3:2:a", "v3:Shop"]


# -- tags --------------------------------------------------------------------------


def test_tags_from_templates_across_functions(cache: BaseCache, data: Data) -> None:
    @cached(cache=cache, tags=("user:{user_id}", "profiles"))
    def profile(user_id: int) -> str:
        return data.read("profile", user_id)

    @cached(cache=cache, tags=["user:{user_id}"])
    def orders(user_id: int, status: str = "open") -> str:
        return data.read("orders", user_id, status)

    def everything() -> list[str]:
        return [profile(5), profile(6), orders(5), orders(6)]

    assert everything() == ["v1:profile:5", "v1:profile:6", "v1:orders:5:open", "v1:orders:6:open"]
    data.version = 2
    memokit.invalidate_tags("user:5", cache=cache)
    assert everything() == ["v2:profile:5", "v1:profile:6", "v2:orders:5:open", "v1:orders:6:open"]
    data.version = 3
    memokit.invalidate_tags("profiles", cache=cache)
    assert everything() == ["v3:profile:5", "v3:profile:6", "v2:orders:5:open", "v1:orders:6:open"]
    data.version = 4
    memokit.invalidate_tags("user:6", "user:5", cache=cache)
    assert everything() == ["v4:profile:5", "v4:profile:6", "v4:orders:5:open", "v4:orders:6:open"]
    memokit.invalidate_tags("nobody-uses-this", cache=cache)  # harmless
    assert data.calls == 4 + 2 + 2 + 4


def test_tags_from_a_callable(cache: BaseCache, data: Data) -> None:
    def tags_of(user_ids: tuple[int, ...]) -> list[str]:
        return [f"user:{user_id}" for user_id in user_ids]

    @cached(cache=cache, tags=tags_of)
    def names(user_ids: tuple[int, ...]) -> str:
        return data.read(*user_ids)

    assert names((1, 2)) == "v1:1:2"
    assert names((3,)) == "v1:3"
    data.version = 2
    memokit.invalidate_tags("user:2", cache=cache)
    assert names((1, 2)) == "v2:1:2"
    assert names((3,)) == "v1:3"


def test_tags_with_characters_memcached_cannot_store(cache: BaseCache, data: Data) -> None:
    @cached(cache=cache, tags="team:{name}")
    def team(name: str) -> str:
        return data.read(name)

    long_name = "x" * 300
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no CacheKeyWarning: counter keys are digested
        for name in ("a b", "ünïcode", long_name):
            assert team(name) == f"v1:{name}"
        data.version = 2
        memokit.invalidate_tags("team:a b", f"team:{long_name}", cache=cache)
        assert [team("a b"), team("ünïcode"), team(long_name)] == [
            "v2:a b",
            "v1:ünïcode",
            f"v2:{long_name}",
        ]
    assert tag_counter_key("team:a b") != tag_counter_key("team:a_b")
    assert len(tag_counter_key(f"team:{long_name}")) < 80


def test_a_versioned_function_and_another_cache_version_share_tags(
    make_cache: CacheFactory, data: Data
) -> None:
    # Two deploys with different VERSIONs (and a function with its own version=)
    # share the counters: an invalidation from either reaches both.
    old, new = make_cache(VERSION=1), make_cache(VERSION=2)

    def make(where: BaseCache) -> Callable[[int], str]:
        @cached(cache=where, tags="user:{user_id}", version=7 if where is new else None)
        def profile(user_id: int) -> str:
            return data.read(user_id)

        return profile

    old_profile, new_profile = make(old), make(new)
    assert old_profile(5) == new_profile(5) == "v1:5"
    data.version = 2
    memokit.invalidate_tags("user:5", cache=new)
    assert old_profile(5) == new_profile(5) == "v2:5"


def test_tags_are_checked_when_decorating() -> None:
    def f(user_id: int) -> int:
        return user_id

    with pytest.raises(ValueError, match=r"'user:\{uid\}' uses \{uid\}.*parameters are user_id"):
        cached(tags="user:{uid}")(f)
    with pytest.raises(ValueError, match="does not name a parameter"):
        cached(tags="user:{0}")(f)
    with pytest.raises(TypeError, match="tags must be a template"):
        cached(tags=5)  # type: ignore[call-overload]  # the mistake under test
    with pytest.raises(TypeError, match="non-empty str templates"):
        cached(tags=["ok", 3])(f)  # type: ignore[list-item]  # the mistake under test

    @cached(tags=lambda user_id: f"user:{user_id}")  # type: ignore[arg-type, return-value]
    def g(user_id: int) -> int:
        return user_id

    with pytest.raises(TypeError, match="must return an iterable of str"):
        g(1)
    with pytest.raises(TypeError, match="tags are non-empty str"):
        memokit.invalidate_tags(5)  # type: ignore[arg-type]  # the mistake under test
    with pytest.raises(TypeError, match="decorated with @cached"):
        memokit.invalidate_all(f)  # type: ignore[arg-type]  # the mistake under test
    with pytest.raises(ValueError, match="positive int delta"):
        memokit.incr_version("x", 0)
    with pytest.raises(TypeError, match="cache= with a tag only"):
        memokit.get_version(g, cache="default")


# -- counters never reset into the past -------------------------------------------------


def test_fresh_counters_are_far_from_zero_and_differ() -> None:
    values = {fresh_counter() for _ in range(100)}
    assert len(values) == 100
    assert all(2**60 < value < 2**62 for value in values)


@pytest.mark.parametrize("which", ["function", "tag"])
def test_a_lost_counter_never_brings_old_entries_back(
    cache: BaseCache, data: Data, which: str
) -> None:
    @cached(cache=cache, tags="user:{user_id}")
    def profile(user_id: int) -> str:
        return data.read(user_id)

    assert profile(1) == "v1:1"
    assert profile(2) == "v1:2"
    data.version = 2
    if which == "function":
        memokit.invalidate_all(profile)
        counter = function_counter_key(profile.__wrapped__)
    else:
        memokit.invalidate_tags("user:1", "user:2", cache=cache)
        counter = tag_counter_key("user:1")
    assert profile(2) == "v2:2"  # recomputed; profile(1)'s old entry stays stored
    assert cache.delete(counter, version=COUNTER_VERSION)  # lost behind memokit's back
    assert profile(1) == "v2:1"  # not the old v1 entry
    assert profile(1) == "v2:1"  # and the recomputed value is a hit again
    calls = data.calls
    cache.set(counter, "garbage", version=COUNTER_VERSION)  # overwritten by someone
    assert profile(1) == "v2:1"
    assert data.calls == calls + 1  # a miss, never an error or an old value
    assert profile(1) == "v2:1"
    assert data.calls == calls + 1


def test_eviction_of_counters_never_serves_an_old_value(make_cache: CacheFactory) -> None:
    # A tiny store that culls all the time: counters are evicted with entries.
    if not make_cache().capabilities.culls:
        pytest.skip("the backend does not cull (a server evicts by memory, not by count)")
    cache = make_cache(OPTIONS={"MAX_ENTRIES": 8, "CULL_FREQUENCY": 2})
    state = {"generation": 0}

    @cached(cache=cache, tags=("group:{n}", "all"))
    def f(n: int) -> tuple[int, int]:
        return (n, state["generation"])

    for step in range(300):
        n = step % 11
        assert f(n) == (n, state["generation"]), step
        if step % 7 == 0:
            state["generation"] += 1
            memokit.invalidate_tags("all", cache=cache)


def test_invalidating_a_missing_counter_creates_it_fresh(cache: BaseCache) -> None:
    assert cache.get(tag_counter_key("new"), version=COUNTER_VERSION) is None
    memokit.invalidate_tags("new", cache=cache)
    created = cache.get(tag_counter_key("new"), version=COUNTER_VERSION)
    assert isinstance(created, int)
    assert created > 2**60
    assert memokit.get_version("new", cache=cache) == created


# -- namespace versions --------------------------------------------------------------------


def test_namespace_versions_bump_and_roll_back(cache: BaseCache, data: Data) -> None:
    @cached(cache=cache, tags="catalog")
    def price(sku: str) -> str:
        return data.read(sku)

    first = memokit.get_version("catalog", cache=cache)
    assert price("a") == "v1:a"
    data.version = 2
    assert memokit.incr_version("catalog", cache=cache) == first + 1
    assert price("b") == "v2:b"
    assert memokit.get_version("catalog", cache=cache) == first + 1
    # Roll back: what was computed under the previous version and is still
    # stored is served again (price("a")); price("b") was computed under the
    # newer version and is not.
    assert memokit.decr_version("catalog", cache=cache) == first
    assert price("a") == "v1:a"
    assert price("b") == "v2:b"
    assert memokit.incr_version("catalog", 5, cache=cache) == first + 5
    assert memokit.incr_version(price) == memokit.get_version(price)


# -- async forms -------------------------------------------------------------------------


def test_async_helpers(cache: BaseCache, data: Data) -> None:
    @cached(cache=cache, tags="user:{user_id}")
    async def profile(user_id: int) -> str:
        await asyncio.sleep(0)
        return data.read(user_id)

    async def main() -> None:
        assert await profile(1) == "v1:1"
        assert await profile(2) == "v1:2"
        data.version = 2
        assert await memokit.ainvalidate(profile, 1) is True
        assert await profile(1) == "v2:1"
        await memokit.ainvalidate_many(profile, [(1,), (2,)])
        data.version = 3
        assert [await profile(1), await profile(2)] == ["v3:1", "v3:2"]
        data.version = 4
        await memokit.ainvalidate_tags("user:2", cache=cache)
        assert [await profile(1), await profile(2)] == ["v3:1", "v4:2"]
        data.version = 5
        version = await memokit.aget_version(profile)
        assert await profile.invalidate_all() == version + 1
        assert [await profile(1), await profile(2)] == ["v5:1", "v5:2"]
        data.version = 6
        assert await memokit.ainvalidate_all(profile) == version + 2
        assert await profile(1) == "v6:1"
        assert await memokit.aincr_version("user:1", cache=cache) > 2**60
        assert await memokit.adecr_version("user:1", cache=cache) > 2**60
        assert await profile.refresh(1) == "v6:1"

    asyncio.run(main())
    # A sync helper works on a coroutine function too (a script invalidating a service).
    data.version = 7
    memokit.invalidate_all(profile)
    assert asyncio.run(profile(1)) == "v7:1"
    assert memokit.invalidate(profile, 1) is True


# -- failures ----------------------------------------------------------------------------


class Unreachable(MemoryCache):
    """A store that answers reads but cannot be written to (a transport error stands in)."""

    def _incr(self, key: str, delta: int) -> Any:
        raise ConnectionError("store unreachable")

    def _delete(self, key: str) -> bool:
        raise ConnectionError("store unreachable")

    def _delete_many(self, keys: list[str]) -> None:
        raise ConnectionError("store unreachable")


def test_an_invalidation_that_cannot_reach_the_backend_raises() -> None:
    cache = Unreachable("unreachable")

    @cached(cache=cache, tags="t")
    def f(n: int) -> int:
        return n

    @cached(cache=cache)
    async def g(n: int) -> int:
        return n

    assert f(1) == 1
    with pytest.raises(ConnectionError):
        f.invalidate(1)
    with pytest.raises(ConnectionError):
        memokit.invalidate(f, 1)
    with pytest.raises(ConnectionError):
        memokit.invalidate_many(f, [(1,)])
    with pytest.raises(ConnectionError):
        f.invalidate_all()
    with pytest.raises(ConnectionError):
        memokit.invalidate_tags("t", cache=cache)
    with pytest.raises(ConnectionError):
        memokit.incr_version("t", cache=cache)
    with pytest.raises(ConnectionError):
        asyncio.run(memokit.ainvalidate_tags("t", cache=cache))
    with pytest.raises(ConnectionError):
        asyncio.run(g.invalidate_all())
    assert f.cache_info().errors == 2  # the helpers on the function count theirs
    assert g.cache_info().errors == 1


# -- round trips --------------------------------------------------------------------------


def test_a_hit_is_one_get_many_and_a_miss_adds_one_write(make_cache: CacheFactory) -> None:
    cache = make_cache()

    @cached(cache=cache, tags=("user:{user_id}", "profiles"))
    def profile(user_id: int) -> int:
        return user_id

    calls = count_primitives(cache)
    profile(1)  # the first call also creates the three counters
    # Three counters, then the entry (add-or-get: one round trip on Redis).
    assert calls == ["_get_many", "_add", "_add", "_add", "_add_or_get"]
    profile.invalidate(1)
    calls.clear()
    assert profile(1) == 1
    assert calls == ["_get_many", "_add_or_get"]  # a miss: one read, one write
    calls.clear()
    assert profile(1) == 1
    assert calls == ["_get_many"]  # a hit: one read for the entry and three counters
    memokit.invalidate_tags("profiles", cache=cache)
    calls.clear()
    assert profile(1) == 1
    assert calls == ["_get_many", "_set"]  # an outdated entry is replaced
    calls.clear()

    @cached(cache=cache)
    def plain(n: int) -> int:
        return n

    plain(1)
    calls.clear()
    plain(1)
    # A store only this process sees keeps the counters read (see below).
    assert calls == ["_get_many" if cache.capabilities.cross_process else "_get"]


def test_missing_counters_are_created_before_the_function_runs(cache: BaseCache) -> None:
    seen: list[Any] = []

    @cached(cache=cache, tags="t", name="counters-first")  # it captures the cache
    def f() -> int:
        seen.append(cache.get(tag_counter_key("t"), MISSING, version=COUNTER_VERSION))
        return 1

    f()
    assert isinstance(seen[0], int)


def test_default_alias_helpers(default_cache: BaseCache, data: Data) -> None:
    @cached(tags="user:{user_id}")
    def profile(user_id: int) -> str:
        return data.read(user_id)

    assert profile(1) == "v1:1"
    data.version = 2
    memokit.invalidate_tags("user:1")  # the default alias
    assert profile(1) == "v2:1"
    assert memokit.get_version("user:1") == memokit.get_version("user:1", cache=default_cache)


def test_refresh_stores_under_the_current_versions(cache: BaseCache, data: Data) -> None:
    @cached(cache=cache, tags="t")
    def f(n: int) -> str:
        return data.read(n)

    f(1)
    data.version = 2
    memokit.invalidate_tags("t", cache=cache)
    assert f.refresh(1) == "v2:1"
    calls = data.calls
    assert f(1) == "v2:1"  # a hit: stored under the counters read before running
    assert data.calls == calls


def test_same_tag_from_a_template_and_a_fixed_tag_is_read_once(cache: BaseCache) -> None:
    @cached(cache=cache, tags=("all", "{name}"))
    def f(name: str) -> str:
        return name

    calls = count_primitives(cache)
    assert f("all") == "all"
    assert f("all") == "all"
    memokit.invalidate_tags("all", cache=cache)
    assert f("all") == "all"
    assert calls.count("_get_many") == 3


def prefixed_key(key: str, key_prefix: str, version: int) -> str:
    """A KEY_FUNCTION other than Django's: the read plan must go through it."""
    return f"custom|{key_prefix}|{version}|{key}"


def test_a_custom_key_function_and_prefix(make_cache: CacheFactory, data: Data) -> None:
    cache = make_cache(KEY_FUNCTION=prefixed_key, KEY_PREFIX="app")

    @cached(cache=cache, tags="user:{user_id}")
    def profile(user_id: int) -> str:
        return data.read(user_id)

    assert profile(1) == "v1:1"
    assert profile(1) == "v1:1"
    assert data.calls == 1
    data.version = 2
    memokit.invalidate_tags("user:1", cache=cache)
    assert profile(1) == "v2:1"
    data.version = 3
    profile.invalidate_all()
    assert profile(1) == "v3:1"
    made = cache.make_key(tag_counter_key("user:1"), COUNTER_VERSION)
    assert made.startswith("custom|app|0|memokit.tag:")


def test_a_store_only_this_process_sees_reads_counters_after_changes_only(
    make_cache: CacheFactory, data: Data
) -> None:
    cache = make_cache()

    @cached(cache=cache, tags="catalog")
    def price(sku: str) -> str:
        return data.read(sku)

    calls = count_primitives(cache)
    price("a")
    price("a")
    calls.clear()
    assert price("a") == "v1:a"
    if cache.capabilities.cross_process:
        assert calls == ["_get_many"]  # another process may have invalidated
        return
    # Only this process changes this store's counters: a hit reads the entry alone,
    # or nothing through the fast index (memokit.fastindex).
    assert calls in ([], ["_get"])
    data.version = 2
    memokit.invalidate_tags("catalog", cache=cache)
    calls.clear()
    assert price("a") == "v2:a"
    assert calls == ["_get_many", "_set"]  # counters read again after the change
    calls.clear()
    assert price("a") == "v2:a"
    assert calls == ["_get"]
    # Counters lost behind memokit's back (evicted, cleared) change nothing that
    # was valid: the entries computed under the values kept are still current.
    cache.delete(tag_counter_key("catalog"), version=COUNTER_VERSION)
    assert price("a") == "v2:a"
    data.version = 3
    memokit.invalidate_tags("catalog", cache=cache)  # recreates the counter, fresh
    assert price("a") == "v3:a"
    cache.clear()
    assert price("a") == "v3:a"
    data.version = 4
    price.invalidate_all()
    assert price("a") == "v4:a"
    data.version = 5
    memokit.invalidate_tags("catalog", cache=make_cache())  # another instance, same store
    assert price("a") == "v5:a"


def test_functions_that_store_nothing(cache: BaseCache, data: Data) -> None:
    @cached(cache=cache, timeout=0, tags="t")
    def never(n: int) -> str:
        return data.read(n)

    @cached(cache=memokit.DummyCache(), tags="t")
    def dummy(n: int) -> str:
        return data.read(n)

    assert [never(1), never(1), dummy(1), dummy(1)] == ["v1:1"] * 4
    assert data.calls == 4
    assert cache.get(tag_counter_key("t"), version=COUNTER_VERSION) is None  # none created
    assert isinstance(never.invalidate_all(), int)
    assert isinstance(dummy.invalidate_all(), int)
    memokit.invalidate_tags("t", cache=memokit.DummyCache())


def test_helpers_follow_the_switches(default_cache: BaseCache, data: Data) -> None:
    from memokit.testing import isolated_cache

    @cached(tags="user:{user_id}")
    def profile(user_id: int) -> str:
        return data.read(user_id)

    with isolated_cache() as isolated:
        assert profile(1) == "v1:1"
        data.version = 2
        memokit.invalidate_tags("user:1")  # where the decorators are routed now
        assert profile(1) == "v2:1"
        assert isolated.get(tag_counter_key("user:1"), version=COUNTER_VERSION) is not None
    assert default_cache.get(tag_counter_key("user:1"), version=COUNTER_VERSION) is None
    with memokit.caching_disabled():
        memokit.invalidate_tags("user:1")  # reaches the dummy cache: nothing to do
        profile.invalidate_all()
