"""What only the memory backend promises: shared stores, thread safety, lock discipline."""

from __future__ import annotations

import contextlib
import os
import pickle
import random
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from memokit import BaseCache, MemoryCache


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


@pytest.fixture
def switching() -> Iterator[None]:
    """Switch threads every microsecond, so that a race shows up in a short test."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(old)


def test_threads_never_exceed_max_entries(switching: None) -> None:
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


def test_concurrent_incr_is_exact(switching: None) -> None:
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


def test_get_backend_timeout_is_an_absolute_expiry() -> None:
    from freezegun import freeze_time

    cache = fresh(timeout=60)
    with freeze_time("2026-01-01 00:00:00"):
        now = time.time()
        assert cache.get_backend_timeout() == now + 60
        assert cache.get_backend_timeout(2.5) == now + 2.5
        assert cache.get_backend_timeout(0) == now - 1  # Django's rule for "expired"
        assert cache.get_backend_timeout(-5) == now - 5
        assert cache.get_backend_timeout(None) is None


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_child_forked_while_the_lock_is_held_can_use_the_cache() -> None:
    cache = fresh()
    cache.set("key", "value")
    with cache._lock:
        pid = os.fork()
        if pid == 0:  # the child: the lock it inherited is held by no thread of its own
            try:
                ok = cache.get("key") == "value" and cache.add("other", 1)
            finally:
                os._exit(0 if ok else 1)
    deadline = time.monotonic() + 10
    while (waited := os.waitpid(pid, os.WNOHANG)) == (0, 0) and time.monotonic() < deadline:
        time.sleep(0.01)
    if waited == (0, 0):  # deadlocked on the inherited lock
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        pytest.fail("the forked child deadlocked on the store's lock")
    assert os.waitstatus_to_exitcode(waited[1]) == 0
    assert cache.get("key") == "value"


class MinimalMemoryCache(MemoryCache):
    """The memory backend with BaseCache's default batch primitives, to test those."""

    _get_many = BaseCache._get_many
    _set_many = BaseCache._set_many
    _delete_many = BaseCache._delete_many
    _has_key = BaseCache._has_key


def test_base_batch_primitives() -> None:
    cache = MinimalMemoryCache(f"memory-{uuid.uuid4().hex}")
    assert cache.set_many({"a": 1, "b": [2]}) == []
    assert cache.get_many(["a", "b", "c"]) == {"a": 1, "b": [2]}
    assert cache.has_key("a")
    assert not cache.has_key("c")
    cache.delete_many(["a", "c"])
    assert cache.get_many(["a", "b"]) == {"b": [2]}
