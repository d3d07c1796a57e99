"""incr and decr."""

from __future__ import annotations

import pytest

from memokit import BaseCache


def test_incr(cache: BaseCache) -> None:
    cache.set("answer", 41)
    assert cache.incr("answer") == 42
    assert cache.get("answer") == 42
    assert cache.incr("answer", 10) == 52
    assert cache.incr("answer", -10) == 42
    with pytest.raises(ValueError, match="Key 'does_not_exist' not found"):
        cache.incr("does_not_exist")
    with pytest.raises(ValueError, match="Key 'does_not_exist' not found"):
        cache.incr("does_not_exist", -1)
    cache.set("null", None)
    with pytest.raises(TypeError):
        cache.incr("null")


def test_decr(cache: BaseCache) -> None:
    cache.set("answer", 43)
    assert cache.decr("answer") == 42
    assert cache.get("answer") == 42
    assert cache.decr("answer", 10) == 32
    assert cache.decr("answer", -10) == 42
    with pytest.raises(ValueError, match="Key 'does_not_exist' not found"):
        cache.decr("does_not_exist")
    cache.set("null", None)
    with pytest.raises(TypeError):
        cache.decr("null")


def test_decr_below_zero(cache: BaseCache) -> None:
    cache.set("key", 1)
    assert cache.decr("key", 5) == -4


def test_incr_big_ints(cache: BaseCache) -> None:
    cache.set("key", 2**64)
    assert cache.incr("key") == 2**64 + 1
