"""The fast index of ``@cached`` (memokit.fastindex): same answers as the string key, faster.

Each test first checks that the call it looks at is served by the index (an
item learnt, no key built), then that every way an entry goes away or changes
is seen by that hit.
"""

from __future__ import annotations

import asyncio
import enum
import gc
import math
import os
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from freezegun import freeze_time
from hypothesis import example, given, settings
from hypothesis import strategies as st

import memokit
from memokit import MemoryCache, cached
from memokit.backends.memory import forget_location
from memokit.fastindex import index_key
from memokit.switches import caching_disabled, use_cache

_serial = iter(range(1_000_000))


@pytest.fixture
def cache() -> Iterator[MemoryCache]:
    location = f"fastindex-{next(_serial)}"
    made = MemoryCache(location, max_entries=1_000)
    yield made
    forget_location(location)


def counting(cache: MemoryCache, **options: Any) -> tuple[Any, list[Any]]:
    """A cached function that records each computation."""
    runs: list[Any] = []

    @cached(cache=cache, name=f"fastindex.f{next(_serial)}", **options)
    def f(x: Any, y: Any = 1) -> Any:
        runs.append((x, y))
        return [x, y] if isinstance(x, str) and x.startswith("list") else (x, y)

    return f, runs


def builds(f: Any) -> list[int]:
    """Count the key builds of ``f`` from now on (the string key's first step)."""
    state = f._state
    real = state.build
    count = [0]

    def counted(args: Any, kwargs: Any) -> str:
        count[0] += 1
        return real(args, kwargs)  # type: ignore[no-any-return]

    state.build = counted
    return count


def indexed(f: Any, *args: Any, **kwargs: Any) -> Any:
    """Call ``f`` until the call is learnt; return its value, asserting the index serves it."""
    f(*args, **kwargs)  # computes (or a string-key hit)
    f(*args, **kwargs)  # a string-key hit learns the item
    count = builds(f)
    value = f(*args, **kwargs)
    assert count == [0], "the call was not served by the fast index"
    assert f._state.index is not None
    assert f._state.index.items
    return value


# -- the index key never merges what the key builder keeps apart --------------------


class Small(enum.IntEnum):
    ONE = 1


class Text(str):
    pass


_TRICKY: list[Any] = [
    0, 1, -1, 2**70, True, False, 1.0, 0.0, -0.0, math.inf, -math.inf, math.nan,
    float.fromhex("0x1.0000000000001p+0"), "", "1", "a", b"", b"1", b"a", None,
    Small.ONE, Text("1"),
]  # fmt: skip
_scalars = st.one_of(
    st.sampled_from(_TRICKY),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=5),
    st.binary(max_size=5),
    st.booleans(),
    st.none(),
)


def _func(a: Any, b: Any = 0, c: Any = None) -> None:
    pass


_calls = st.tuples(
    st.lists(_scalars, max_size=3),
    st.dictionaries(st.sampled_from(["b", "c"]), _scalars, max_size=2),
).filter(lambda call: len(call[0]) >= 1 and not ({"b", "c"} & set(call[1]) and len(call[0]) > 1))


def _build(f: Any, args: list[Any], kwargs: dict[str, Any]) -> str | None:
    try:
        return f._state.build(tuple(args), kwargs)  # type: ignore[no-any-return]
    except TypeError:
        return None  # not a valid call of the signature (b given twice, say)


_KEYED = cached(cache=MemoryCache("fastindex-property"), name="fastindex.property")(_func)


@settings(max_examples=400, deadline=None)
@given(_calls, _calls)
@example(([True], {}), ([1], {}))
@example(([1.0], {}), ([1], {}))
@example(([0.0], {}), ([-0.0], {}))
@example(([Small.ONE], {}), ([1], {}))
@example(([Text("1")], {}), (["1"], {}))
@example(([1], {"b": True}), ([1], {"b": 1}))
def test_calls_share_an_index_key_only_when_they_share_a_key(
    one: tuple[list[Any], dict[str, Any]], two: tuple[list[Any], dict[str, Any]]
) -> None:
    first, second = index_key(tuple(one[0]), one[1]), index_key(tuple(two[0]), two[1])
    if first is None or second is None:
        return
    if {first: True}.get(second, False):  # a dict lookup: identity, then equality
        key_one, key_two = _build(_KEYED, *one), _build(_KEYED, *two)
        assert key_one == key_two, (one, two)


def test_other_objects_take_the_string_key() -> None:
    for args in [(Small.ONE,), (Text("a"),), (math.nan,), ((1, 2),), (object(),), ([1],)]:
        assert index_key(args, {}) is None, args
    assert index_key((1,), {"y": math.nan}) is None
    assert index_key((1,), {}) != index_key((True,), {})
    assert index_key((0.0,), {}) != index_key((-0.0,), {})


# -- hits, counts, copies -----------------------------------------------------------


def test_a_call_of_scalars_is_served_by_the_index_and_counted(cache: MemoryCache) -> None:
    f, runs = counting(cache)
    assert indexed(f, 7) == (7, 1)
    assert indexed(f, 7, y=2) == (7, 2)
    assert indexed(f, "a", b"b") == ("a", b"b")
    assert indexed(f, True, y=-0.0) == (True, -0.0)
    assert indexed(f, None) == (None, 1)
    assert len(runs) == 5
    assert f.cache_info().hits == 5 * 2
    assert f.stats().hits == 5 * 2
    assert f(1) == (1, 1)
    assert f(True) == (True, 1)
    assert f(1.0) == (1.0, 1)
    assert len(runs) == 8  # three calls the key builder keeps apart: three computations


def test_an_index_hit_flushes_shared_statistics_when_due(
    cache: MemoryCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    f, _ = counting(cache)
    indexed(f, 7)
    flushed: list[object] = []
    monkeypatch.setattr(memokit.wrappers, "flush", flushed.append)
    f._state.due = 1.0  # long past: time.monotonic() counts from boot
    count = builds(f)
    f(7)
    assert count == [0]
    assert flushed == [f._state]


def test_a_mutable_value_is_a_fresh_copy_on_each_index_hit(cache: MemoryCache) -> None:
    f, _ = counting(cache)
    value = indexed(f, "list")
    value.append("changed")
    assert f("list") == ["list", 1]
    assert f("list") is not f("list")


_METHOD_CACHE = MemoryCache("fastindex-methods")


class Holder:
    """An object with an identity of its own, and a cached method."""

    def __cache_key__(self) -> int:
        return 1

    @cached(cache=_METHOD_CACHE, name="fastindex.Holder.m")
    def m(self, x: int) -> int:
        return x


def test_a_method_and_an_object_argument_take_the_string_key(cache: MemoryCache) -> None:
    holder = Holder()
    assert holder.m(7) == holder.m(7) == 7
    assert Holder.m._state.index is None  # a method's calls never reach the index
    ref = weakref.ref(holder)
    del holder
    gc.collect()
    assert ref() is None

    @cached(cache=cache, name="fastindex.plain")
    def f(x: Any) -> int:
        return 1

    indexed(f, 7)  # the index exists
    arg = Holder()
    f(arg)
    f(arg)
    assert len(f._state.index.items) == 1
    ref = weakref.ref(arg)
    del arg
    gc.collect()
    assert ref() is None  # neither the index nor anything else keeps it


# -- every way an entry goes away is seen by an index hit ----------------------------

_Change = Callable[[Any, MemoryCache], object]


def _other_instance(f: Any, cache: MemoryCache) -> MemoryCache:
    return MemoryCache(cache.location)


_CHANGES: dict[str, _Change] = {
    "f.invalidate": lambda f, cache: f.invalidate(7),
    "invalidate_all": lambda f, cache: f.invalidate_all(),
    "tags": lambda f, cache: memokit.invalidate_tags("fastindex-tag", cache=cache),
    "incr_version": lambda f, cache: memokit.incr_version(f),
    "namespace version": lambda f, cache: memokit.incr_version("fastindex-tag", cache=cache),
    "cache.clear": lambda f, cache: cache.clear(),
    "cache.delete": lambda f, cache: cache.delete(f.key(7)),
    "cache.set": lambda f, cache: cache.set(f.key(7), "by hand"),
    "cache.touch": lambda f, cache: cache.touch(f.key(7), 0),
    "other instance clear": lambda f, cache: _other_instance(f, cache).clear(),
    "other instance delete": lambda f, cache: _other_instance(f, cache).delete(f.key(7)),
}


@pytest.mark.parametrize("change", list(_CHANGES))
def test_every_invalidation_is_seen_by_an_index_hit(cache: MemoryCache, change: str) -> None:
    f, runs = counting(cache, tags=["fastindex-tag"])
    assert indexed(f, 7) == (7, 1)
    _CHANGES[change](f, cache)
    assert f(7) == (7, 1)
    assert len(runs) == 2, "the change was not seen"


def test_a_rollback_of_the_version_is_seen_too(cache: MemoryCache) -> None:
    f, runs = counting(cache)
    indexed(f, 7)
    indexed(f, 8)
    memokit.incr_version(f)
    f(7)  # computed under the new version, replacing the entry of 7
    memokit.decr_version(f)
    assert f(8) == (8, 1)  # the entry of 8 is current again, and served
    assert f(7) == (7, 1)  # the entry of 7 is the new version's: computed again
    assert len(runs) == 4
    assert indexed(f, 8) == (8, 1)


def test_culling_is_seen_by_an_index_hit() -> None:
    cache = MemoryCache(f"fastindex-cull-{next(_serial)}", max_entries=4, cull_frequency=0)
    f, runs = counting(cache)
    indexed(f, 7)
    for n in range(10):
        cache.set(f"filler-{n}", n)  # a full store is emptied (CULL_FREQUENCY 0)
    f(7)
    assert len(runs) == 2


def test_expiry_is_seen_by_an_index_hit(cache: MemoryCache) -> None:
    with freeze_time("2026-01-01") as frozen:
        f, runs = counting(cache, timeout=10)
        indexed(f, 7)
        frozen.tick(9)
        assert f(7) == (7, 1)
        assert len(runs) == 1
        frozen.tick(2)
        assert f(7) == (7, 1)
        assert len(runs) == 2


def test_an_index_hit_marks_the_entry_recently_used(cache: MemoryCache) -> None:
    f, _ = counting(cache)
    indexed(f, 1)
    f(2)
    order = list(cache._data)
    made = next(m for m in order if m.endswith(f.key(1)))
    assert order[-1] != made
    f(1)  # an index hit, as the string key's hit: the most recently used now
    assert list(cache._data)[-1] == made


def test_switches_and_a_tripped_breaker_bypass_the_index(cache: MemoryCache) -> None:
    f, runs = counting(cache)
    indexed(f, 7)
    with caching_disabled():
        f(7)
    assert len(runs) == 2
    with use_cache(MemoryCache(f"fastindex-other-{next(_serial)}")):
        f(7)
    assert len(runs) == 3
    breaker = memokit.breaker_for(cache)
    try:
        for _ in range(breaker.settings.threshold):
            breaker.record_failure(TimeoutError("timed out"))
        assert breaker.is_open
        f(7)  # the backend is skipped: computed
        assert len(runs) == 4
    finally:
        breaker.reset()
    assert f(7) == (7, 1)
    assert len(runs) == 4
    assert indexed(f, 7) == (7, 1)


def test_a_function_with_a_freshness_policy_takes_the_string_key(cache: MemoryCache) -> None:
    f, runs = counting(cache, timeout=10, stale=10)
    f(7)
    f(7)
    f(7)
    assert f._state.index is None
    assert len(runs) == 1


def test_async_hits_use_the_index_and_see_invalidations(cache: MemoryCache) -> None:
    runs: list[int] = []

    @cached(cache=cache, name="fastindex.async")
    async def g(x: int) -> list[int]:
        runs.append(x)
        return [x]

    async def main() -> None:
        await g(7)
        await g(7)
        count = builds(g)
        assert await g(7) == [7]
        assert count == [0]
        await g.invalidate(7)
        assert await g(7) == [7]
        assert len(runs) == 2
        await g.invalidate_all()
        assert await g(7) == [7]
        assert len(runs) == 3

    asyncio.run(main())
    assert g.cache_info().hits == 2


def test_threads_read_whole_entries_while_others_write(cache: MemoryCache) -> None:
    f, _ = counting(cache)
    indexed(f, 7)
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader() -> None:
        try:
            for _ in range(3_000):
                assert f(7) == (7, 1)
        except BaseException as exc:  # reported below
            errors.append(exc)

    def writer() -> None:
        for n in range(3_000):
            if stop.is_set():
                return
            if n % 7 == 0:
                cache.clear()
            elif n % 2:
                f.invalidate(7)
            else:
                f.refresh(7)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    other = threading.Thread(target=writer)
    for t in [*threads, other]:
        t.start()
    for t in threads:
        t.join(timeout=60)
    stop.set()
    other.join(timeout=60)
    assert errors == []
    assert f.cache_info().hits > 0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_serves_and_invalidates_through_its_copy(cache: MemoryCache) -> None:
    f, runs = counting(cache)
    indexed(f, 7)
    pid = os.fork()
    if pid == 0:  # the child: exit code 0 when all holds
        ok = f(7) == (7, 1) and len(runs) == 1
        f.invalidate(7)
        ok = ok and f(7) == (7, 1) and len(runs) == 2
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert f(7) == (7, 1)
    assert len(runs) == 1
