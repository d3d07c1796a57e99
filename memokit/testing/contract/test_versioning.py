"""Versions, key prefixes and custom key functions."""

from __future__ import annotations

from typing import Any

import pytest

from memokit import BaseCache

CacheFactory = Any


def custom_key_func(key: Any, key_prefix: str, version: Any) -> str:
    """A key function other than the default, importable by dotted path."""
    return f"CUSTOM-{key_prefix}-{version}-{key}"


@pytest.fixture
def v2(make_cache: CacheFactory) -> BaseCache:
    return make_cache(VERSION=2)


def test_prefix_separates_keys(make_cache: CacheFactory) -> None:
    cache, prefixed = make_cache(), make_cache(KEY_PREFIX="cacheprefix")
    cache.set("somekey", "value")
    assert not prefixed.has_key("somekey")
    prefixed.set("somekey", "value2")
    assert cache.get("somekey") == "value"
    assert prefixed.get("somekey") == "value2"


def test_make_key_default_format(make_cache: CacheFactory) -> None:
    assert make_cache().make_key("k") == ":1:k"
    assert make_cache(KEY_PREFIX="p", VERSION=3).make_key("k") == "p:3:k"
    assert make_cache().make_key("k", version=7) == ":7:k"


def test_get_set_versions(cache: BaseCache, v2: BaseCache) -> None:
    cache.set("answer1", 42)
    assert cache.get("answer1") == 42
    assert cache.get("answer1", version=1) == 42
    assert cache.get("answer1", version=2) is None
    assert v2.get("answer1") is None
    assert v2.get("answer1", version=1) == 42

    cache.set("answer2", 42, version=2)
    assert cache.get("answer2") is None
    assert cache.get("answer2", version=2) == 42
    assert v2.get("answer2") == 42

    v2.set("answer3", 42)
    assert cache.get("answer3") is None
    assert cache.get("answer3", version=2) == 42
    assert v2.get("answer3", version=1) is None

    v2.set("answer4", 42, version=1)
    assert cache.get("answer4") == 42
    assert v2.get("answer4") is None


def test_string_and_int_versions_make_the_same_key(cache: BaseCache) -> None:
    cache.set("key", "int-2", version=2)
    assert cache.get("key", version="2") == "int-2"  # type: ignore[arg-type]


def test_add_versions(cache: BaseCache, v2: BaseCache) -> None:
    assert cache.add("answer1", 42, version=2) is True
    assert cache.add("answer1", 37, version=2) is False
    assert cache.add("answer1", 37, version=1) is True
    assert cache.get("answer1", version=1) == 37
    assert cache.get("answer1", version=2) == 42
    assert v2.add("answer2", 42) is True
    assert v2.add("answer2", 37) is False
    assert v2.add("answer2", 37, version=1) is True
    assert cache.get("answer2") == 37


def test_has_key_delete_incr_by_version(cache: BaseCache, v2: BaseCache) -> None:
    cache.set("answer1", 42)
    assert cache.has_key("answer1")
    assert cache.has_key("answer1", version=1)
    assert not cache.has_key("answer1", version=2)
    assert not v2.has_key("answer1")
    assert v2.has_key("answer1", version=1)

    cache.set("answer2", 37, version=1)
    cache.set("answer2", 42, version=2)
    assert cache.delete("answer2", version=2) is True
    assert cache.get("answer2", version=1) == 37
    assert cache.get("answer2", version=2) is None

    cache.set("n", 1, version=1)
    cache.set("n", 10, version=2)
    assert cache.incr("n", version=2) == 11
    assert v2.decr("n") == 10
    assert cache.get("n") == 1


def test_get_set_many_versions(cache: BaseCache, v2: BaseCache) -> None:
    cache.set_many({"ford1": 37, "arthur1": 42})
    assert cache.get_many(["ford1", "arthur1"]) == {"ford1": 37, "arthur1": 42}
    assert cache.get_many(["ford1", "arthur1"], version=2) == {}
    assert v2.get_many(["ford1", "arthur1"], version=1) == {"ford1": 37, "arthur1": 42}
    v2.set_many({"ford2": 37})
    assert cache.get_many(["ford2"], version=2) == {"ford2": 37}
    assert cache.get_many(["ford2"]) == {}
    v2.delete_many(["ford2"])
    assert cache.get_many(["ford2"], version=2) == {}


def test_incr_version(cache: BaseCache, v2: BaseCache) -> None:
    cache.set("answer", 42, version=2)
    assert cache.get("answer") is None
    assert cache.get("answer", version=2) == 42
    assert cache.incr_version("answer", version=2) == 3
    assert cache.get("answer", version=2) is None
    assert cache.get("answer", version=3) == 42

    v2.set("answer2", 42)
    assert v2.incr_version("answer2") == 3
    assert v2.get("answer2") is None
    assert v2.get("answer2", version=3) == 42

    assert v2.incr_version("answer2", delta=2, version=3) == 5
    assert v2.get("answer2", version=5) == 42

    with pytest.raises(ValueError, match="Key 'does_not_exist' not found"):
        cache.incr_version("does_not_exist")

    cache.set("null", None)
    assert cache.incr_version("null") == 2
    assert cache.get("null", "default", version=2) is None


def test_decr_version(cache: BaseCache, v2: BaseCache) -> None:
    cache.set("answer", 42, version=2)
    assert cache.decr_version("answer", version=2) == 1
    assert cache.get("answer") == 42
    assert cache.get("answer", version=2) is None
    v2.set("answer2", 42)
    assert v2.decr_version("answer2") == 1
    assert v2.get("answer2", version=1) == 42
    with pytest.raises(ValueError, match="Key 'does_not_exist' not found"):
        cache.decr_version("does_not_exist", version=2)
    cache.set("null", None, version=2)
    assert cache.decr_version("null", version=2) == 1
    assert cache.get("null", "default", version=1) is None


def test_incr_version_overwrites_the_target_version(cache: BaseCache) -> None:
    cache.set("key", "v1")
    cache.set("key", "v2", version=2)
    assert cache.incr_version("key") == 2
    assert cache.get("key", version=2) == "v1"


def test_custom_key_function_callable_and_dotted_path(make_cache: CacheFactory) -> None:
    cache = make_cache()
    by_callable = make_cache(KEY_FUNCTION=custom_key_func)
    by_path = make_cache(KEY_FUNCTION=f"{__name__}.custom_key_func")
    cache.set("answer1", 42)
    assert by_callable.get("answer1") is None
    by_callable.set("answer2", 42)
    assert cache.get("answer2") is None
    assert by_path.get("answer2") == 42
    assert by_callable.make_key("k") == "CUSTOM--1-k"


def test_key_function_is_read_at_call_time(cache: BaseCache) -> None:
    cache.set("key", "default-func")
    cache.key_func = custom_key_func
    assert cache.get("key") is None
    cache.set("key", "custom-func")
    assert cache.get("key") == "custom-func"
