"""configure(), caches[alias], the default cache proxy, and bad settings."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import memokit
from memokit import (
    CacheHandler,
    DummyCache,
    ImproperlyConfigured,
    InvalidCacheBackendError,
    MemoryCache,
)
from memokit.config import DEFAULT_CACHES


@pytest.fixture(autouse=True)
def restore_default_configuration() -> Iterator[None]:
    yield
    memokit.configure(DEFAULT_CACHES)


def test_no_configuration_gives_a_memory_cache() -> None:
    handler = CacheHandler()
    assert isinstance(handler["default"], MemoryCache)
    assert list(handler) == ["default"]


def test_one_instance_per_alias_shared_by_threads() -> None:
    import threading

    seen: list[Any] = []
    thread = threading.Thread(target=lambda: seen.append(memokit.caches["default"]))
    thread.start()
    thread.join()
    assert seen == [memokit.caches["default"]]


def test_configure_by_short_name_and_dotted_path() -> None:
    memokit.configure(
        {
            "default": {"BACKEND": "memory", "LOCATION": "cfg-a", "TIMEOUT": 60},
            "off": {"BACKEND": "memokit.backends.dummy.DummyCache"},
            "small": {
                "BACKEND": "memory",
                "LOCATION": "cfg-b",
                "KEY_PREFIX": "s",
                "VERSION": 3,
                "KEY_FUNCTION": "memokit.keys.default_key_func",
                "OPTIONS": {"MAX_ENTRIES": 10, "CULL_FREQUENCY": 2},
            },
        }
    )
    assert memokit.caches["default"].default_timeout == 60
    assert isinstance(memokit.caches["off"], DummyCache)
    small = memokit.caches["small"]
    assert isinstance(small, MemoryCache)
    assert small.make_key("k") == "s:3:k"
    assert (small._max_entries, small._cull_frequency) == (10, 2)
    assert "small" in memokit.caches
    assert len(memokit.caches.all()) == 3


def test_default_proxy_follows_reconfiguration() -> None:
    from memokit import cache

    memokit.configure({"default": {"BACKEND": "memory", "LOCATION": "proxy-1"}})
    cache.set("key", "one")
    memokit.configure({"default": {"BACKEND": "memory", "LOCATION": "proxy-2"}})
    assert cache.get("key") is None
    assert "key" not in cache
    memokit.configure({"default": {"BACKEND": "memory", "LOCATION": "proxy-1"}})
    assert cache.get("key") == "one"
    assert "key" in cache
    assert cache == memokit.caches["default"]


@pytest.mark.parametrize(
    ("caches", "error", "message"),
    [
        ({"other": {"BACKEND": "memory"}}, ImproperlyConfigured, "must define a 'default'"),
        ({"default": {"BACKEND": "nope"}}, InvalidCacheBackendError, "Unknown BACKEND 'nope'"),
        (
            {"default": {"BACKEND": "no.such.Backend"}},
            InvalidCacheBackendError,
            "Could not find backend",
        ),
        ({"default": {"BACKEND": "memokit.keys.KeyFunc"}}, InvalidCacheBackendError, "not a"),
        ({"default": {"LOCATION": "x"}}, ImproperlyConfigured, "has no BACKEND"),
        ({"default": {"BACKEND": "memory", "TIMEOUT": "10"}}, ImproperlyConfigured, "TIMEOUT"),
        ({"default": {"BACKEND": "memory", "TIMOUT": 10}}, ImproperlyConfigured, "'TIMOUT'"),
        (
            {"default": {"BACKEND": "memory", "OPTIONS": {"CULL_FREQUENCY": -1}}},
            ImproperlyConfigured,
            "CULL_FREQUENCY",
        ),
        (
            {"default": {"BACKEND": "memory", "OPTIONS": {"MAX_ENTRIS": 1}}},
            ImproperlyConfigured,
            r"'MAX_ENTRIS'.*known keys: COMPRESS_LEVEL, COMPRESS_MIN_SIZE, COMPRESSOR, "
            r"CULL_FREQUENCY, "
            r"LOCK_TIMEOUT, MAX_ENTRIES, OLD_SECRETS, SECRET, SERIALIZER",
        ),
        (
            {"default": {"BACKEND": "dummy", "OPTIONS": {"MAX_ENTRIES": 1}}},
            ImproperlyConfigured,
            "MAX_ENTRIES",
        ),
        (
            {"default": {"BACKEND": "memory", "KEY_FUNCTION": "no_dots"}},
            ImproperlyConfigured,
            "KEY_FUNCTION",
        ),
        (
            {"default": {"BACKEND": "memory", "KEY_FUNCTION": 42}},
            ImproperlyConfigured,
            "KEY_FUNCTION must be a callable",
        ),
        (
            {"default": {"BACKEND": "memory", "OPTIONS": {"SERIALIZER": "json.dumps"}}},
            ImproperlyConfigured,
            "SERIALIZER",
        ),
        ({"default": {"BACKEND": "memory", "KEY_PREFIX": 5}}, ImproperlyConfigured, "KEY_PREFIX"),
        ({"default": "memory"}, ImproperlyConfigured, "must be a mapping"),
        ({"default": {"BACKEND": "memory", "VERSION": "2"}}, ImproperlyConfigured, "VERSION"),
        ({"default": {"BACKEND": "memory", "LOCATION": ["a"]}}, ImproperlyConfigured, "LOCATION"),
        (
            {"default": {"BACKEND": "memory", "TIMEOUT": float("nan")}},
            ImproperlyConfigured,
            "TIMEOUT",
        ),
        (
            {"default": {"BACKEND": "memory", "OPTIONS": {"MAX_ENTRIES": 1, "max_entries": 2}}},
            ImproperlyConfigured,
            "MAX_ENTRIES twice",
        ),
    ],
)
def test_bad_settings_raise_at_configure(caches: Any, error: type[Exception], message: str) -> None:
    before = memokit.caches["default"]
    with pytest.raises(error, match=message):
        memokit.configure(caches)
    assert memokit.caches["default"] is before


def test_unknown_alias_names_the_configured_ones() -> None:
    with pytest.raises(InvalidCacheBackendError, match=r"'nope' is not configured.*default"):
        memokit.caches["nope"]


def test_configure_closes_the_old_instances(monkeypatch: pytest.MonkeyPatch) -> None:
    old = memokit.caches["default"]
    closed = []
    monkeypatch.setattr(old, "close", lambda **kw: closed.append(True))
    memokit.configure({"default": {"BACKEND": "memory"}})
    assert closed == [True]
    assert memokit.caches["default"] is not old


def test_serializer_by_dotted_path() -> None:
    memokit.configure(
        {
            "default": {
                "BACKEND": "memory",
                "OPTIONS": {"SERIALIZER": "memokit.serializers.PickleSerializer"},
            }
        }
    )
    memokit.cache.set("key", [1])
    assert memokit.cache.get("key") == [1]


def test_close_all() -> None:
    memokit.caches.close_all()
    memokit.cache.set("still", "works")
    assert memokit.cache.get("still") == "works"


def test_serializer_given_as_a_class_is_instantiated() -> None:
    from memokit import PickleSerializer

    cache = MemoryCache("serializer-class", serializer=PickleSerializer)  # type: ignore[arg-type]
    cache.set("key", [1])
    assert cache.get("key") == [1]


def test_default_proxy_is_a_base_cache() -> None:
    assert isinstance(memokit.cache, memokit.BaseCache)
