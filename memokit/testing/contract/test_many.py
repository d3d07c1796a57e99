"""The batch contract: get_many, set_many, delete_many."""

from __future__ import annotations

import warnings

import pytest

from memokit import BaseCache, ValueNotStoredWarning


def test_get_many_returns_only_present_keys(cache: BaseCache) -> None:
    cache.set_many({"a": "a", "c": "c", "d": "d", "n": None})
    assert cache.get_many(["a", "c", "d"]) == {"a": "a", "c": "c", "d": "d"}
    assert cache.get_many(["a", "b", "e"]) == {"a": "a"}
    assert cache.get_many(iter(["a", "b", "e"])) == {"a": "a"}
    assert cache.get_many(["n"]) == {"n": None}
    assert cache.get_many([]) == {}


def test_get_many_collapses_duplicates(cache: BaseCache) -> None:
    cache.set("g1", 1)
    assert cache.get_many(["g1", "g1", "g2"]) == {"g1": 1}


def test_set_many(cache: BaseCache) -> None:
    assert cache.set_many({"key1": "spam", "key2": "eggs"}) == []
    assert cache.get("key1") == "spam"
    assert cache.get("key2") == "eggs"
    assert cache.set_many({}) == []


def test_delete_many(cache: BaseCache) -> None:
    cache.set_many({"key1": "spam", "key2": "eggs", "key3": "ham"})
    assert cache.delete_many(["key1", "key2"]) is None
    assert cache.get("key1") is None
    assert cache.get("key2") is None
    assert cache.get("key3") == "ham"
    assert cache.delete_many([]) is None
    assert cache.delete_many(iter(["key3", "never"])) is None
    assert cache.get("key3") is None


def test_set_many_with_zero_timeout_stores_nothing_and_removes_old_values(
    cache: BaseCache,
) -> None:
    cache.set("key1", "old")
    assert cache.set_many({"key1": "spam", "key2": "eggs"}, 0) == []
    assert cache.get_many(["key1", "key2"]) == {}


def test_set_many_reports_failures_by_the_callers_keys(
    cache: BaseCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = cache.make_key(42)
    monkeypatch.setattr(cache, "_set_many", lambda items, timeout: [made])
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        assert cache.set_many({42: "a", "b": "b"}) == [42]
    warned = [w for w in record if issubclass(w.category, ValueNotStoredWarning)]
    # Redis refuses a SET only for a server condition (maxmemory, a replica): it is
    # logged once as a backend failure, not warned about per key.
    assert len(warned) == (0 if type(cache).__name__.startswith("Redis") else 1)
    assert all("set_many lists its key" in str(w.message) for w in warned)


def test_keys_that_make_one_final_key_collapse(cache: BaseCache) -> None:
    # 42 and "42" make the same final key; get_many answers once, with the later one.
    cache.set(42, "v")
    assert cache.get_many([42, "42"]) == {"42": "v"}
