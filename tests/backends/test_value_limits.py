"""Values a network backend cannot hold, and partial failures, on the real servers.

Memcached refuses a value over its item size limit (1 MiB by default); Redis can
refuse single commands of a batch (here: ``maxmemory`` with ``noeviction``).
Either concerns the keys involved only: nothing raises, the keys are reported
(``add`` answers False, ``set_many`` lists them) with one warning per key and
window, the breaker stays closed, and no message carries value bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

from memokit import BaseCache, breaker_for, cached
from memokit.exceptions import ValueNotStoredWarning
from memokit.testing import RunningServer, start_server

pytestmark = pytest.mark.server

SECRET = b"SECRET-VALUE-BYTES"
BIG = SECRET + b"x" * (2**20 + 1)  # over memcached's default item size (1 MiB)


@contextlib.contextmanager
def recorded(category: type[Warning]) -> Iterator[list[warnings.WarningMessage]]:
    """Record the warnings of ``category`` in the block; any other warning still fails."""
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("error")
        warnings.simplefilter("always", category)
        yield record


@pytest.fixture
def memcached(memcached_server: Any) -> Iterator[BaseCache]:
    from memokit.backends.memcached import MemcachedCache

    made = MemcachedCache(memcached_server.url, key_prefix="limits")
    made.clear()
    yield made
    made.close()


def test_memcached_value_over_the_item_size_is_dropped_never_raised(
    memcached: BaseCache, caplog: pytest.LogCaptureFixture
) -> None:
    memcached.set("k", "old")
    with recorded(ValueNotStoredWarning) as record:
        memcached.set("k", BIG)
        assert memcached.get("k") is None  # the old value never survives a failed set
        assert memcached.add("k", BIG) is False
        assert memcached.get_or_set("g", BIG) == BIG  # returned, not stored
        assert memcached.get("g") is None
        assert memcached.set_many({"m": BIG, "n": "small"}) == ["m"]
        assert memcached.get_many(["m", "n"]) == {"n": "small"}
        memcached.set("k", BIG)  # the same key again, within the window: no new warning
    assert sorted(str(w.message).split("'")[1] for w in record) == [
        "limits:1:g",
        "limits:1:k",
        "limits:1:m",
    ]
    for warning in record:
        assert "SECRET" not in str(warning.message)
    assert "SECRET" not in caplog.text


def test_memcached_async_twins_drop_oversized_values_too(memcached: BaseCache) -> None:
    async def main() -> None:
        with recorded(ValueNotStoredWarning) as record:
            await memcached.aset("a", BIG)
            assert await memcached.aadd("b", BIG) is False
            assert await memcached.aget_or_set("c", BIG) == BIG
            assert await memcached.aset_many({"d": BIG, "e": 1}) == ["d"]
        assert record
        assert await memcached.aget_many(["a", "b", "c", "d", "e"]) == {"e": 1}

    asyncio.run(main())


def test_cached_returns_an_oversized_result_without_tripping_the_breaker(
    memcached: BaseCache, caplog: pytest.LogCaptureFixture
) -> None:
    runs: list[str] = []
    other_runs: list[str] = []

    @cached(cache=memcached)
    def price(sku: str) -> bytes:
        runs.append(sku)
        return BIG

    @cached(cache=memcached)
    def other(sku: str) -> str:
        other_runs.append(sku)
        return sku

    with recorded(ValueNotStoredWarning) as record:
        for _ in range(10):
            assert price("A-1") == BIG
            assert other("B-1") == "B-1"
    assert len(runs) == 10  # it cannot be cached; it is computed, never an error
    assert other_runs == ["B-1"]  # the rest of the cache keeps caching
    assert len(record) == 1
    assert breaker_for(memcached).opened == 0
    info = price.cache_info()
    assert (info.errors.backend, info.errors.value) == (0, 10)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_memcached_long_timeouts_are_stored_as_never_expiring(memcached: BaseCache) -> None:
    assert memcached.capabilities.latest_expiry == 2**31 - 1
    memcached.set("k", "v", 100 * 365 * 86400)
    assert memcached.get("k") == "v"
    assert memcached.get_backend_timeout(100 * 365 * 86400) is None  # sent as "never"


# -- Redis: one refused command of a batch --------------------------------------------


@pytest.fixture
def small_redis() -> Iterator[RunningServer]:
    """A redis-server of this test's own, to fill up to its maxmemory."""
    server = start_server("redis-server")
    yield server
    server.stop()


def _fill(client: Any, limit: int) -> None:
    client.config_set("maxmemory-policy", "noeviction")
    used = int(client.info("memory")["used_memory"])
    client.config_set("maxmemory", used + limit)


def test_redis_set_many_returns_the_keys_it_could_not_store(
    small_redis: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    import redis

    from memokit.backends.redis import RedisCache

    cache = RedisCache(small_redis.url)
    raw = redis.Redis.from_url(small_redis.url)
    try:
        for timeout in (60, None):
            cache.clear()
            raw.config_set("maxmemory", 0)
            old = {f"k{i}-{timeout}": f"old {i}" for i in range(6)}
            assert cache.set_many(old) == []
            _fill(raw, 600_000)
            new = {key: SECRET + b"n" * 250_000 for key in old}
            caplog.clear()
            with recorded(ValueNotStoredWarning) as record, caplog.at_level(logging.WARNING):
                failed = cache.set_many(new, timeout)
            assert failed, "the server should have refused part of the batch"
            found = cache.get_many(list(new))
            for key in new:
                # Stored, or listed and gone: never an old value behind a failed update.
                assert (key in failed) != (found.get(key) == new[key])
                assert key in found or key in failed
                assert found.get(key) != old[key]
            # A full store is a backend condition, not a fault of these values: no
            # per-key value warning, one backend warning on the memokit logger.
            assert record == []
            logged = [r for r in caplog.records if r.name == "memokit"]
            assert len(logged) == (1 if timeout == 60 else 0)  # one per cache and window
            assert all("maxmemory" in r.getMessage() for r in logged)
        assert "SECRET" not in caplog.text
    finally:
        raw.config_set("maxmemory", 0)
        raw.close()
        cache.close()


def test_redis_async_set_many_returns_the_keys_it_could_not_store(
    small_redis: RunningServer,
) -> None:
    import redis

    from memokit.backends.redis import RedisCache

    cache = RedisCache(small_redis.url)
    raw = redis.Redis.from_url(small_redis.url)
    try:
        _fill(raw, 600_000)
        new = {f"k{i}": SECRET + b"n" * 250_000 for i in range(6)}

        async def main() -> list[Any]:
            return await cache.aset_many(new, 60)

        with recorded(ValueNotStoredWarning) as record:
            failed = asyncio.run(main())
        assert record == []  # a backend condition: no per-key value warning
        assert failed
        assert set(cache.get_many(list(new))) == set(new) - set(failed)
    finally:
        raw.config_set("maxmemory", 0)
        raw.close()
        cache.close()


def test_redis_errors_never_carry_value_bytes(small_redis: RunningServer) -> None:
    import redis

    from memokit import BackendError
    from memokit.backends.redis import RedisCache

    cache = RedisCache(small_redis.url)
    raw = redis.Redis.from_url(small_redis.url)
    try:
        cache.set("f", 1.5)  # a float: incr reads, adds and writes back in a pipeline
        raw.config_set("maxmemory-policy", "noeviction")
        raw.config_set("maxmemory", 1)  # full: every write is refused
        with pytest.raises(BackendError) as caught:
            cache.incr("f")  # redis-py echoes the pipeline's SET, value and all
        chain: BaseException | None = caught.value
        while chain is not None:
            text = str(chain)
            assert "maxmemory" in text
            assert "SET" not in text
            assert "\ufffd" not in text  # the pickled float, undecodable as text
            chain = chain.__cause__
    finally:
        raw.config_set("maxmemory", 0)
        raw.close()
        cache.close()


def test_redis_huge_timeouts_are_stored_as_never_expiring(redis_server: Any) -> None:
    from memokit.backends.redis import RedisCache

    cache = RedisCache(f"{redis_server.url}/0")
    try:
        latest = cache.capabilities.latest_expiry
        assert latest is not None
        cache.set("k", "v", 1e306)
        assert cache.get("k") == "v"
        assert cache.get_backend_timeout(1e306) is None
        assert cache.touch("k", 1e306)
        assert cache.get("k") == "v"
    finally:
        cache.delete("k")
        cache.close()
