"""``@cached`` on functions and coroutine functions, on every storing backend."""

from __future__ import annotations

import asyncio
import functools
import inspect
import pickle
import threading
import time
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

import memokit
from memokit import BaseCache, CacheInfo, Entry, MemoryCache, cached
from memokit.config import DEFAULT_CACHES

CacheFactory = Any
Clock = Any


@pytest.fixture
def default_cache() -> Iterator[BaseCache]:
    """The default alias on a fresh memory store, restored afterwards."""
    memokit.configure(DEFAULT_CACHES)
    memokit.cache.clear()
    yield memokit.caches["default"]
    memokit.configure(DEFAULT_CACHES)


class Counter:
    """Counts the calls of a decorated body."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def __call__(self, *args: Any) -> int:
        self.calls.append(args)
        return len(self.calls)

    def __cache_key__(self) -> None:
        # Captured by the functions under test, so part of their identity (see
        # "How a call becomes a key"): each test has its own functions, so the
        # counter needs no identity of its own.
        return None


# -- forms -------------------------------------------------------------------------


def test_bare_decorator_uses_the_default_alias(default_cache: BaseCache) -> None:
    body = Counter()

    @cached
    def square(n: int) -> int:
        body(n)
        return n * n

    assert square(3) == 9
    assert square(3) == 9
    assert square(4) == 16
    assert body.calls == [(3,), (4,)]
    assert default_cache.has_key(square.key(3))
    assert square.cache is default_cache


def test_bare_decorator_on_a_coroutine_function(default_cache: BaseCache) -> None:
    body = Counter()

    @cached
    async def square(n: int) -> int:
        body(n)
        return n * n

    async def main() -> list[int]:
        return [await square(3), await square(3), await square(4)]

    assert asyncio.run(main()) == [9, 9, 16]
    assert body.calls == [(3,), (4,)]


def test_empty_parentheses(default_cache: BaseCache) -> None:
    body = Counter()

    @cached()
    def f() -> int:
        return body()

    assert f() == f() == 1


def test_sync_hit_miss_and_none_on_every_backend(cache: BaseCache) -> None:
    body = Counter()

    @cached(cache=cache)
    def find(name: str) -> str | None:
        body(name)
        return None if name == "nobody" else name.upper()

    assert find("ann") == "ANN"
    assert find("ann") == "ANN"
    assert find("nobody") is None
    assert find("nobody") is None  # None is a value: cached, not recomputed
    assert body.calls == [("ann",), ("nobody",)]
    assert find.cache_info() == CacheInfo(hits=2, misses=2, errors=0)


def test_async_hit_miss_and_none_on_every_backend(cache: BaseCache) -> None:
    body = Counter()

    @cached(cache=cache)
    async def find(name: str) -> str | None:
        body(name)
        await asyncio.sleep(0)
        return None if name == "nobody" else name.upper()

    async def main() -> list[str | None]:
        return [await find("ann"), await find("ann"), await find("nobody"), await find("nobody")]

    assert asyncio.run(main()) == ["ANN", "ANN", None, None]
    assert body.calls == [("ann",), ("nobody",)]
    assert find.cache_info() == CacheInfo(hits=2, misses=2, errors=0)


def test_signature_binding_shares_one_entry(cache: BaseCache) -> None:
    body = Counter()

    @cached(cache=cache)
    def f(a: int, b: int = 2) -> int:
        return body(a, b)

    assert f(1) == f(1, 2) == f(1, b=2) == f(b=2, a=1) == 1
    assert f(1, 3) == 2


def test_mutable_results_are_isolated(cache: BaseCache) -> None:
    @cached(cache=cache)
    def items() -> list[int]:
        return [1, 2]

    items().append(3)
    assert items() == [1, 2]


# -- settings ----------------------------------------------------------------------


def test_timeout(make_cache: CacheFactory, clock: Clock) -> None:
    cache = make_cache()
    body = Counter()

    @cached(cache=cache, timeout=2)
    def f() -> int:
        return body()

    assert f() == 1
    clock.advance(1)
    assert f() == 1
    clock.advance(1.5)
    assert f() == 2


def test_timeout_none_keeps_forever(make_cache: CacheFactory, clock: Clock) -> None:
    cache = make_cache(TIMEOUT=1)
    body = Counter()

    @cached(cache=cache, timeout=None)
    def forever() -> int:
        return body()

    @cached(cache=cache)
    def default() -> int:
        return body()

    assert forever() == 1
    assert default() == 2
    clock.advance(2)
    assert forever() == 1
    assert default() == 3


def test_none_timeout_applies_to_none_results(make_cache: CacheFactory, clock: Clock) -> None:
    cache = make_cache()
    body = Counter()

    @cached(cache=cache, timeout=100, none_timeout=1)
    def find(name: str) -> str | None:
        body(name)
        return None if name == "nobody" else name

    find("ann"), find("nobody")
    clock.advance(2)
    find("ann"), find("nobody")
    assert body.calls == [("ann",), ("nobody",), ("nobody",)]


def test_none_timeout_zero_never_stores_none(cache: BaseCache) -> None:
    body = Counter()

    @cached(cache=cache, none_timeout=0)
    def find() -> None:
        body()

    find(), find()
    assert len(body.calls) == 2


def test_unless_skips_storing(cache: BaseCache) -> None:
    body = Counter()

    @cached(cache=cache, unless=lambda result: result % 2 == 1)
    def f(n: int) -> int:
        body(n)
        return n

    assert [f(1), f(1), f(2), f(2)] == [1, 1, 2, 2]
    assert body.calls == [(1,), (1,), (2,)]


def test_async_unless(cache: BaseCache) -> None:
    body = Counter()

    @cached(cache=cache, unless=lambda result: result is None)
    async def f() -> None:
        body()

    async def main() -> None:
        await f()
        await f()

    asyncio.run(main())
    assert len(body.calls) == 2


def test_version(cache: BaseCache) -> None:
    body = Counter()

    @cached(cache=cache, version=2)
    def v2() -> int:
        return body()

    assert v2() == v2() == 1
    assert Entry.read(cache, v2.key(), version=2) is not None
    assert cache.get(v2.key()) is None


def test_ignore(cache: BaseCache) -> None:
    body = Counter()

    @cached(cache=cache, ignore=("request_id",))
    def f(n: int, request_id: str) -> int:
        return body(n)

    assert f(1, "a") == f(1, "b") == 1
    assert f(2, "a") == 2


def test_key_template(cache: BaseCache) -> None:
    body = Counter()

    @cached(cache=cache, key="user:{user_id}:{page}")
    def page(user_id: int, page: int = 1) -> int:
        return body(user_id, page)

    assert page(5) == page(5, page=1) == 1
    assert page.key(5) == "user:5:1"
    assert Entry.read(cache, "user:5:1") is not None
    cache.delete("user:5:1")
    assert page(5) == 2


def test_key_callable(cache: BaseCache) -> None:
    body = Counter()

    @cached(cache=cache, key=lambda user_id, page=1: f"u{user_id}")
    def page(user_id: int, page: int = 1) -> int:
        return body(user_id, page)

    assert page(5, 1) == page(5, 2) == 1
    assert page.key(5) == "u5"


def test_async_key_template_and_refresh(cache: BaseCache) -> None:
    body = Counter()

    @cached(cache=cache, key="n:{n}")
    async def f(n: int) -> int:
        return body(n)

    async def main() -> list[Any]:
        return [await f(1), await f(1), await f.refresh(1), await f(1), await f.invalidate(1)]

    assert asyncio.run(main()) == [1, 1, 2, 2, True]
    assert f.key(1) == "n:1"


# -- helpers -----------------------------------------------------------------------


def test_helpers(cache: BaseCache) -> None:
    body = Counter()

    @cached(cache=cache)
    def f(a: int, b: int = 0) -> int:
        return body(a, b)

    assert f(1) == 1
    assert f.key(1) == f.key(1, 0) == f.key(a=1, b=0)
    assert f.invalidate(1, b=0) is True
    assert f.invalidate(1) is False
    assert f(1) == 2
    assert f.refresh(1) == 3
    assert f(1) == 3
    assert f.uncached(1) == 4
    assert f(1) == 3
    assert f.cache is cache
    assert f.cache_info() == CacheInfo(hits=2, misses=3, errors=0)
    assert "f" in repr(f)


def test_entry_records_creation_time_and_versions(make_cache: CacheFactory, clock: Clock) -> None:
    cache = make_cache()

    @cached(cache=cache)
    def f() -> str:
        return "value"

    started = time.time()
    clock.advance(0.5)
    f()
    entry = Entry.read(cache, f.key())
    assert entry is not None
    assert entry.value == "value"
    # The function's counter, read with the entry (see tests/invalidation).
    assert entry.versions == (memokit.get_version(f),)
    assert started + 0.5 <= entry.created <= time.time()


def test_foreign_or_outdated_entry_counts_as_miss_and_is_replaced(cache: BaseCache) -> None:
    body = Counter()

    @cached(cache=cache)
    def f() -> int:
        return body()

    cache.set(f.key(), "not an entry")
    assert f() == 1
    assert f() == 1
    made = cache.make_and_validate_key(f.key())
    cache._set(made, Entry(99, time.time(), (7,)).to_payload(cache), None)
    assert f() == 2
    assert f() == 2


def test_an_entry_of_the_previous_format_is_a_miss_and_is_replaced(cache: BaseCache) -> None:
    # Issue 17 bumped the format (the header became memokit's): a deploy starts cold.
    body = Counter()

    @cached(cache=cache)
    def f() -> int:
        return body()

    previous = ("mk1", time.time(), (memokit.get_version(f),), 99)  # how 0.1 stored entries
    made = cache.make_and_validate_key(f.key())
    cache._set(made, cache._encode(previous), None)
    assert f() == 1
    assert f() == 1
    entry = Entry.read(cache, f.key())
    assert entry is not None
    assert entry.value == 1


def test_the_plain_api_reads_a_decorated_entry_as_a_quiet_miss(cache: BaseCache) -> None:
    # A decorated entry's header is memokit's, not the serializer's: the plain API
    # (which reads values) once took it for a damaged payload, warned and removed it,
    # so the next decorated call recomputed. It is a miss for the plain API, and it
    # stays, unreported, on every backend that serializes, sync and async alike; the
    # memory backend keeps the entry as a tuple and returns it (docs/decorators.md).
    body = Counter()

    @cached(cache=cache)
    def f(n: int) -> int:
        return body(n)

    assert f(1) == 1
    key = f.key(1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no CorruptEntryWarning
        if cache.capabilities.keeps_objects:
            assert isinstance(cache.get(key), tuple)
        else:
            assert cache.get(key, "missed") == "missed"
            assert cache.get_many([key]) == {}
            assert asyncio.run(cache.aget(key, "missed")) == "missed"
            assert asyncio.run(cache.aget_many([key])) == {}
    assert cache.has_key(key)
    assert f(1) == 1  # still a hit
    assert f.cache_info().hits == 1
    # get_or_set is a write: it replaces the entry with its default, still unreported.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        if not cache.capabilities.keeps_objects:
            assert cache.get_or_set(key, "plain") == "plain"
            assert cache.get(key) == "plain"


def test_get_or_set_semantics_first_writer_wins(cache: BaseCache) -> None:
    @cached(cache=cache, name="first-writer")  # it captures the cache
    def f() -> str:
        # Another process stores the same call while this one computes.
        theirs = Entry("theirs", time.time(), (memokit.get_version(f),))
        cache._set(cache.make_and_validate_key(f.key()), theirs.to_payload(cache), None)
        return "mine"

    assert f() == "theirs"
    assert f() == "theirs"


def test_dummy_backend_always_computes() -> None:
    body = Counter()

    @cached(cache=memokit.DummyCache())
    def f() -> int:
        return body()

    assert [f(), f()] == [1, 2]


def test_alias_is_resolved_at_call_time(default_cache: BaseCache) -> None:
    @cached(cache="later")
    def f() -> int:
        return 1

    with pytest.raises(memokit.InvalidCacheBackendError, match="'later' is not configured"):
        f()
    memokit.configure({"default": {"BACKEND": "memory"}, "later": {"BACKEND": "memory"}})
    assert f() == 1
    assert isinstance(f.cache, MemoryCache)
    assert f.cache is memokit.caches["later"]


def test_default_cache_proxy_means_the_default_alias(default_cache: BaseCache) -> None:
    @cached(cache=memokit.cache)
    def f() -> int:
        return 1

    assert f.cache is default_cache


class Broken(MemoryCache):
    """A backend with a bug (not a backend failure, which would fail open: tests/resilience)."""

    def _get(self, key: str) -> Any:
        raise LookupError("a bug in the backend")

    def _get_many(self, keys: list[str]) -> dict[str, Any]:
        raise LookupError("a bug in the backend")  # what a decorated call reads through


def test_backend_bugs_propagate_and_are_counted() -> None:
    @cached(cache=Broken("broken"))
    def f() -> int:
        return 1

    with pytest.raises(LookupError):
        f()
    with pytest.raises(LookupError):
        asyncio.run(async_f())
    assert f.cache_info() == CacheInfo(hits=0, misses=0, errors=1)


@cached(cache=Broken("broken-async"))
async def async_f() -> int:
    return 1


def test_function_exceptions_propagate_and_nothing_is_stored(cache: BaseCache) -> None:
    @cached(cache=cache)
    def f() -> int:
        raise KeyError("boom")

    with pytest.raises(KeyError):
        f()
    assert cache.get(f.key()) is None
    assert f.cache_info() == CacheInfo(hits=0, misses=0, errors=0)


def test_awaitable_from_a_sync_looking_function_is_refused(cache: BaseCache) -> None:
    async def body() -> int:
        return 1

    @cached(cache=cache, name="disguised")  # it captures a local function
    def disguised() -> Any:
        return body()

    with pytest.raises(TypeError, match="returned an awaitable"):
        disguised()


def test_unless_errors_are_not_counted_as_backend_errors(cache: BaseCache) -> None:
    @cached(cache=cache, unless=lambda result: 1 / 0)
    def f() -> int:
        return 1

    with pytest.raises(ZeroDivisionError):
        f()
    assert f.cache_info().errors == 0


def test_unpicklable_result_raises(cache: BaseCache) -> None:
    @cached(cache=cache)
    def f() -> Any:
        return lambda: 1

    with pytest.raises(TypeError, match=r"f returned a 'function' object.*cannot encode"):
        f()
    assert cache.get(f.key()) is None


# -- metadata and typing at run time ------------------------------------------------


def original(a: int, b: str = "x", *args: int, c: float = 1.0, **kw: Any) -> str:
    """The docstring."""
    return ""


async def coroutine(a: int) -> int:
    return a


def test_signature_and_metadata_are_the_originals() -> None:
    wrapped = cached(original)
    assert inspect.signature(wrapped) == inspect.signature(original)
    assert wrapped.__name__ == "original"
    assert wrapped.__qualname__ == "original"
    assert wrapped.__doc__ == "The docstring."
    assert wrapped.__module__ == original.__module__
    assert wrapped.__wrapped__ is original
    assert wrapped.uncached is original


def test_coroutine_functions_stay_coroutine_functions() -> None:
    wrapped = cached(coroutine)
    assert inspect.iscoroutinefunction(wrapped)
    assert inspect.signature(wrapped) == inspect.signature(coroutine)
    assert not inspect.iscoroutinefunction(cached(original))


# -- bad arguments raise at decoration time -----------------------------------------


def plain() -> int:
    return 1


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"timeout": "60"}, TypeError, "timeout must be a number"),
        ({"timeout": True}, TypeError, "timeout must be a number"),
        ({"none_timeout": "1"}, TypeError, "none_timeout must be a number"),
        ({"version": "2"}, TypeError, "version must be an int"),
        ({"ignore": "request"}, TypeError, "ignore must be a collection"),
        ({"ignore": [1]}, TypeError, "argument names"),
        ({"unless": 3}, TypeError, "unless must be a predicate"),
        ({"key": 3}, TypeError, "key must be a template"),
        ({"cache": 3}, TypeError, "cache must be an alias"),
        ({"key": "k", "ignore": ["a"]}, ValueError, "ignore= applies to the default key"),
    ],
)
def test_bad_arguments(kwargs: dict[str, Any], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        cached(**kwargs)


def test_bad_targets() -> None:
    def generator() -> Iterator[int]:
        yield 1

    with pytest.raises(TypeError, match=r"timeout=\.\.\."):
        cached(300)  # type: ignore[call-overload]  # the mistake under test
    with pytest.raises(TypeError, match="generator"):
        cached(generator)
    with pytest.raises(TypeError, match="property"):
        cached(property(plain))  # type: ignore[call-overload]  # the mistake under test
    with pytest.raises(TypeError, match="not <class"):
        cached(Counter)
    with pytest.raises(TypeError, match="already cached"):
        cached(cached(plain))
    with pytest.raises(ValueError, match="'nope'"):
        cached(ignore=["nope"])(plain)
    # A partial whose calls cannot be bound (int has no signature) is refused;
    # a partial of a named function is identified by it and its arguments.
    with pytest.raises(memokit.UnkeyableArgument, match=r"(?i)wrap it in a def"):
        cached(functools.partial(int, base=2))


def test_a_partial_with_its_own_key_is_fine(cache: BaseCache) -> None:
    add_one = cached(cache=cache, key="add:{b}")(functools.partial(lambda a, b: a + b, 1))
    assert add_one(b=2) == add_one(b=2) == 3
    assert add_one.key(b=2) == "add:2"
    assert "partial" in repr(add_one)


@cached
def module_level(n: int) -> int:
    return n


def test_pickles_by_reference_like_a_function() -> None:
    assert pickle.loads(pickle.dumps(module_level)) is module_level


def reversed_key(key: Any, key_prefix: str, version: Any) -> str:
    return f"{version}|{key_prefix}|{key}"


@pytest.mark.parametrize(
    "settings",
    [{}, {"KEY_PREFIX": "app", "VERSION": 3}, {"KEY_FUNCTION": reversed_key}],
    ids=["default", "prefix-and-version", "key-function"],
)
def test_entries_live_where_the_core_api_finds_them(
    make_cache: CacheFactory, settings: dict[str, Any]
) -> None:
    cache = make_cache(**settings)
    body = Counter()

    @cached(cache=cache)
    def f(n: int) -> int:
        return body(n)

    assert f(1) == f(1) == 1
    entry = Entry.read(cache, f.key(1))
    assert entry is not None
    assert entry.value == 1
    cache.delete(f.key(1))
    assert f(1) == 2


def test_a_changed_prefix_or_version_is_seen_at_the_next_call(cache: BaseCache) -> None:
    body = Counter()

    @cached(cache=cache)
    def f() -> int:
        return body()

    assert f() == f() == 1
    cache.key_prefix = "moved"
    assert f() == 2
    cache.version = 2
    assert f() == 3
    assert f() == 3


def test_threads_share_entries_and_get_right_values(cache: BaseCache) -> None:
    @cached(cache=cache)
    def square(n: int) -> int:
        return n * n

    barrier = threading.Barrier(8)
    failures: list[BaseException] = []

    def worker(offset: int) -> None:
        barrier.wait()
        try:
            for i in range(200):
                n = (i + offset) % 20
                assert square(n) == n * n
        except BaseException as exc:  # collected for the main thread
            failures.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert failures == []
    assert square.cache_info().misses >= 20


def test_concurrent_tasks_get_one_value(cache: BaseCache) -> None:
    @cached(cache=cache)
    async def f(n: int) -> list[int]:
        await asyncio.sleep(0.01)
        return [n]

    async def main() -> list[list[int]]:
        return await asyncio.gather(*(f(3) for _ in range(10)))

    assert asyncio.run(main()) == [[3]] * 10
    assert asyncio.run(main()) == [[3]] * 10


def test_sync_and_async_hits_on_a_local_store_read_the_entry_alone() -> None:
    """Both hit paths take the same fast path: the entry alone, by a concatenated key."""
    cache = MemoryCache()
    made: list[str] = []
    reads: list[str] = []
    real_make, real_get, real_aget = cache.make_and_validate_key, cache._get, cache._aget

    def counted_make(key: Any, version: int | None = None) -> str:
        made.append(key)
        return real_make(key, version)

    def counted_get(key: str) -> Any:
        if not reads or reads[-1] != "_aget":  # the memory backend's _aget calls _get
            reads.append("_get")
        return real_get(key)

    async def counted_aget(key: str) -> Any:
        reads.append("_aget")
        return await real_aget(key)

    # A tuple argument takes the string key (a call of scalars takes the fast index,
    # which reads nothing: tests/decorators/test_fastindex.py).
    @cached(cache=cache, name="local-sync")
    def f(n: tuple[int]) -> tuple[int]:
        return n

    @cached(cache=cache, name="local-async")
    async def g(n: tuple[int]) -> tuple[int]:
        return n

    async def call_g() -> tuple[int]:
        return await g((1,))

    f((1,))
    asyncio.run(call_g())
    cache.make_and_validate_key = counted_make  # type: ignore[method-assign]
    cache._get, cache._aget = counted_get, counted_aget  # type: ignore[method-assign]
    # The plans bound _get when they were built: rebuild them with the counting one.
    f._state.fast = g._state.fast = None
    f((1,))
    asyncio.run(call_g())  # these two build their plans and read the counters
    made.clear()
    reads.clear()
    assert f((1,)) == (1,)
    assert asyncio.run(call_g()) == (1,)
    assert (f.cache_info().hits, g.cache_info().hits) == (2, 2)
    assert made == []  # the key is the plan's prefix + the built key, not re-validated
    assert reads == ["_get", "_aget"]


def test_a_stop_iteration_from_the_function_or_unless_reaches_the_caller() -> None:
    """As without the cache: not the RuntimeError a generator would make of it (PEP 479)."""
    cache = MemoryCache()

    @cached(cache=cache, name="stops")
    def stops(n: int) -> int:
        return next(iter([]))

    @cached(cache=cache, name="unless-stops", unless=lambda value: next(iter([])))
    def kept(n: int) -> int:
        return n

    def inner() -> Iterator[int]:
        yield 1
        raise StopIteration  # a RuntimeError in the function's own generator stays one

    @cached(cache=cache, name="own-generator")
    def own(n: int) -> list[int]:
        return list(inner())

    with pytest.raises(StopIteration):
        stops(1)
    with pytest.raises(StopIteration):
        stops.refresh(1)
    with pytest.raises(StopIteration):
        kept(1)
    with pytest.raises(RuntimeError, match="generator raised StopIteration"):
        own(1)
