"""Round trips of cached reads and invalidations on a real Redis, counted two ways.

At the client's socket (every ``send_packed_command`` is one request sent) and
on the server (``INFO commandstats`` after ``CONFIG RESETSTAT``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
import redis

import memokit
from memokit import BaseCache, cached

pytestmark = pytest.mark.server


class RoundTrips:
    """Counts requests written to redis-py's sockets and the commands the server ran."""

    def __init__(self, raw: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
        self.raw = raw
        self.sent = 0
        real = redis.connection.AbstractConnection.send_packed_command

        def counting(conn: Any, *args: Any, **kwargs: Any) -> Any:
            self.sent += 1
            return real(conn, *args, **kwargs)

        monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", counting)

    def reset(self) -> None:
        self.raw.config_resetstat()
        self.sent = 0

    def commands(self) -> dict[str, int]:
        return server_commands(self.raw)


def server_commands(raw: redis.Redis) -> dict[str, int]:
    """The commands the server ran since the last ``CONFIG RESETSTAT``, by name."""
    stats = raw.info("commandstats")
    return {
        name.removeprefix("cmdstat_"): value["calls"]
        for name, value in stats.items()
        if not name.startswith(("cmdstat_config", "cmdstat_info"))
    }


@pytest.fixture
def redis_cache(redis_server: Any) -> Iterator[tuple[BaseCache, redis.Redis]]:
    url = f"{redis_server.url}/0"
    with redis.Redis.from_url(url) as raw:
        raw.flushdb()
        cache = memokit.create_cache({"BACKEND": "redis", "LOCATION": url})
        try:
            yield cache, raw
        finally:
            cache.close()


def test_a_read_with_two_tags_is_one_mget_and_a_miss_one_write(
    redis_cache: tuple[BaseCache, redis.Redis], monkeypatch: pytest.MonkeyPatch
) -> None:
    cache, raw = redis_cache

    @cached(cache=cache, tags=("user:{user_id}", "reports"))
    def report(user_id: int) -> str:
        return f"report {user_id}"

    report(1)  # creates the counters and opens the connection
    memokit.invalidate_tags("warm-up", cache=cache)  # loads the incr script
    assert report.invalidate(1) is True
    trips = RoundTrips(raw, monkeypatch)
    trips.reset()
    assert report(1) == "report 1"  # a miss
    assert trips.sent == 2
    # MGET of 4 keys, then the add-or-get script (commandstats counts its GET and SET).
    assert trips.commands() == {"mget": 1, "evalsha": 1, "get": 1, "set": 1}
    trips.reset()
    assert report(1) == "report 1"  # a hit
    assert trips.sent == 1
    assert trips.commands() == {"mget": 1}
    trips.reset()
    memokit.invalidate_tags("user:1", "reports", cache=cache)
    assert trips.sent == 2  # one atomic incr script per tag
    # commandstats also counts the commands the script runs inside the server.
    assert trips.commands()["evalsha"] == 2
    trips.reset()
    assert report(1) == "report 1"  # the outdated entry is replaced: one SET
    assert trips.sent == 2
    assert trips.commands() == {"mget": 1, "set": 1}
    trips.reset()
    report.invalidate_all()
    memokit.invalidate_many(report, [(1,), (2,), (3,)])
    assert trips.sent == 2
    assert trips.commands()["evalsha"] == 1
    assert trips.commands()["del"] == 1  # one DEL for three keys


def test_an_async_read_with_two_tags_is_one_mget(
    redis_cache: tuple[BaseCache, redis.Redis],
) -> None:
    cache, raw = redis_cache

    @cached(cache=cache, tags=("user:{user_id}", "reports"))
    async def report(user_id: int) -> str:
        return f"report {user_id}"

    async def main() -> dict[str, int]:
        await report(1)
        raw.config_resetstat()
        await report(1)
        await report(1)
        return server_commands(raw)

    assert asyncio.run(main()) == {"mget": 2}


def test_a_raced_miss_finds_the_winners_entry_in_one_round_trip(
    redis_cache: tuple[BaseCache, redis.Redis], monkeypatch: pytest.MonkeyPatch
) -> None:
    cache, raw = redis_cache
    cache.get_or_set("warm-up", 1)  # opens the connection and loads the add-or-get script
    trips = RoundTrips(raw, monkeypatch)
    racing = [True]

    @cached(cache=cache, name="raced-miss")
    def f(n: int) -> str:
        if not racing[0]:
            return "theirs"
        racing[0] = False
        f.refresh(n)  # another caller stores first, while this one computes
        trips.reset()
        return "mine"

    assert f(1) == "theirs"  # get_or_set semantics: the first stored value wins
    assert trips.sent == 1  # one add-or-get, not an add and then a get
    assert trips.commands() == {"evalsha": 1, "get": 1}


def test_an_async_raced_miss_finds_the_winners_entry_in_one_round_trip(
    redis_cache: tuple[BaseCache, redis.Redis],
) -> None:
    cache, raw = redis_cache
    racing = [True]

    @cached(cache=cache, name="async-raced-miss")
    async def f(n: int) -> str:
        if not racing[0]:
            return "theirs"
        racing[0] = False
        await f.refresh(n)
        raw.config_resetstat()
        return "mine"

    async def main() -> tuple[str, dict[str, int]]:
        await cache.aget_or_set("warm-up", 1)  # loads the add-or-get script
        return await f(1), server_commands(raw)

    assert asyncio.run(main()) == ("theirs", {"evalsha": 1, "get": 1})
