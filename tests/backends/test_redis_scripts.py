"""The Redis backend's ``incr`` script, sent on a pooled connection (_redisscripts.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from memokit import BackendUnavailable
from memokit.backends.redis import RedisCache

pytestmark = pytest.mark.server


@pytest.fixture
def raw(redis_server: Any) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(f"{redis_server.url}/0") as client:
        client.flushdb()
        yield client


@pytest.fixture
def url(redis_server: Any, raw: redis.Redis) -> str:
    return f"{redis_server.url}/0"


def _commands(raw: redis.Redis) -> dict[str, int]:
    stats = raw.info("commandstats")
    return {
        name.removeprefix("cmdstat_"): value["calls"]
        for name, value in stats.items()
        if not name.startswith(("cmdstat_config", "cmdstat_info"))
    }


def test_a_server_without_the_script_loads_it_and_counts_once(url: str, raw: redis.Redis) -> None:
    cache = RedisCache(url)
    try:
        cache.set("n", 1)
        assert cache.incr("n") == 2  # the script is on the server now
        for bump in (lambda: cache.incr("n"), lambda: asyncio.run(cache.aincr("n"))):
            raw.script_flush()  # as after a restart
            raw.config_resetstat()
            before = int(raw.get(":1:n") or 0)
            assert bump() == before + 1
            assert raw.get(":1:n") == str(before + 1).encode()
            # NOSCRIPT runs nothing; the load and the second EVALSHA count once.
            stats = raw.info("commandstats")["cmdstat_evalsha"]
            assert (stats["calls"], stats["failed_calls"]) == (2, 1)
            assert _commands(raw)["script|load"] == 1
        with pytest.raises(ValueError, match="Key 'missing' not found"):
            cache.incr("missing")
        assert raw.exists(":1:missing") == 0
    finally:
        cache.close()


def test_an_incr_that_timed_out_leaves_no_reply_for_the_next(url: str, raw: redis.Redis) -> None:
    # A timed-out EVALSHA's connection is dropped: a late reply is never read as the
    # next call's (incr('m') would answer n's count).
    cache = RedisCache(url, client_options={"socket_timeout": 0.2})
    try:
        cache.set("n", 1)
        cache.set("m", 100)
        assert cache.incr("n") == 2  # connected, script loaded
        raw.client_pause(500, all=False)  # writes wait; the incr times out after sending
        with pytest.raises(BackendUnavailable):
            cache.incr("n")
        time.sleep(0.6)  # the pause is over; the dropped connection's bump may not have run
        n = int(raw.get(":1:n") or 0)
        assert n in (2, 3)
        assert cache.incr("m") == 101
        assert cache.incr("n") == n + 1

        async def late() -> tuple[int, int, int]:
            raw.client_pause(500, all=False)
            with pytest.raises(BackendUnavailable):
                await cache.aincr("n")
            await asyncio.sleep(0.6)
            now = int(raw.get(":1:n") or 0)
            return now, await cache.aincr("m"), await cache.aincr("n")

        now, m, after = asyncio.run(late())
        assert now in (n + 1, n + 2)
        assert (m, after) == (102, now + 1)
    finally:
        cache.close()


def test_async_incr_is_one_request(url: str, raw: redis.Redis) -> None:
    cache = RedisCache(url)

    async def scenario() -> tuple[int, dict[str, int]]:
        await cache.aset("n", 1)
        await cache.aincr("n")  # loads the script
        raw.config_resetstat()
        result = await cache.aincr("n")
        with pytest.raises(ValueError, match="Key 'gone' not found"):
            await cache.aincr("gone")
        await cache.aclose()
        return result, _commands(raw)

    try:
        result, commands = asyncio.run(scenario())
        assert result == 3
        # One EVALSHA each (the script's own calls are counted too), no load.
        assert commands["evalsha"] == 2
        assert "script|load" not in commands
    finally:
        cache.close()


def test_get_or_set_and_touch_forever_run_their_scripts_after_a_flush(
    url: str, raw: redis.Redis
) -> None:
    cache = RedisCache(url)
    try:
        cache.set("t", 1, 100)
        raw.script_flush()
        assert cache.get_or_set("g", 5, 100) == 5  # the miss's store: GET_OR_ADD_SCRIPT
        assert cache.get_or_set("g", 6, 100) == 5
        assert 0 < raw.pttl(":1:g") <= 100_000
        assert cache.touch("t", None) is True  # PERSIST_SCRIPT
        assert cache.touch("t", None) is True  # already persistent: still True
        assert cache.touch("absent", None) is False
        assert raw.pttl(":1:t") == -1

        async def twins() -> tuple[Any, ...]:
            raw.script_flush()
            await cache.aset("at", 1, 100)
            return (
                await cache.aget_or_set("ag", 7, 100),
                await cache.aget_or_set("ag", 8, 100),
                await cache.atouch("at", None),
                await cache.atouch("absent", None),
            )

        assert asyncio.run(twins()) == (7, 7, True, False)
        assert raw.pttl(":1:at") == -1
        assert raw.get(":1:g") == b"5"  # raw ints stay raw through the script
    finally:
        cache.close()
