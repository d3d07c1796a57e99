"""Key validation: Django's CacheKeyWarning rules on all ten key operations."""

from __future__ import annotations

import asyncio
import contextlib
import os
import warnings
from collections.abc import Callable
from typing import Any

import pytest

from memokit import BackendError, BaseCache, CacheKeyWarning, InvalidCacheKey

CacheFactory = Any

KEY_OPERATIONS: dict[str, Callable[[BaseCache, str], object]] = {
    "add": lambda c, k: c.add(k, 1),
    "get": lambda c, k: c.get(k),
    "set": lambda c, k: c.set(k, 1),
    "incr": lambda c, k: c.incr(k),
    "decr": lambda c, k: c.decr(k),
    "touch": lambda c, k: c.touch(k),
    "delete": lambda c, k: c.delete(k),
    "get_many": lambda c, k: c.get_many([k, "b"]),
    "set_many": lambda c, k: c.set_many({k: 1, "b": 2}),
    "delete_many": lambda c, k: c.delete_many([k, "b"]),
}


def identity_key(key: Any, key_prefix: str, version: Any) -> str:
    return str(key)


@pytest.mark.parametrize("operation", list(KEY_OPERATIONS))
def test_space_and_control_characters(make_any_cache: CacheFactory, operation: str) -> None:
    cache = make_any_cache(KEY_FUNCTION=identity_key)
    key = "key with spaces and 清"
    expected = (
        f"Cache key contains characters that will cause errors if used with memcached: {key!r}"
    )
    check_rejected_one(cache, key, expected, operation)


def call_ignoring_missing_key(
    operation: Callable[[BaseCache, str], object], cache: BaseCache, key: str
) -> None:
    # incr/decr of a missing key raise ValueError after the warning was given.
    with contextlib.suppress(ValueError):
        operation(cache, key)


def check_rejected_one(cache: BaseCache, key: str, expected: str, name: str) -> None:
    operation = KEY_OPERATIONS[name]
    if cache.capabilities.strict_keys:
        with pytest.raises(InvalidCacheKey) as raised:
            operation(cache, key)
        assert str(raised.value) == expected
        return
    with pytest.warns(CacheKeyWarning) as record:
        call_ignoring_missing_key(operation, cache, key)
    assert [str(w.message) for w in record] == [expected]


@pytest.mark.parametrize("operation", list(KEY_OPERATIONS))
def test_key_too_long(make_any_cache: CacheFactory, operation: str) -> None:
    cache = make_any_cache(KEY_FUNCTION=identity_key)
    key = "a" * 250 + "清"
    expected = f"Cache key will cause errors if used with memcached: {key!r} (longer than 250)"
    check_rejected_one(cache, key, expected, operation)


@pytest.mark.parametrize("operation", list(KEY_OPERATIONS))
def test_key_made_too_long_by_the_version(make_any_cache: CacheFactory, operation: str) -> None:
    cache = make_any_cache()
    key = "a" * 248  # ":1:" makes it 251 characters
    made = ":1:" + key
    expected = f"Cache key will cause errors if used with memcached: {made!r} (longer than 250)"
    check_rejected_one(cache, key, expected, operation)


@pytest.mark.parametrize("bad", ["\x00", "\t", "\n", "\r", "\x7f", " ", "\r\nflush_all\r\n"])
def test_each_bad_character(make_any_cache: CacheFactory, bad: str) -> None:
    cache = make_any_cache()
    made = f":1:k{bad}"
    expected = (
        f"Cache key contains characters that will cause errors if used with memcached: {made!r}"
    )
    check_rejected_one(cache, f"k{bad}", expected, "get")


def test_both_problems_give_both_messages(make_any_cache: CacheFactory) -> None:
    cache = make_any_cache()
    if cache.capabilities.strict_keys:
        pytest.skip("a strict backend raises at the first problem")
    with pytest.warns(CacheKeyWarning) as record:
        cache.get("a b" * 100)
    assert len(record) == 2


def test_good_keys_pass_silently(make_any_cache: CacheFactory) -> None:
    cache = make_any_cache()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cache.set("a" * 247, 1)  # 250 characters once made
        cache.set("清" * 82, 1)  # non-ASCII is fine: 249 bytes once made
        cache.get("ok-key")
        if not cache.capabilities.strict_keys:
            cache.set("清" * 200, 1)  # counted in characters, as Django does


def test_strict_backends_count_bytes(make_any_cache: CacheFactory) -> None:
    cache = make_any_cache()
    if not cache.capabilities.strict_keys:
        pytest.skip("only a strict backend checks the encoded length")
    with pytest.raises(InvalidCacheKey, match="longer than 250 bytes once encoded as UTF-8"):
        cache.set("清" * 83, 1)  # 83 characters, 252 bytes once made


def test_validate_key_can_be_overridden(make_cache: CacheFactory) -> None:
    cache = make_cache()
    cache.validate_key = lambda key: None  # type: ignore[method-assign]
    key = "some key with spaces" * 15
    if cache.capabilities.strict_keys:
        # The server cannot store it either: the client's refusal is a BackendError.
        with pytest.raises(BackendError):
            cache.set(key, "value")
        return
    cache.set(key, "value")
    assert cache.get(key) == "value"


ASYNC_KEY_OPERATIONS: dict[str, Callable[[BaseCache, str], Any]] = {
    "aadd": lambda c, k: c.aadd(k, 1),
    "aget": lambda c, k: c.aget(k),
    "aset": lambda c, k: c.aset(k, 1),
    "aincr": lambda c, k: c.aincr(k),
    "adecr": lambda c, k: c.adecr(k),
    "atouch": lambda c, k: c.atouch(k),
    "adelete": lambda c, k: c.adelete(k),
    "aget_many": lambda c, k: c.aget_many([k, "b"]),
    "aset_many": lambda c, k: c.aset_many({k: 1, "b": 2}),
    "adelete_many": lambda c, k: c.adelete_many([k, "b"]),
    "ahas_key": lambda c, k: c.ahas_key(k),
    "aget_or_set": lambda c, k: c.aget_or_set(k, 1),
}


@pytest.mark.parametrize("operation", list(ASYNC_KEY_OPERATIONS))
def test_async_twins_validate_keys(make_any_cache: CacheFactory, operation: str) -> None:
    cache = make_any_cache()
    made = ":1:key with space"
    expected = (
        f"Cache key contains characters that will cause errors if used with memcached: {made!r}"
    )

    async def call() -> None:
        try:
            await ASYNC_KEY_OPERATIONS[operation](cache, "key with space")
        except InvalidCacheKey:
            raise
        except ValueError:  # incr/decr of a missing key, after the warning
            pass

    if cache.capabilities.strict_keys:
        with pytest.raises(InvalidCacheKey, match="cause errors"):
            asyncio.run(call())
        return
    with pytest.warns(CacheKeyWarning) as record:
        asyncio.run(call())
    assert [str(w.message) for w in record] == [expected]


def test_key_warning_points_at_the_callers_line(make_any_cache: CacheFactory) -> None:
    cache = make_any_cache()
    if cache.capabilities.strict_keys:
        pytest.skip("a strict backend raises instead of warning")
    for call in (
        lambda: cache.get("a b"),
        lambda: cache.get_many(["a b"]),
        lambda: "a b" in cache,
        lambda: cache.decr("a b"),
    ):
        with pytest.warns(CacheKeyWarning) as record, contextlib.suppress(ValueError):
            call()
        assert record[0].filename == __file__


def test_an_overridden_make_key_is_used_by_every_operation(make_cache: CacheFactory) -> None:
    plain, custom = make_cache(), make_cache()
    original = custom.make_key
    custom.make_key = lambda key, version=None: "H" + original(key, version)  # type: ignore[method-assign]
    custom.set("k", 1)
    assert custom.get("k") == 1
    assert custom.get_many(["k"]) == {"k": 1}
    assert plain.get("k") is None
    assert custom.make_and_validate_key("k") == "H:1:k"


@pytest.mark.parametrize("operation", list(KEY_OPERATIONS))
def test_a_lone_surrogate_is_refused_everywhere(
    make_any_cache: CacheFactory, operation: str
) -> None:
    # os.fsdecode() of a file name that is not UTF-8. SQLite, Redis and Memcached
    # cannot encode it; one rule for all: InvalidCacheKey naming the fix, never a
    # raw UnicodeEncodeError, and never stored on some backends only.
    cache = make_any_cache()
    key = os.fsdecode(b"report-\xe9t\xe9.csv")
    with pytest.raises(InvalidCacheKey, match=r"os\.fsencode"):
        KEY_OPERATIONS[operation](cache, key)
    with pytest.raises(InvalidCacheKey, match="surrogate"):
        asyncio.run(_async_get(cache, key))


async def _async_get(cache: BaseCache, key: str) -> object:
    return await cache.aget(key)


class _Shown(str):
    """A key whose format() differs from its characters (Django's key function formats it)."""

    __slots__ = ()

    def __str__(self) -> str:
        return "shown-" + str.__str__(self)

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


BATCHES: dict[str, list[Any]] = {
    "clean": ["a", "b", "c:d", "x" * 247],
    "one bad in the middle": ["a", "b c", "d"],
    "made too long by the version": ["a", "x" * 248, "b"],
    "a control character and a DEL": ["a\x01", "b", "c\x7f"],
    "non-ASCII": ["清", "a", "é" * 100],
    "not str": [1, "1", 2.5, ("t", 1)],
    "a str subclass": [_Shown("k"), "k2"],
    "duplicates": ["a", "b", "a"],
}


def _single_path(cache: BaseCache, keys: list[Any]) -> tuple[list[str], str | None]:
    """The made keys and warnings (or the error) of ``make_and_validate_key``, key by key."""
    made: list[str] = []
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        try:
            for key in keys:
                made.append(cache.make_and_validate_key(key))
        except InvalidCacheKey as exc:
            return [str(w.message) for w in record], f"{type(exc).__name__}: {exc}"
    return [str(w.message) for w in record], None


BATCH_OPERATIONS: dict[str, Callable[[BaseCache, list[Any]], object]] = {
    "get_many": lambda c, keys: c.get_many(keys),
    "get_many of a generator": lambda c, keys: c.get_many(k for k in keys),
    "set_many": lambda c, keys: c.set_many(dict.fromkeys(keys, 1)),
    "delete_many": lambda c, keys: c.delete_many(keys),
    "aget_many": lambda c, keys: asyncio.run(c.aget_many(keys)),
    "aset_many": lambda c, keys: asyncio.run(c.aset_many(dict.fromkeys(keys, 1))),
    "adelete_many": lambda c, keys: asyncio.run(c.adelete_many(keys)),
}


@pytest.mark.parametrize("batch", list(BATCHES))
def test_batches_make_and_validate_keys_as_single_calls_do(
    make_any_cache: CacheFactory, batch: str
) -> None:
    # The batch methods may make and check keys in one pass; what they warn about or
    # refuse, and in which order, is exactly what the keys one by one would give.
    cache = make_any_cache()
    keys = BATCHES[batch]
    expected_warnings, expected_error = _single_path(cache, keys)
    if batch == "duplicates":
        expected_warnings = []  # set_many's dict drops the second "a"; nothing to warn of
    for name, operation in BATCH_OPERATIONS.items():
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            error = None
            try:
                operation(cache, keys)
            except InvalidCacheKey as exc:
                error = f"{type(exc).__name__}: {exc}"
        seen = [str(w.message) for w in record if issubclass(w.category, CacheKeyWarning)]
        assert (seen, error) == (expected_warnings, expected_error), name
        for w in record:
            if issubclass(w.category, CacheKeyWarning):
                assert w.filename == __file__, name  # pointed at the caller, on both paths


def test_batches_read_what_single_calls_store(make_cache: CacheFactory) -> None:
    cache = make_cache()
    keys: list[Any] = ["a", "x" * 247, "清", 7, _Shown("s")]
    if not cache.capabilities.strict_keys:
        keys.append("a b")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CacheKeyWarning)
        for i, key in enumerate(keys):
            cache.set(key, i)
        assert cache.get_many(keys) == {key: i for i, key in enumerate(keys)}
        cache.set_many({key: -i for i, key in enumerate(keys)})
        assert [cache.get(key) for key in keys] == [-i for i in range(len(keys))]
        cache.delete_many(keys[:2])
        assert cache.get_many(keys) == {key: -i for i, key in enumerate(keys) if i >= 2}
        assert cache.get_many(keys, version=2) == {}
        cache.set_many({"v": 2}, version=2)
        assert cache.get_many(["v"], version=2) == {"v": 2} == {"v": cache.get("v", version=2)}


def test_batches_use_an_instances_own_key_makers(make_cache: CacheFactory) -> None:
    cache = make_cache()
    seen: list[str] = []
    cache.validate_key = seen.append  # type: ignore[method-assign]
    cache.set_many({"a": 1, "b": 2})
    assert cache.get_many(["a", "b"]) == {"a": 1, "b": 2}
    cache.delete_many(["a"])
    assert seen == [":1:a", ":1:b"] * 2 + [":1:a"]
    original = cache.make_key
    cache.make_key = lambda key, version=None: "H" + original(key, version)  # type: ignore[method-assign]
    cache.set("c", 3)
    assert cache.get_many(["c", "a"]) == {"c": 3}
    assert seen[-2:] == ["H:1:c", "H:1:a"]
