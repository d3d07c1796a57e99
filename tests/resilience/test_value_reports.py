"""Value failures are reported once per key and window, and counted apart from outages."""

from __future__ import annotations

import pickle
import warnings
from typing import Any

import pytest
from freezegun import freeze_time

from memokit import (
    CacheInfo,
    CorruptEntryWarning,
    ErrorCounts,
    MemoryCache,
    ValueFailureWarning,
    ValueNotStoredWarning,
    breaker_for,
    cached,
    configure_breaker,
)
from memokit.backends.memory import _serialized
from memokit.entry import ENCODED
from memokit.resilience import report_value_failure


def damage(cache: MemoryCache, key: str) -> None:
    cache._set(cache.make_key(key), _serialized(b"\x80\x05not a pickle"), None)


def test_a_key_is_reported_again_only_after_the_window() -> None:
    cache = MemoryCache("value-reports-window")
    configure_breaker(cache=cache, window=10)
    with freeze_time() as frozen, warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("error")
        warnings.simplefilter("always", CorruptEntryWarning)
        damage(cache, "k")
        assert cache.get("k") is None
        frozen.tick(9.9)
        damage(cache, "k")
        assert cache.get("k") is None  # the same window: counted as a miss, not warned
        frozen.tick(0.2)
        damage(cache, "k")
        assert cache.get("k") is None  # a new window
    assert len(record) == 2


def test_kinds_are_reported_apart_and_messages_name_the_key_and_cache() -> None:
    cache = MemoryCache("value-reports-kinds")
    with pytest.warns(CorruptEntryWarning) as first:
        assert report_value_failure(cache, ":1:k", "cannot be read")
    with pytest.warns(ValueNotStoredWarning):
        assert report_value_failure(cache, ":1:k", "was not stored", ValueNotStoredWarning)
    assert not report_value_failure(cache, ":1:k", "cannot be read")
    message = str(first[0].message)
    assert message.startswith("':1:k' in MemoryCache(location='value-reports-kinds')")
    assert issubclass(CorruptEntryWarning, ValueFailureWarning)
    assert issubclass(ValueFailureWarning, RuntimeWarning)


def test_the_memory_of_reported_keys_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("memokit.resilience._MAX_REPORTED", 8)
    cache = MemoryCache("value-reports-bounded")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CorruptEntryWarning)
        for n in range(100):
            report_value_failure(cache, f"k{n}", "cannot be read")
    assert len(breaker_for(cache).reported) <= 8


def test_error_counts_are_an_int_with_their_two_kinds() -> None:
    counts = ErrorCounts(2, 3)
    assert counts == 5
    assert (counts.backend, counts.value) == (2, 3)
    assert repr(counts) == "ErrorCounts(backend=2, value=3)"
    restored = pickle.loads(pickle.dumps(counts))
    assert (restored.backend, restored.value) == (2, 3)
    assert CacheInfo(1, 2, ErrorCounts()) == (1, 2, 0)


def test_value_failures_are_counted_apart_from_backend_failures() -> None:
    cache = MemoryCache("value-reports-counts")

    @cached(cache=cache)
    def f() -> list[int]:
        return [1]

    assert f() == [1]
    # A current entry whose value cannot be read (a foreign payload is a plain miss).
    made = cache.make_key(f.key())
    _, created, versions, _ = cache._get(made)
    cache._set(made, (ENCODED, created, versions, _serialized(b"\x80\x05not a pickle")), None)
    with pytest.warns(CorruptEntryWarning):
        assert f() == [1]
    info: Any = f.cache_info()
    assert (info.hits, info.misses, info.errors) == (0, 2, 1)
    assert (info.errors.backend, info.errors.value) == (0, 1)
    assert not breaker_for(cache).is_open
