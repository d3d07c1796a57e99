"""Values are copies, and unpicklable values fail cleanly."""

from __future__ import annotations

import pickle
import threading
from typing import Any

import pytest

from memokit import BaseCache


class Unpicklable:
    def __getstate__(self) -> Any:
        raise pickle.PickleError("refusing to pickle")


def test_mutating_a_returned_value_does_not_change_the_cache(cache: BaseCache) -> None:
    cache.set("list", [1])
    cache.get("list").append(2)
    assert cache.get("list") == [1]
    value = {"a": [1]}
    cache.set("dict", value)
    value["a"].append(2)
    assert cache.get("dict") == {"a": [1]}
    assert cache.get_many(["list"])["list"] == [1]


@pytest.mark.parametrize(
    "value", [Unpicklable(), threading.Lock(), lambda: 1], ids=["getstate", "lock", "lambda"]
)
def test_set_and_add_of_an_unpicklable_value_raise_and_store_nothing(
    cache: BaseCache, value: object
) -> None:
    with pytest.raises(pickle.PickleError):
        cache.set("key", value)
    assert not cache.has_key("key")
    with pytest.raises(pickle.PickleError):
        cache.add("key", value)
    assert not cache.has_key("key")
    with pytest.raises(pickle.PickleError):
        cache.set_many({"other": 1, "key": value})
    assert cache.get_many(["key", "other"]) == {}
    with pytest.raises(pickle.PickleError):
        cache.get_or_set("key", lambda: value)
    assert not cache.has_key("key")


def test_unpicklable_set_keeps_the_old_value(cache: BaseCache) -> None:
    cache.set("key", "old")
    with pytest.raises(pickle.PickleError):
        cache.set("key", Unpicklable())
    assert cache.get("key") == "old"
