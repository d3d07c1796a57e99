"""What only the memory backend promises: shared stores, thread safety, lock discipline."""

from __future__ import annotations

import contextlib
import pickle
import random
import threading
import uuid
from typing import Any

import pytest

from memokit import MemoryCache


def fresh(**kwargs: Any) -> MemoryCache:
    return MemoryCache(f"memory-{uuid.uuid4().hex}", **kwargs)


def test_locations_are_isolated() -> None:
    first, second = fresh(), fresh()
    first.set("key", "first")
    second.set("key", "second")
    assert first.get("key") == "first"
    assert second.get("key") == "second"


def test_same_location_shares_data_across_instances() -> None:
    location = f"memory-{uuid.uuid4().hex}"
    MemoryCache(location).set("key", 1)
    assert MemoryCache(location).get("key") == 1


def test_built_directly_with_keyword_arguments() -> None:
    cache = fresh(timeout=None, key_prefix="p", version=2, max_entries=5, cull_frequency=2)
    assert cache.default_timeout is None
    assert cache.make_key("k") == "p:2:k"
    for i in range(10):
        cache.set(i, i)
    assert len(cache._data) <= 5


def test_threads_never_exceed_max_entries() -> None:
    cache = fresh(max_entries=30)
    errors: list[BaseException] = []
    peak = [0]
    start = threading.Barrier(16)

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        start.wait()
        try:
            for _ in range(10_000):
                key = f"k{rng.randrange(50)}"
                op = rng.randrange(8)
                if op == 0:
                    cache.set(key, [seed], timeout=rng.choice([None, 0.001, 100]))
                elif op == 1:
                    cache.add(key, seed)
                elif op == 2:
                    cache.delete(key)
                elif op == 3:
                    cache.get_many([key, "k1", "k2"])
                elif op == 4:
                    cache.set_many({key: 1, "k3": 2})
                elif op == 5:
                    cache.touch(key, 50)
                elif op == 6:
                    with contextlib.suppress(ValueError, TypeError):
                        cache.incr(key)
                else:
                    cache.get(key)
                peak[0] = max(peak[0], len(cache._data))
        except BaseException as exc:  # recorded and asserted on below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert peak[0] <= 30
    assert len(cache._data) <= 30


def test_concurrent_incr_is_exact() -> None:
    cache = fresh()
    cache.set("counter", 0)
    start = threading.Barrier(8)

    def worker() -> None:
        start.wait()
        for _ in range(1_000):
            cache.incr("counter")

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert cache.get("counter") == 8_000


class LockSpy:
    """Records whether the store's lock is held while it is pickled."""

    cache: MemoryCache
    seen: list[bool]

    def __getstate__(self) -> dict[str, Any]:
        LockSpy.seen.append(LockSpy.cache._lock.locked())
        return {}


@pytest.mark.parametrize("method", ["set", "add", "get_or_set", "set_many"])
def test_pickling_happens_outside_the_lock(method: str) -> None:
    cache = fresh()
    LockSpy.cache = cache
    LockSpy.seen = []
    if method == "set_many":
        cache.set_many({"key": LockSpy()})
    elif method == "get_or_set":
        cache.get_or_set("key", LockSpy)
    else:
        getattr(cache, method)("key", LockSpy())
    assert LockSpy.seen == [False]


class UnpickleSpy:
    cache: MemoryCache
    seen: list[bool]

    def __reduce__(self) -> Any:
        return (_record_lock, ())


def _record_lock() -> int:
    UnpickleSpy.seen.append(UnpickleSpy.cache._lock.locked())
    return 1


def test_unpickling_happens_outside_the_lock() -> None:
    cache = fresh()
    UnpickleSpy.cache = cache
    UnpickleSpy.seen = []
    cache.set("key", UnpickleSpy())
    assert cache.get("key") == 1
    assert cache.incr("key") == 2
    assert UnpickleSpy.seen == [False, False]


def test_immutable_values_are_kept_without_pickling(monkeypatch: pytest.MonkeyPatch) -> None:
    cache = fresh()

    def fail(*args: Any) -> Any:
        raise AssertionError("pickled an immutable value")

    monkeypatch.setattr(cache.serializer, "dumps", fail)
    for value in (None, True, 3, 2.5, "s", b"b", 1j):
        cache.set("key", value)
        assert cache.get("key") == value


def test_tuples_of_immutables_are_kept_and_others_copied() -> None:
    cache = fresh()
    kept = ("mk1", 1.5, (1, 2), frozenset({"a"}), None)
    cache.set("kept", kept)
    assert cache.get("kept") is kept  # no pickle round trip: nothing can mutate it
    inner: list[int] = [1]
    cache.set("copied", (1, inner))
    inner.append(2)
    got = cache.get("copied")
    assert got == (1, [1])
    got[1].append(3)
    assert cache.get("copied") == (1, [1])


def test_other_serializers_see_every_value() -> None:
    seen = []

    class Recording:
        def dumps(self, value: Any) -> bytes:
            seen.append(value)
            return pickle.dumps(value)

        def loads(self, data: bytes) -> Any:
            return pickle.loads(data)

    cache = fresh(serializer=Recording())
    cache.set("key", 3)
    assert cache.get("key") == 3
    assert seen == [3]
