"""Timeouts: DEFAULT_TIMEOUT, None, 0, negative, float, long; touch; expiry kept by incr."""

from __future__ import annotations

from typing import Any

import pytest

from memokit import DEFAULT_TIMEOUT, BaseCache

CacheFactory = Any
Clock = Any


def test_entries_expire(cache: BaseCache, clock: Clock) -> None:
    cache.set("expire1", "very quickly", 1)
    cache.set("expire2", "very quickly", 1)
    cache.set("expire3", "very quickly", 1)
    clock.advance(2)
    assert cache.get("expire1") is None
    assert cache.add("expire2", "newvalue") is True
    assert cache.get("expire2") == "newvalue"
    assert not cache.has_key("expire3")
    assert cache.get_many(["expire1", "expire3"]) == {}


def test_entry_alive_before_its_timeout(cache: BaseCache, clock: Clock) -> None:
    cache.set("key", "value", 3)
    clock.advance(1)
    assert cache.get("key") == "value"


def test_default_timeout_comes_from_settings(make_cache: CacheFactory, clock: Clock) -> None:
    cache = make_cache(TIMEOUT=1)
    cache.set("key", "value")
    cache.set("explicit", "value", DEFAULT_TIMEOUT)
    clock.advance(2)
    assert cache.get("key") is None
    assert cache.get("explicit") is None


def test_touch(cache: BaseCache, clock: Clock) -> None:
    cache.set("expire1", "very quickly", timeout=1)
    assert cache.touch("expire1", timeout=4) is True
    clock.advance(2)
    assert cache.has_key("expire1")
    clock.advance(3)
    assert not cache.has_key("expire1")
    cache.set("expire2", "very quickly", timeout=1)
    assert cache.touch("expire2") is True  # the default timeout, 300 s
    clock.advance(2)
    assert cache.has_key("expire2")
    assert cache.touch("nonexistent") is False


def test_touch_of_an_expired_entry_is_false(cache: BaseCache, clock: Clock) -> None:
    cache.set("key", "value", 1)
    clock.advance(2)
    assert cache.touch("key", 100) is False
    assert cache.get("key") is None


def test_delete_of_an_expired_entry_is_false(cache: BaseCache, clock: Clock) -> None:
    cache.set("key", "value", 1)
    clock.advance(2)
    assert cache.delete("key") is False


def test_forever_timeout(cache: BaseCache, clock: Clock) -> None:
    cache.set("key1", "eggs", None)
    assert cache.get("key1") == "eggs"
    assert cache.add("key2", "ham", None) is True
    assert cache.get("key2") == "ham"
    assert cache.add("key1", "new eggs", None) is False
    cache.set_many({"key3": "sausage", "key4": "lobster bisque"}, None)
    assert cache.get("key3") == "sausage"
    cache.set("key5", "belgian fries", timeout=1)
    assert cache.touch("key5", timeout=None) is True
    clock.advance(2)
    assert cache.get("key5") == "belgian fries"


def test_touch_none_on_a_never_expiring_key_is_true(cache: BaseCache) -> None:
    cache.set("key", "value", None)
    assert cache.touch("key", None) is True
    assert cache.get("key") == "value"


def test_zero_timeout_stores_nothing(cache: BaseCache) -> None:
    cache.set("key1", "eggs", 0)
    assert cache.get("key1") is None
    assert cache.add("key2", "ham", 0) is True
    assert cache.get("key2") is None
    assert cache.add("key2", "ham", 0) is True
    cache.set_many({"key3": "sausage", "key4": "lobster bisque"}, 0)
    assert cache.get("key3") is None
    cache.set("key5", "belgian fries", timeout=5)
    assert cache.touch("key5", timeout=0) is True
    assert cache.get("key5") is None


def test_zero_timeout_set_removes_an_existing_value(cache: BaseCache) -> None:
    cache.set("key", "old")
    cache.set("key", "new", 0)
    assert cache.get("key") is None


def test_zero_timeout_add_over_a_live_key_is_false(cache: BaseCache) -> None:
    cache.set("key", "old")
    assert cache.add("key", "new", 0) is False
    assert cache.get("key") == "old"


@pytest.mark.parametrize("timeout", [-1, -5.5, -(10**9)])
def test_negative_timeout_means_expired(cache: BaseCache, timeout: float) -> None:
    assert cache.add("key", "value", timeout) is True
    assert cache.get("key") is None
    cache.set("key", "value", timeout)
    assert cache.get("key") is None


def test_float_timeout(cache: BaseCache) -> None:
    cache.set("key1", "spam", 100.2)
    assert cache.get("key1") == "spam"


def test_sub_second_timeouts_keep_their_fraction(cache: BaseCache, clock: Clock) -> None:
    if not cache.capabilities.sub_second_expiry:
        pytest.skip("the backend counts whole seconds")
    cache.set("key", "value", 1.5)
    clock.advance(1.2)
    assert cache.get("key") == "value"
    clock.advance(0.5)
    assert cache.get("key") is None


def test_long_timeout(cache: BaseCache) -> None:
    thirty_days_plus = 60 * 60 * 24 * 30 + 1
    cache.set("key1", "eggs", thirty_days_plus)
    assert cache.get("key1") == "eggs"
    assert cache.add("key2", "ham", thirty_days_plus) is True
    assert cache.get("key2") == "ham"
    cache.set_many({"key3": "sausage", "key4": "lobster bisque"}, thirty_days_plus)
    assert cache.get("key3") == "sausage"


def test_set_many_expiration(cache: BaseCache, clock: Clock) -> None:
    cache.set_many({"key1": "spam", "key2": "eggs"}, 1)
    clock.advance(2)
    assert cache.get("key1") is None
    assert cache.get("key2") is None


def test_incr_keeps_the_expiry(cache: BaseCache, clock: Clock) -> None:
    # 4 s, checked at 2 s and 5 s: a server whose clock ticks whole seconds
    # (memcached) may end an entry up to a second early or late.
    cache.set("never", 1, None)
    cache.set("soon", 1, 4)
    assert cache.incr("never") == 2
    assert cache.incr("soon") == 2
    assert cache.decr("soon") == 1
    clock.advance(2)
    assert cache.get("soon") == 1
    clock.advance(3)
    assert cache.get("soon") is None
    assert cache.get("never") == 2


def test_incr_of_an_expired_entry_is_missing(cache: BaseCache, clock: Clock) -> None:
    cache.set("key", 1, 1)
    clock.advance(2)
    with pytest.raises(ValueError, match="Key 'key' not found"):
        cache.incr("key")


@pytest.mark.parametrize("bad", ["10", b"10", [1], True, object(), float("nan")])
def test_timeout_that_is_not_a_number_raises_at_once(cache: BaseCache, bad: object) -> None:
    for call in (
        lambda: cache.set("key", 1, bad),  # type: ignore[arg-type]
        lambda: cache.add("key", 1, bad),  # type: ignore[arg-type]
        lambda: cache.touch("key", bad),  # type: ignore[arg-type]
        lambda: cache.set_many({"key": 1}, bad),  # type: ignore[arg-type]
        lambda: cache.get_or_set("key", 1, bad),  # type: ignore[arg-type]
    ):
        with pytest.raises(TypeError, match="timeout must be a"):
            call()
    assert cache.get("key") is None


def test_timeout_none_in_settings_means_never(make_cache: CacheFactory) -> None:
    cache = make_cache(TIMEOUT=None)
    assert cache.default_timeout is None
    assert cache.get_backend_timeout() is None
    cache.set("key", 1)
    assert cache.get("key") == 1


def test_default_timeout_is_300(cache: BaseCache) -> None:
    assert cache.default_timeout == 300


def test_other_real_numbers_are_seconds(cache: BaseCache, clock: Clock) -> None:
    from decimal import Decimal
    from fractions import Fraction

    cache.set("fraction", 1, Fraction(3, 1))
    cache.set("infinite", 1, float("inf"))
    assert cache.touch("infinite", float("inf")) is True
    clock.advance(2)
    assert cache.get("fraction") == 1
    clock.advance(2)
    assert cache.get("fraction") is None
    assert cache.get("infinite") == 1
    with pytest.raises(TypeError, match="timeout must be"):
        cache.set("decimal", 1, Decimal(3))  # type: ignore[arg-type]  # not a Real


def test_incr_version_gives_the_default_timeout(make_cache: CacheFactory, clock: Clock) -> None:
    cache = make_cache(TIMEOUT=1)
    cache.set("key", "value", None)
    assert cache.incr_version("key") == 2
    clock.advance(2)
    assert cache.get("key", version=2) is None


def test_incr_version_by_zero_keeps_the_value(cache: BaseCache) -> None:
    cache.set("key", "value")
    assert cache.incr_version("key", 0) == 1
    assert cache.get("key") == "value"


def test_an_invalid_timeout_raises_before_the_default_is_called(cache: BaseCache) -> None:
    calls = []
    with pytest.raises(TypeError, match="timeout must be"):
        cache.get_or_set("key", lambda: calls.append(1), "soon")  # type: ignore[arg-type]
    assert calls == []
