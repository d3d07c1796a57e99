"""memokit.contrib.django: the adapter's shape, its forwarding and its Django-facing errors.

Django's own cache tests run against the adapter in tests/django_suite (a process
of its own); these tests need Django installed but no Django settings.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import pickle
import uuid
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("django", reason="Django is not installed; pip install 'memokit[django]'")

from django.core.cache.backends import base as django_base
from django.core.exceptions import ImproperlyConfigured

import memokit
from memokit.backends.memory import MemoryCache
from memokit.contrib.django import MemokitCache

DjangoBaseCache = django_base.BaseCache
DJANGO_DEFAULT = django_base.DEFAULT_TIMEOUT


def public_methods(cls: type) -> dict[str, Any]:
    # Class methods are construction helpers (memokit's options_to_kwargs), not cache calls.
    members = {
        name: member
        for name, member in inspect.getmembers(cls, callable)
        if not name.startswith("_")
        and not isinstance(member, type)
        and not isinstance(inspect.getattr_static(cls, name), classmethod)
    }
    members["__contains__"] = cls.__contains__
    return members


def parameters(method: Any, default_timeout: object) -> list[tuple[str, Any, Any]]:
    # Each library has its own DEFAULT_TIMEOUT sentinel; compare them as one.
    params = list(inspect.signature(method).parameters.values())[1:]
    return [
        (p.name, "DEFAULT_TIMEOUT" if p.default is default_timeout else p.default, p.kind)
        for p in params
    ]


def make(backend: Any = "memory", **params: Any) -> MemokitCache:
    options = {"BACKEND": backend, **params.pop("OPTIONS", {})}
    location = params.pop("LOCATION", f"django-adapter-{uuid.uuid4().hex}")
    return MemokitCache(location, {**params, "OPTIONS": options})


# -- shape -------------------------------------------------------------------------


def test_every_public_django_method_is_overridden() -> None:
    django_methods = public_methods(DjangoBaseCache)
    assert len(django_methods) >= 36  # Django 5.2: 19 sync, 16 async twins, __contains__
    for name in django_methods:
        assert name in vars(MemokitCache), f"MemokitCache does not override {name}"


def test_adapter_signatures_are_djangos() -> None:
    for name, method in public_methods(DjangoBaseCache).items():
        ours = getattr(MemokitCache, name)
        assert parameters(ours, DJANGO_DEFAULT) == parameters(method, DJANGO_DEFAULT), name
        assert inspect.iscoroutinefunction(ours) == inspect.iscoroutinefunction(method), name


def test_memokit_basecache_signatures_are_djangos_real_ones() -> None:
    django_methods = public_methods(DjangoBaseCache)
    for name, method in public_methods(memokit.BaseCache).items():
        assert name in django_methods, f"memokit.BaseCache.{name} is not a Django method"
        expected = parameters(django_methods[name], DJANGO_DEFAULT)
        assert parameters(method, memokit.DEFAULT_TIMEOUT) == expected, name
        assert inspect.iscoroutinefunction(method) == inspect.iscoroutinefunction(
            django_methods[name]
        ), name
    assert set(django_methods) == set(public_methods(memokit.BaseCache))


def test_is_a_django_cache() -> None:
    assert isinstance(make(), DjangoBaseCache)


# -- forwarding -----------------------------------------------------------------------


class Recorder:
    """Stands in for the memokit cache and records each call the adapter makes."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def __getattr__(self, name: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((name, args, kwargs))
            return f"result of {name}"

        async def acall(*args: Any, **kwargs: Any) -> Any:
            return call(*args, **kwargs)

        is_async = inspect.iscoroutinefunction(getattr(memokit.BaseCache, name, None))
        return acall if is_async else call


RETURN_NONE = {"set", "delete_many", "clear", "close", "validate_key"}
RETURN_NONE |= {"a" + name for name in RETURN_NONE}
SAMPLE_ARGS = {"key": "k", "value": "v", "default": "d", "delta": 2, "keys": ["k"], "data": {}}


@pytest.mark.parametrize("name", sorted(public_methods(DjangoBaseCache)))
def test_each_method_reaches_the_same_memokit_method(name: str) -> None:
    adapter = make()
    recorder = Recorder()
    adapter.memokit = recorder  # type: ignore[assignment]  # a stand-in that records calls
    params = list(inspect.signature(getattr(DjangoBaseCache, name)).parameters.values())[1:]
    required = [p for p in params if p.default is p.empty and p.kind is not p.VAR_KEYWORD]
    args = [SAMPLE_ARGS[p.name] for p in required]
    result = getattr(adapter, name)(*args)
    if inspect.iscoroutine(result):
        result = asyncio.run(result)
    expected = "has_key" if name == "__contains__" else name
    assert [call[0] for call in recorder.calls] == [expected]
    if name in RETURN_NONE:
        assert result is None
    else:
        assert result == f"result of {expected}"
    # Django's DEFAULT_TIMEOUT never reaches memokit: it becomes memokit's.
    for value in [*recorder.calls[0][1], *recorder.calls[0][2].values()]:
        assert value is not DJANGO_DEFAULT
    if any(p.name == "timeout" for p in params):
        assert memokit.DEFAULT_TIMEOUT in recorder.calls[0][1]


def test_explicit_timeouts_pass_through() -> None:
    adapter = make()
    adapter.set("forever", 1, None)
    adapter.set("gone", 1, 0)
    adapter.set("later", 1, 100.5)
    assert adapter.get("forever") == 1
    assert adapter.get("gone") is None
    assert adapter.get("later") == 1
    assert memokit.DEFAULT_TIMEOUT is not DJANGO_DEFAULT


def test_async_twins_are_memokits() -> None:
    adapter = make()

    async def scenario() -> None:
        await adapter.aset("n", 1, 100)
        assert await adapter.aincr("n") == 2
        assert await adapter.aget_or_set("m", lambda: 7) == 7
        assert await adapter.ahas_key("m")
        await adapter.aclose()

    asyncio.run(scenario())
    entry = adapter.memokit._data[adapter.make_key("n")]  # type: ignore[attr-defined]  # memory
    # memokit's aincr keeps the expiry; Django 5.2's own aincr would reset it to TIMEOUT.
    assert entry[1] != float("inf")
    assert adapter.get("n") == 2


# -- settings ---------------------------------------------------------------------------


def test_settings_reach_memokit() -> None:
    def key_func(key: Any, prefix: str, version: Any) -> str:
        return f"{prefix}/{version}/{key}"

    adapter = make(
        TIMEOUT=None,
        KEY_PREFIX="p",
        VERSION=3,
        KEY_FUNCTION=key_func,
        OPTIONS={"MAX_ENTRIES": 7, "CULL_FREQUENCY": 2},
    )
    cache = adapter.memokit
    assert isinstance(cache, MemoryCache)
    assert (cache.default_timeout, cache.key_prefix, cache.version) == (None, "p", 3)
    assert adapter.make_key("k") == "p/3/k"
    assert (adapter._max_entries, adapter._cull_frequency) == (7, 2)
    assert (adapter.default_timeout, adapter.key_prefix, adapter.version) == (None, "p", 3)


def test_memory_is_the_default_backend_and_locations_share_data() -> None:
    one = MemokitCache("shared-location-test", {})
    two = MemokitCache("shared-location-test", {"OPTIONS": {"BACKEND": "memory"}})
    try:
        one.set("k", "v")
        assert type(one.memokit).__name__ == "MemoryCache"
        assert two.get("k") == "v"
    finally:
        one.clear()


def test_path_location_is_accepted(tmp_path: Path) -> None:
    assert make(LOCATION=tmp_path).memokit.location == str(tmp_path)


def test_written_attributes_reach_memokit() -> None:
    adapter = make(OPTIONS={"MAX_ENTRIES": 30})
    adapter.key_func = lambda key, prefix, version: f"custom-{key}"
    assert adapter.memokit.make_key("k") == "custom-k"
    adapter._max_entries = -1
    adapter._cull_frequency = 0
    assert adapter.memokit._max_entries == -1  # type: ignore[attr-defined]  # memory
    assert adapter.memokit._cull_frequency == 0  # type: ignore[attr-defined]  # memory
    adapter.default_timeout = 5
    adapter.key_prefix = "x"
    adapter.version = 9
    assert (adapter.memokit.default_timeout, adapter.memokit.key_prefix) == (5, "x")
    assert adapter.memokit.version == 9


def test_culling_attributes_on_a_backend_that_does_not_cull() -> None:
    adapter = make("dummy")
    with pytest.raises(AttributeError):
        _ = adapter._max_entries
    with pytest.raises(AttributeError, match="does not cull by count"):
        adapter._max_entries = 10


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"TIMEOUTS": 3}, r"unknown setting\(s\) 'TIMEOUTS'"),
        # Django also reads lower-case legacy keys; memokit names the right one instead.
        ({"timeout": 3}, r"known settings: BACKEND, LOCATION, KEY_FUNCTION, KEY_PREFIX, O"),
        ({"OPTIONS": ["MAX_ENTRIES"]}, "OPTIONS must be a mapping"),
    ],
)
def test_bad_settings_the_adapter_checks(params: dict[str, Any], match: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=match) as raised:
        MemokitCache("somewhere", params)
    assert "MemokitCache (LOCATION 'somewhere')" in str(raised.value)


@pytest.mark.parametrize(
    ("params", "error", "match"),
    [
        ({"OPTIONS": {"MAX_ENTRIES": "10"}}, ImproperlyConfigured, "MAX_ENTRIES must be an int"),
        ({"OPTIONS": {"MAX_ENTRYS": 10}}, ImproperlyConfigured, "'MAX_ENTRYS'.*known keys"),
        ({"TIMEOUT": "300"}, ImproperlyConfigured, "TIMEOUT must be a number of seconds"),
        (
            {"OPTIONS": {"BACKEND": "memroy"}},
            django_base.InvalidCacheBackendError,
            r"Unknown BACKEND 'memroy'.*OPTIONS\['BACKEND'\]",
        ),
    ],
)
def test_bad_settings_raise_djangos_errors(
    params: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match) as raised:
        MemokitCache("somewhere", params)
    assert "MemokitCache (LOCATION 'somewhere')" in str(raised.value)
    assert isinstance(raised.value.__cause__, memokit.ImproperlyConfigured)


# -- keys -------------------------------------------------------------------------------


def test_key_warnings_are_djangos() -> None:
    adapter = make()
    key = "key with spaces"
    message = (
        f"Cache key contains characters that will cause errors if used with memcached: ':1:{key}'"
    )
    with pytest.warns(django_base.CacheKeyWarning) as record:
        adapter.set(key, 1)
    assert [str(w.message) for w in record] == [message]
    assert record[0].category is django_base.CacheKeyWarning
    assert record[0].filename == __file__  # points at the caller, not at memokit

    async def async_get() -> Any:
        return await adapter.aget(key)

    with pytest.warns(django_base.CacheKeyWarning, match="contains characters"):
        assert asyncio.run(async_get()) == 1
    with pytest.warns(django_base.CacheKeyWarning, match="longer than 250"):
        adapter.validate_key("a" * 251)


class StrictMemory(MemoryCache):
    """A memory cache that refuses keys memcached cannot store, as memcached does."""

    capabilities = dataclasses.replace(MemoryCache.capabilities, strict_keys=True)


def test_strict_backends_raise_djangos_invalid_cache_key() -> None:
    adapter = make(StrictMemory)
    with pytest.raises(django_base.InvalidCacheKey, match="longer than 250"):
        adapter.get("a" * 250)
    with pytest.raises(django_base.InvalidCacheKey, match="contains characters"):
        adapter.make_and_validate_key("a b")
    assert adapter.get("fine") is None


class BytesCountingMemory(MemoryCache):
    """A backend with key rules of its own, as memcached's (it counts bytes)."""

    def validate_key(self, key: str) -> None:
        if len(key.encode()) > 250:
            raise memokit.InvalidCacheKey(f"{key!r} is longer than 250 bytes")


def test_a_backends_own_key_rules_are_kept_with_djangos_error() -> None:
    adapter = make(BytesCountingMemory)
    key = "清" * 100  # 100 characters, 300 bytes: memokit's base rules would accept it
    with pytest.raises(django_base.InvalidCacheKey, match="longer than 250 bytes") as raised:
        adapter.set(key, 1)
    assert isinstance(raised.value.__cause__, memokit.InvalidCacheKey)
    adapter.set("a b", 1)  # the backend's rules allow a space, so no warning either
    assert adapter.get("a b") == 1


def test_memokit_used_directly_keeps_its_own_classes() -> None:
    # The adapter changes the classes for its own caches only.
    cache = memokit.create_cache({"BACKEND": "memory", "LOCATION": uuid.uuid4().hex})
    with pytest.warns(memokit.CacheKeyWarning) as record:
        cache.set("a b", 1)
    assert record[0].category is memokit.CacheKeyWarning
    assert type(cache) is MemoryCache


def test_adapter_backend_class_keeps_the_backends_name() -> None:
    adapter = make()
    assert type(adapter.memokit).__name__ == "MemoryCache"
    assert isinstance(adapter.memokit, MemoryCache)
    assert "MemokitCache over MemoryCache" in repr(adapter)


def test_pickling_errors_propagate() -> None:
    class Unpicklable:
        def __getstate__(self) -> Any:
            raise pickle.PickleError("no")

    adapter = make()
    with pytest.raises(pickle.PickleError):
        adapter.set("k", Unpicklable())
    with pytest.raises(pickle.PickleError):
        adapter.add("k", Unpicklable())
    assert adapter.get("k") is None
