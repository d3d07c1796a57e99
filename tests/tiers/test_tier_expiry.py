"""Tier one with server-assisted invalidation on Redis: a value another process stored
with a timeout stops being served when that timeout ends.

A copy read while the tracking is on is served at any age until a push drops it,
and Redis pushes an expiry only once it deletes the key: lazily, on access or in
its active-expiry cycle, which on a large keyspace lags by seconds or more. The
tests' own redis-server runs with that cycle switched off (``DEBUG
SET-ACTIVE-EXPIRE 0``), so an expired key stays in its keyspace, unpushed, for as
long as nobody reads it: only the time to live tier one read with the value can
end the copy. ``BOUND`` is a minute, so the bound never does it either.
"""

from __future__ import annotations

import asyncio
import math
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

import memokit
from memokit.backends._tierstore import SAME, TierSettings, TierStore
from memokit.config import DEFAULT_CACHES
from memokit.testing import free_port

from ..support import settle_pushes, until

pytestmark = pytest.mark.timeout(60)

TTL = 0.3
"""The timeout another process stores with, in seconds."""
TWINS = pytest.mark.parametrize("twin", ["sync", "async"])


@pytest.fixture(scope="module")
def lazy_redis(request: pytest.FixtureRequest) -> Iterator[str]:
    """The URL of a redis-server of this module's own that never expires keys actively."""
    import redis

    binary = request.getfixturevalue("redis_server").binary  # skipped where there is none
    port = free_port()
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    args += ["--appendonly", "no", "--enable-debug-command", "local"]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}"
    try:
        client = redis.Redis.from_url(url, socket_timeout=2)

        def up() -> bool:
            try:
                return bool(client.ping())
            except redis.ConnectionError:
                return process.poll() is not None  # exited: the assertion below says so

        until(up, 10, "the redis-server to start")
        assert process.poll() is None, "redis-server exited (its port taken meanwhile?)"
        client.execute_command("DEBUG", "SET-ACTIVE-EXPIRE", "0")
        client.close()
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def caches(lazy_redis: str) -> Iterator[tuple[Any, Any, Any]]:
    """``(tiered, other, raw)``: tier one (tracking on) in front of a fresh database,
    another process's cache on it (no tier), and a raw client."""
    import redis

    settings = {
        "BACKEND": "redis",
        "LOCATION": f"{lazy_redis}/1",
        "KEY_PREFIX": f"ttl{uuid.uuid4().hex[:8]}",
        "TIMEOUT": None,
    }
    raw = redis.Redis.from_url(settings["LOCATION"], socket_timeout=2)
    raw.flushdb()
    memokit.configure({"default": {**settings, "TIER": {"BOUND": 60}}})
    tiered: Any = memokit.caches["default"]
    other = memokit.create_cache(settings)
    try:
        until(lambda: tiered.assisted, 5, "tracking to start")
        yield tiered, other, raw
    finally:
        other.close()
        raw.close()
        memokit.configure(DEFAULT_CACHES)


def read(cache: Any, twin: str, key: str) -> Any:
    if twin == "sync":
        return cache.get(key)
    return asyncio.run(cache.aget(key))


def read_many(cache: Any, twin: str, keys: list[str]) -> dict[str, Any]:
    if twin == "sync":
        return dict(cache.get_many(keys))
    return dict(asyncio.run(cache.aget_many(keys)))


def _past_ttl(raw: Any, keys: int) -> None:
    """Wait until the short TTL has passed, with Redis still holding the expired keys."""
    time.sleep(TTL + 0.05)
    # DBSIZE counts a key past its expiry that Redis has not deleted, and deletes
    # nothing (a read of the key would, and push its invalidation).
    assert raw.dbsize() == keys, "Redis deleted the expired key: this test shows nothing"


@pytest.mark.server
@TWINS
def test_a_copy_read_while_tracked_leaves_tier_one_at_its_ttl(
    caches: tuple[Any, Any, Any], twin: str
) -> None:
    tiered, other, raw = caches
    made = tiered.make_key("k")
    other.set("k", "v", TTL)  # another process's write, with a timeout
    settle_pushes(tiered, other)
    assert read(tiered, twin, "k") == "v"
    assert tiered.local_many([made])
    _past_ttl(raw, 1)
    assert tiered.local_many([made]) is None  # tier one alone: no second-tier read
    assert read(tiered, twin, "k") is None


@pytest.mark.server
@TWINS
def test_a_batch_read_ends_each_copy_at_its_own_ttl(
    caches: tuple[Any, Any, Any], twin: str
) -> None:
    tiered, other, raw = caches
    other.set("short", "s", TTL)
    other.set("long", "l", 60)
    other.set("never", "n")
    settle_pushes(tiered, other)
    keys = ["short", "long", "never"]
    assert read_many(tiered, twin, keys) == {"short": "s", "long": "l", "never": "n"}
    assert tiered.local_many([tiered.make_key(k) for k in keys]) is not None
    _past_ttl(raw, 3)
    assert tiered.local_many([tiered.make_key("short")]) is None
    assert tiered.local_many([tiered.make_key(k) for k in ("long", "never")]) is not None


@pytest.mark.server
@TWINS
def test_a_decorated_hit_through_the_fast_index_stops_at_the_ttl(
    caches: tuple[Any, Any, Any], twin: str
) -> None:
    tiered, other, raw = caches
    name = f"ttl.f.{twin}"

    @memokit.cached(cache=other, name=name, timeout=TTL)
    def peer(x: int) -> tuple[str, int]:
        return ("peer", x)

    if twin == "sync":

        @memokit.cached(cache=tiered, name=name, timeout=TTL)
        def f(x: int) -> tuple[str, int]:
            return ("here", x)

        call = f
    else:

        @memokit.cached(cache=tiered, name=name, timeout=TTL)
        async def af(x: int) -> tuple[str, int]:
            return ("here", x)

        def call(x: int) -> tuple[str, int]:
            return asyncio.run(af(x))

    peer(7)  # another process computed it, stored with TTL
    settle_pushes(tiered, other)

    def indexed() -> bool:
        # Read through tier one (with its TTL), then string-key hits: the fast index
        # learns it.
        assert call(7) == ("peer", 7)
        return bool(tiered.tier.records)

    until(indexed, 1, "a fast-index record")
    assert call(7) == ("peer", 7)  # a fast-index hit
    stored = raw.dbsize()  # the entry and its counters
    _past_ttl(raw, stored)
    assert call(7) == ("here", 7)


def test_a_read_that_tells_ttls_sets_each_slots_expiry_and_a_recheck_renews_it() -> None:
    store = TierStore(TierSettings(bound=60))
    store.assisted = True
    keys = ["a", "b"]
    started = time.monotonic()
    tokens = [store.token(key) for key in keys]
    store.fill_many({"a": b"1", "b": b"2"}, keys, started, tokens, ttls={"a": 5.0})
    assert store.data["a"].expires == started + 5.0
    assert store.data["b"].expires == math.inf  # found without an expiry
    assert store.split(["a"]) == {"a": b"1"}
    assert store.records["a"][1] == started + 5.0  # the fast index's record ends with it
    # A re-check answering SAME, with the times to live the backend now has.
    held, tokens = store.held(keys)
    again = time.monotonic()
    store.fill_many({"a": SAME, "b": SAME}, keys, again, tokens, held, ttls={"b": 0.5})
    assert store.data["a"].expires == math.inf
    assert store.data["b"].expires == again + 0.5
    assert "a" not in store.records  # it ended at the old expiry: the next split remakes it
    # A read that tells no times to live (no tracking) leaves the expiries as they were.
    held, tokens = store.held(keys)
    store.fill_many({"a": SAME, "b": SAME}, keys, time.monotonic(), tokens, held)
    assert store.data["b"].expires == again + 0.5
