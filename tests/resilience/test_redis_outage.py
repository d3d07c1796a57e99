"""Fail open against a real Redis server that is stopped and restarted (D1).

The test starts a server of its own: killing the session's shared server would
break the other Redis tests.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

import memokit
from memokit import breaker_for, cached, configure_breaker
from memokit.backends import BACKENDS

pytestmark = [pytest.mark.server, pytest.mark.slow]

WINDOW = 0.5


@pytest.fixture
def own_redis() -> Iterator[Any]:
    if "redis" not in BACKENDS:
        pytest.skip("the Redis backend is not part of this build")
    from memokit.testing import ServerNotFound, start_server

    try:
        server = start_server("redis-server")
    except ServerNotFound as exc:
        if os.environ.get("MEMOKIT_REQUIRE_SERVERS") == "1":
            pytest.fail(f"MEMOKIT_REQUIRE_SERVERS=1 but {exc}")
        pytest.skip(str(exc))
    try:
        yield server
    finally:
        server.stop()


def timed(call: Any) -> tuple[Any, float]:
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


def test_cached_keeps_answering_while_redis_is_down(
    own_redis: Any, caplog: pytest.LogCaptureFixture
) -> None:
    cache = memokit.create_cache(
        {
            "BACKEND": "redis",
            "LOCATION": own_redis.url,
            "KEY_PREFIX": uuid.uuid4().hex,
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        }
    )
    configure_breaker(cache=cache, window=WINDOW)
    worst = 0.5 + 0.5  # the most one operation may take: connect, then read
    runs: list[int] = []

    @cached(cache=cache)
    def double(n: int) -> int:
        runs.append(n)
        return n * 2

    @cached(cache=cache)
    async def triple(n: int) -> int:
        return n * 3

    try:
        assert double(1) == 2
        assert double(1) == 2
        assert runs == [1]

        own_redis.kill()
        result, first = timed(lambda: double(1))
        assert result == 2
        assert first < 3 * worst
        during = [timed(lambda n=n: double(n % 3)) for n in range(30)]
        assert [result for result, _ in during] == [(n % 3) * 2 for n in range(30)]
        # Only the first call reached the server; the others skipped it at once.
        assert double.cache_info().errors == 1
        assert max(seconds for _, seconds in during) < worst
        assert asyncio.run(triple(2)) == 6
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1
        assert own_redis.url.split("//")[1] in warnings[0].getMessage()

        time.sleep(WINDOW + 0.1)  # the next call probes, fails: one more window, one warning
        assert double(2) == 4
        assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 2

        own_redis.restart()
        time.sleep(WINDOW + 0.1)
        runs.clear()
        assert double(5) == 10  # the probe succeeds: caching resumes, same function object
        assert double(5) == 10
        assert runs == [5]
        assert not breaker_for(cache).is_open
        assert "answers again" in caplog.records[-1].getMessage()
    finally:
        cache.close()
