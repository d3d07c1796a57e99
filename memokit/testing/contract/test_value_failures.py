"""Value failures concern one key: unreadable entries heal, long timeouts are kept.

A *value* failure (an entry that cannot be decoded, a value the backend cannot
hold, a result the serializer cannot encode) never opens the circuit breaker
and is reported once per key and window; the next computation replaces an
unreadable entry. Every rule here holds on every backend, sync and async.
"""

from __future__ import annotations

import asyncio
import contextlib
import pickle
import sys
import threading
import types
import uuid
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from memokit import BaseCache, CorruptEntryWarning, breaker_for, cached
from memokit.counters import COUNTER_VERSION, function_counter_key
from memokit.entry import ENCODED, _header

CacheFactory = Any

HUNDRED_YEARS = 100 * 365 * 86400


@contextlib.contextmanager
def recorded(category: type[Warning]) -> Iterator[list[warnings.WarningMessage]]:
    """Record the warnings of ``category`` in the block; any other warning still fails."""
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("error")
        warnings.simplefilter("always", category)
        yield record


# -- how entries are damaged -------------------------------------------------------


def write_garbage(cache: BaseCache, made: str) -> None:
    """Store bytes at ``made`` that the serializer cannot read (valid for the store)."""
    encoded = cache._encode(["a list is serialised by every backend"])
    garbage = b"\x80\x05garbage that is no pickle"
    if isinstance(encoded, bytes):
        cache._set(made, garbage, None)
    else:  # the memory backend's one-item list around a serialised payload
        assert isinstance(encoded, list), encoded
        assert len(encoded) == 1, encoded
        cache._set(made, [garbage], None)


@pytest.fixture
def moved() -> Iterator[types.ModuleType]:
    """A module whose class ``Box`` can be removed, as a deploy that moves a class does."""
    module = types.ModuleType(f"memokit_moved_{uuid.uuid4().hex}")
    exec(  # noqa: S102 - a throw-away module of our own
        "class Box:\n    def __init__(self, v):\n        self.v = v\n", module.__dict__
    )
    sys.modules[module.__name__] = module
    yield module
    del sys.modules[module.__name__]


def damage_by_moving(cache: BaseCache, made: str, module: types.ModuleType) -> None:
    cache._set(made, cache._encode(module.Box(1)), None)
    del module.Box


DAMAGES = ["garbage", "moved-class"]


def damage(kind: str, cache: BaseCache, made: str, module: types.ModuleType) -> None:
    if kind == "garbage":
        write_garbage(cache, made)
    else:
        damage_by_moving(cache, made, module)


def damage_entry(kind: str, cache: BaseCache, made: str, module: types.ModuleType) -> None:
    """Damage the value of the decorated call's entry at ``made``; its header stays current.

    An entry whose header is not current is a plain miss, its value never read:
    only a current entry's value can be found unreadable.
    """
    current = cache._get(made)
    damage(kind, cache, made, module)
    value = cache._get(made)
    if type(current) is tuple:  # the memory backend keeps entries as tuples
        cache._set(made, (ENCODED, current[1], current[2], value), None)
    else:
        header = _header(current)
        assert header is not None
        cache._set(made, current[: header[2]] + value, None)


# -- the low-level API: one rule for every backend -----------------------------------


@pytest.mark.parametrize("kind", DAMAGES)
def test_get_of_an_unreadable_entry_is_a_miss_warned_and_deleted(
    cache: BaseCache, moved: types.ModuleType, kind: str
) -> None:
    damage(kind, cache, cache.make_key("k"), moved)
    with pytest.warns(CorruptEntryWarning, match="k") as record:
        assert cache.get("k", "default") == "default"
    assert len(record) == 1
    assert "garbage" not in str(record[0].message)  # no value bytes in the message
    assert not cache.has_key("k")  # deleted: the next write need not overwrite it


def test_get_many_and_get_or_set_skip_and_replace_unreadable_entries(cache: BaseCache) -> None:
    cache.set("good", 1)
    write_garbage(cache, cache.make_key("bad"))
    with pytest.warns(CorruptEntryWarning):
        assert cache.get_many(["good", "bad"]) == {"good": 1}
    assert not cache.has_key("bad")
    write_garbage(cache, cache.make_key("bad2"))
    with pytest.warns(CorruptEntryWarning):
        assert cache.get_or_set("bad2", "fresh") == "fresh"
    assert cache.get("bad2") == "fresh"  # replaced, and read back without a warning


def test_async_reads_follow_the_same_rule(cache: BaseCache) -> None:
    async def main() -> None:
        write_garbage(cache, cache.make_key("a"))
        with pytest.warns(CorruptEntryWarning):
            assert await cache.aget("a", "default") == "default"
        assert not await cache.ahas_key("a")
        write_garbage(cache, cache.make_key("b"))
        with pytest.warns(CorruptEntryWarning):
            assert await cache.aget_many(["b"]) == {}
        write_garbage(cache, cache.make_key("c"))
        with pytest.warns(CorruptEntryWarning):
            assert await cache.aget_or_set("c", "fresh") == "fresh"
        assert await cache.aget("c") == "fresh"

    asyncio.run(main())


def test_one_warning_per_key_and_window(cache: BaseCache) -> None:
    with recorded(CorruptEntryWarning) as record:
        for _ in range(5):
            write_garbage(cache, cache.make_key("k"))
            assert cache.get("k") is None
        write_garbage(cache, cache.make_key("other"))
        assert cache.get("other") is None
    assert len(record) == 2  # one for "k", one for "other"


# -- decorated calls: an unreadable entry is replaced, the breaker stays closed ------


@pytest.mark.parametrize("kind", DAMAGES)
def test_an_unreadable_entry_is_replaced_by_the_next_computation(
    cache: BaseCache, moved: types.ModuleType, kind: str
) -> None:
    runs: list[int] = []
    other_runs: list[int] = []

    @cached(cache=cache, timeout=None)
    def report(n: int) -> list[int]:
        runs.append(n)
        return [n]

    @cached(cache=cache, timeout=None)
    def other(n: int) -> list[int]:
        other_runs.append(n)
        return [n]

    assert report(1) == [1]
    damage_entry(kind, cache, cache.make_key(report.key(1)), moved)
    with recorded(CorruptEntryWarning) as record:
        for _ in range(20):
            assert report(1) == [1]
            assert other(2) == [2]
    assert runs == [1, 1]  # once before the damage, once to replace it
    assert other_runs == [2]
    assert len(record) == 1
    assert breaker_for(cache).opened == 0
    info = report.cache_info()
    assert (info.errors.backend, info.errors.value) == (0, 1)
    assert info.errors == 1


def test_async_unreadable_entry_is_replaced_once(cache: BaseCache) -> None:
    runs: list[int] = []

    @cached(cache=cache, timeout=None)
    async def report(n: int) -> list[int]:
        runs.append(n)
        return [n]

    async def main() -> None:
        assert await report(1) == [1]
        damage_entry("garbage", cache, cache.make_key(report.key(1)), types.ModuleType("unused"))
        with recorded(CorruptEntryWarning) as record:
            for _ in range(20):
                assert await report(1) == [1]
        assert len(record) == 1

    asyncio.run(main())
    assert runs == [1, 1]
    assert breaker_for(cache).opened == 0
    assert report.cache_info().errors.value == 1


def test_a_damaged_version_counter_heals_like_an_entry(cache: BaseCache) -> None:
    runs: list[int] = []

    @cached(cache=cache, timeout=None)
    def f(n: int) -> list[int]:
        runs.append(n)
        return [n]

    @cached(cache=cache)
    def unrelated() -> None:
        return None

    counter = cache.make_key(function_counter_key(f.__wrapped__), COUNTER_VERSION)
    assert f(1) == [1]
    write_garbage(cache, counter)
    unrelated.invalidate_all()  # an invalidation elsewhere: counters are read again
    runs.clear()
    with recorded(CorruptEntryWarning) as record:
        for _ in range(10):
            assert f(1) == [1]
    assert runs == [1]  # a fresh counter: one miss, then hits
    assert len(record) == 1
    assert breaker_for(cache).opened == 0
    write_garbage(cache, counter)
    breaker_for(cache).reported.clear()  # a new window for that key's reports
    with pytest.warns(CorruptEntryWarning):
        f.invalidate_all()  # bumping a damaged counter replaces it too
    runs.clear()
    assert f(1) == [1]
    assert f(1) == [1]
    assert runs == [1]


# -- a result the serializer cannot encode is the caller's bug: TypeError -------------


def _generator() -> Any:
    return (i for i in range(3))


@pytest.mark.parametrize("make", [_generator, threading.Lock], ids=["generator", "lock"])
def test_an_unencodable_result_raises_type_error_naming_the_function(
    make_any_cache: CacheFactory, make: Callable[[], Any]
) -> None:
    cache = make_any_cache()

    @cached(cache=cache)
    def produce() -> Any:
        return make()

    @cached(cache=cache)
    async def aproduce() -> Any:
        return make()

    with pytest.raises(TypeError, match=r"produce.*returned a.*(generator|lock)"):
        produce()
    with pytest.raises(TypeError, match=r"aproduce.*returned a.*(generator|lock)"):
        asyncio.run(aproduce())
    assert breaker_for(cache).opened == 0
    assert produce.cache_info().errors.value == 1


# -- long timeouts: stored as "never expires" where the store cannot count that far ---


@pytest.mark.parametrize("timeout", [HUNDRED_YEARS, 1e306], ids=["100-years", "1e306"])
def test_a_long_timeout_is_never_refused(cache: BaseCache, timeout: float) -> None:
    cache.set("set", "v", timeout)
    assert cache.get("set") == "v"
    assert cache.add("add", "v", timeout)
    assert cache.get("add") == "v"
    assert cache.get_or_set("gos", "v", timeout) == "v"
    assert cache.get("gos") == "v"
    assert cache.set_many({"m": "v"}, timeout) == []
    assert cache.get("m") == "v"
    assert cache.touch("set", timeout)
    assert cache.get("set") == "v"
    assert asyncio.run(cache.aadd("aadd", "v", timeout))
    assert cache.get("aadd") == "v"
    runs: list[int] = []

    @cached(cache=cache, timeout=timeout)
    def f() -> list[int]:
        runs.append(1)
        return [1]

    assert [f(), f(), f()] == [[1]] * 3
    assert runs == [1]
    assert breaker_for(cache).opened == 0


def test_capabilities_declare_the_latest_expiry(cache: BaseCache) -> None:
    latest = cache.capabilities.latest_expiry
    assert latest is None or latest > 2**31 - 2


# -- a value is pickled and unpickled once --------------------------------------------

_REDUCES: list[str] = []


def rebuild_failing(label: str) -> None:
    """The reconstructor of :class:`RebuildFails`: counts its runs and fails."""
    _REDUCES.append(label)
    raise ValueError("cannot rebuild")


class RebuildFails:
    """Its unpickling fails: a value whose class changed since it was stored."""

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (rebuild_failing, ("rebuilt",))


class ReduceFails:
    """Its pickling fails, once per attempt."""

    def __reduce__(self) -> Any:
        _REDUCES.append("reduced")
        raise TypeError("cannot pickle a ReduceFails")


def test_a_value_that_fails_to_unpickle_is_unpickled_once(cache: BaseCache) -> None:
    # A fast read that retried a failed pickle.loads through the serializer (for its
    # message) ran every reconstructor twice.
    cache.set("k", RebuildFails())
    _REDUCES.clear()
    with recorded(CorruptEntryWarning) as seen:
        assert cache.get("k", "miss") == "miss"
    assert _REDUCES == ["rebuilt"]
    assert len(seen) == 1


def test_a_value_that_fails_to_unpickle_is_unpickled_once_in_a_batch(cache: BaseCache) -> None:
    # get_many decodes a batch in one loop of its own on some backends (Redis): the
    # failed entry is reported once, its reconstructor runs once, the others are read.
    cache.set_many({"k": RebuildFails(), "n": 5, "v": [1]})
    _REDUCES.clear()
    with recorded(CorruptEntryWarning) as seen:
        assert cache.get_many(["n", "k", "v"]) == {"n": 5, "v": [1]}
    assert _REDUCES == ["rebuilt"]
    assert len(seen) == 1
    cache.set("k2", RebuildFails())  # another key: one report per key and window
    _REDUCES.clear()
    with recorded(CorruptEntryWarning) as seen:
        assert asyncio.run(cache.aget_many(["k2", "n"])) == {"n": 5}
    assert _REDUCES == ["rebuilt"]
    assert len(seen) == 1


def test_a_value_that_fails_to_pickle_is_pickled_once(cache: BaseCache) -> None:
    _REDUCES.clear()
    with pytest.raises(pickle.PicklingError, match="ReduceFails"):
        cache.set("k", ReduceFails())
    assert _REDUCES == ["reduced"]
    assert cache.get("k") is None
