"""MAX_ENTRIES / CULL_FREQUENCY with Django's arithmetic, and LRU order."""

from __future__ import annotations

from typing import Any

import pytest

CacheFactory = Any


@pytest.fixture
def culling(make_cache: CacheFactory) -> CacheFactory:
    if not make_cache().capabilities.culls:
        pytest.skip("the backend does not cull by count")
    return make_cache


def count_present(cache: Any, n: int) -> int:
    return sum(cache.has_key(f"cull{i}") for i in range(n))


def expected_left(cache: Any, default: int) -> int:
    # Django's db backend culls on count > MAX_ENTRIES, one entry later.
    return default - 1 if cache.capabilities.cull_rule == "count > MAX_ENTRIES" else default


def test_cull(culling: CacheFactory) -> None:
    cache = culling(OPTIONS={"MAX_ENTRIES": 30})
    for i in range(1, 50):
        cache.set(f"cull{i}", "value", 1000)
    assert count_present(cache, 50) == 29


def test_zero_cull(culling: CacheFactory) -> None:
    cache = culling(OPTIONS={"MAX_ENTRIES": 30, "CULL_FREQUENCY": 0})
    for i in range(1, 50):
        cache.set(f"cull{i}", "value", 1000)
    assert count_present(cache, 50) == expected_left(cache, 19)


def test_cull_still_stores_when_max_entries_is_negative(culling: CacheFactory) -> None:
    cache = culling(OPTIONS={"MAX_ENTRIES": -1})
    cache.set("force_cull_delete", "value", 1000)
    assert cache.has_key("force_cull_delete")


def test_max_entries_is_read_on_every_call(culling: CacheFactory) -> None:
    cache = culling(OPTIONS={"CULL_FREQUENCY": 0})
    for i in range(20):
        cache.set(f"cull{i}", "value", 1000)
    cache._max_entries = 10  # type: ignore[attr-defined]  # Django's tests do this
    cache.set("cull99", "value", 1000)
    assert count_present(cache, 100) < 20


@pytest.fixture
def lru(culling: CacheFactory) -> Any:
    cache = culling(OPTIONS={"MAX_ENTRIES": 9})
    if not cache.capabilities.lru:
        pytest.skip("the backend does not cull in LRU order")
    for key in range(9):
        cache.set(key, key, timeout=None)
    return cache


def test_lru_get(lru: Any) -> None:
    for key in range(6):
        assert lru.get(key) == key
    lru.set(9, 9, timeout=None)
    for key in range(6):
        assert lru.get(key) == key
    for key in range(6, 9):
        assert lru.get(key) is None
    assert lru.get(9) == 9


def test_lru_set(lru: Any) -> None:
    for key in range(3, 9):
        lru.set(key, key, timeout=None)
    lru.set(9, 9, timeout=None)
    for key in range(3, 10):
        assert lru.get(key) == key
    for key in range(3):
        assert lru.get(key) is None


def test_lru_incr(lru: Any) -> None:
    for key in range(6):
        assert lru.incr(key) == key + 1
    lru.set(9, 9, timeout=None)
    for key in range(6):
        assert lru.get(key) == key + 1
    for key in range(6, 9):
        assert lru.get(key) is None
    assert lru.get(9) == 9


def test_bad_culling_settings_raise(make_cache: CacheFactory) -> None:
    if not make_cache().capabilities.culls:
        pytest.skip("the backend does not cull by count")
    from memokit import ImproperlyConfigured

    with pytest.raises(ImproperlyConfigured, match="CULL_FREQUENCY must be 0"):
        make_cache(OPTIONS={"CULL_FREQUENCY": -1})
    with pytest.raises(ImproperlyConfigured, match="MAX_ENTRIES must be an int"):
        make_cache(OPTIONS={"MAX_ENTRIES": "many"})


def test_culling_settings_are_public_properties(culling: CacheFactory) -> None:
    from memokit import ImproperlyConfigured
    from memokit.backends.base import CullsByCount

    cache = culling(OPTIONS={"MAX_ENTRIES": 30, "CULL_FREQUENCY": 2})
    assert CullsByCount in type(cache).__mro__
    assert (cache.max_entries, cache.cull_frequency) == (30, 2)
    for i in range(20):
        cache.set(f"cull{i}", "value", 1000)
    cache.max_entries, cache.cull_frequency = 10, 0  # applies at the next write
    cache.set("cull99", "value", 1000)
    assert count_present(cache, 100) < 20
    with pytest.raises(ImproperlyConfigured, match="CULL_FREQUENCY must be 0"):
        cache.cull_frequency = -1
    with pytest.raises(ImproperlyConfigured, match="MAX_ENTRIES must be an int"):
        cache.max_entries = "many"
    assert (cache.max_entries, cache.cull_frequency) == (10, 0)


def test_only_culling_backends_have_culling_properties(make_cache: CacheFactory) -> None:
    from memokit.backends.base import CullsByCount

    cache = make_cache()
    assert isinstance(cache, CullsByCount) == cache.capabilities.culls
