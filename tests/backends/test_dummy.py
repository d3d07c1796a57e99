"""The dummy backend: the whole interface, nothing stored (Django's DummyCache results)."""

from __future__ import annotations

import asyncio
import threading

import pytest

from memokit import DummyCache


@pytest.fixture
def dummy() -> DummyCache:
    return DummyCache()


def test_results(dummy: DummyCache) -> None:
    assert dummy.set("key", "value") is None
    assert dummy.get("key") is None
    assert dummy.get("key", "default") == "default"
    assert dummy.add("key", "value") is True
    assert dummy.add("key", "value") is True
    assert dummy.has_key("key") is False
    assert "key" not in dummy
    assert dummy.delete("key") is False
    assert dummy.touch("key") is False
    assert dummy.touch("key", 0) is False
    assert dummy.get_many(["a", "b"]) == {}
    assert dummy.set_many({"a": 1, "b": 2}) == []
    assert dummy.set_many({"a": 1}, version="1") == []  # type: ignore[arg-type]
    assert dummy.delete_many(["a", "b"]) is None
    assert dummy.clear() is None
    assert dummy.close() is None


def test_get_or_set_returns_the_default_every_time(dummy: DummyCache) -> None:
    calls = []
    assert dummy.get_or_set("key", lambda: calls.append(1) or "made") == "made"
    assert dummy.get_or_set("key", lambda: calls.append(1) or "made") == "made"
    assert calls == [1, 1]
    assert dummy.get_or_set("key", None) is None


@pytest.mark.parametrize("method", ["incr", "decr", "incr_version", "decr_version"])
def test_counters_and_versions_raise(dummy: DummyCache, method: str) -> None:
    with pytest.raises(ValueError, match="Key 'key' not found"):
        getattr(dummy, method)("key")
    with pytest.raises(ValueError, match="Key 'key' not found"):
        asyncio.run(getattr(dummy, "a" + method)("key"))


def test_unpicklable_values_are_accepted(dummy: DummyCache) -> None:
    dummy.set("key", threading.Lock())
    assert dummy.add("key", threading.Lock()) is True


def test_declares_it_stores_nothing(dummy: DummyCache) -> None:
    assert dummy.capabilities.stores is False
