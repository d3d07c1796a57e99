"""Server-assisted invalidation on Redis (``RedisCache.track_invalidations``).

A listener (what a two-tier cache gives) is told of every change to the
cache's keys by any client: entries and counters, ``FLUSHDB``, a killed or
silent connection, a stopped server, a fork. Real servers only.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

import pytest
import redis

import memokit
from memokit import cached
from memokit.backends.redis import RedisCache
from memokit.faults import FaultProxy
from memokit.testing import start_server

from ..support import in_forked_child, until

pytestmark = [pytest.mark.server, pytest.mark.timeout(60)]

_THREAD = "memokit-redis-tracking"


class Recorder:
    """A listener that records what it is told, with the time it was told."""

    def __init__(self) -> None:
        self._assisted = False
        self.losses = 0
        """How many times the assistance was lost (set false while true)."""
        self.keys: list[tuple[float, str]] = []
        self.resets = 0
        self.lock = threading.Lock()

    @property
    def assisted(self) -> bool:
        return self._assisted

    @assisted.setter
    def assisted(self, value: bool) -> None:
        if self._assisted and not value:
            self.losses += 1
        self._assisted = value

    def forget_local(self, made_keys: Iterable[str]) -> None:
        now = time.monotonic()
        with self.lock:
            self.keys.extend((now, key) for key in made_keys)

    def forget_all_local(self) -> None:
        with self.lock:
            self.resets += 1

    def told(self, key: str) -> float | None:
        with self.lock:
            return next((at for at, k in self.keys if k == key), None)


def _threads(cache: RedisCache) -> list[threading.Thread]:
    """The live tracking threads of ``cache`` (other tests' caches may still have theirs)."""
    tracker = cache._tracker
    return [
        t
        for t in threading.enumerate()
        if t.name == _THREAD and getattr(getattr(t, "_target", None), "__self__", 0) is tracker
    ]


@pytest.fixture
def url(redis_server: Any) -> str:
    return f"{redis_server.url}/7"


@pytest.fixture
def cache(url: str) -> Iterator[RedisCache]:
    cache = RedisCache(url, key_prefix=f"trk-{uuid.uuid4().hex[:8]}")
    try:
        yield cache
    finally:
        cache.close()
    until(lambda: not _threads(cache), 2, "the tracking thread to end")


@pytest.fixture
def raw(url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(url)
    try:
        yield client
    finally:
        client.close()


def _tracked(cache: RedisCache, within: float = 1.0) -> tuple[Recorder, Any]:
    listener = Recorder()
    handle = cache.track_invalidations(listener, within=within)
    assert handle is not None
    until(lambda: listener.assisted, 5, "tracking to start")
    return listener, handle


def test_a_write_by_another_client_reaches_the_listener_within_milliseconds(
    cache: RedisCache, raw: redis.Redis
) -> None:
    listener, handle = _tracked(cache)
    resets = listener.resets
    delays = []
    for n in range(50):
        key = cache.make_key(f"k{n}")
        raw.set(key, n)
        returned = time.monotonic()
        until(lambda key=key: listener.told(key) is not None, 1, "the push")  # type: ignore[misc]
        delays.append(max(0.0, listener.told(key) - returned))  # type: ignore[operator]
    assert sorted(delays)[-3] < 0.02, delays  # loopback: a millisecond or so, under load more
    assert listener.assisted
    assert listener.resets == resets
    assert handle.vouched_until > time.monotonic()


def test_the_counters_and_every_version_are_covered_and_other_prefixes_are_not(
    cache: RedisCache, raw: redis.Redis
) -> None:
    listener, _ = _tracked(cache)
    other = RedisCache(cache._servers[0], key_prefix="elsewhere")

    @cached(cache=other)
    def elsewhere() -> int:
        return 1

    @cached(cache=cache, tags="tracked-tag")
    def square(x: int) -> int:
        return x * x

    assert square(3) == 9
    assert elsewhere() == 1
    with listener.lock:
        listener.keys.clear()
    square.invalidate_all()  # a function counter
    memokit.invalidate_tags("tracked-tag", cache=cache)  # a tag counter
    cache.set("v", 1, version=5)
    until(lambda: len(listener.keys) >= 3, 1, "three pushes")
    elsewhere.invalidate_all()
    other.set("v", 1)
    time.sleep(0.05)
    told = [key for _, key in listener.keys]
    assert told[0].startswith(f"{cache.key_prefix}:0:memokit.fn:")
    assert told[1] == f"{cache.key_prefix}:0:memokit.tag:tracked-tag"
    assert told[2] == cache.make_key("v", version=5)
    assert len(told) == 3  # nothing of the other prefix
    other.close()


def test_flushdb_drops_every_copy_and_keeps_the_assistance(
    cache: RedisCache, raw: redis.Redis
) -> None:
    listener, _ = _tracked(cache)
    resets = listener.resets
    raw.flushdb()
    until(lambda: listener.resets > resets, 1, "the null invalidation")
    assert listener.assisted


def test_a_killed_connection_is_a_loss_then_tracking_comes_back(
    cache: RedisCache, raw: redis.Redis
) -> None:
    listener, handle = _tracked(cache)
    first = handle.client_id
    losses = listener.losses
    raw.execute_command("CLIENT", "KILL", "ID", first)
    until(lambda: listener.losses > losses, 1, "the loss")
    until(lambda: listener.assisted and handle.client_id not in (None, first), 5, "reconnection")
    key = cache.make_key("after")
    raw.set(key, 1)
    until(lambda: listener.told(key) is not None, 1, "a push on the new connection")


def test_an_unexpected_error_while_connecting_again_is_survived(
    cache: RedisCache, raw: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    # Not a RedisError or an OSError (a reply the code did not expect, a bug in a
    # client library): the thread must not die of it, or the listeners would stay
    # unassisted for good (revive() starts only a thread that was stopped).
    listener, handle = _tracked(cache)
    tracker = cache._tracker
    assert tracker is not None
    connect = tracker._connect
    failures = iter([RuntimeError("an unexpected failure")])

    def failing_once() -> Any:
        for exc in failures:
            raise exc
        return connect()

    tracker._connect = failing_once
    first = handle.client_id
    raw.execute_command("CLIENT", "KILL", "ID", first)
    until(lambda: listener.assisted and handle.client_id not in (None, first), 5, "reconnection")
    assert len(_threads(cache)) == 1
    # One warning for the streak (the loss); the failed attempt in it is not another.
    logged = [r.getMessage() for r in caplog.records if "invalidation tracking" in r.getMessage()]
    assert len(logged) == 1, logged
    key = cache.make_key("after")
    raw.set(key, 1)
    until(lambda: listener.told(key) is not None, 1, "a push on the new connection")


def test_a_silent_connection_counts_as_lost_within_the_bound(redis_server: Any) -> None:
    # A black hole (no error, no reply): only the PINGs can tell.
    with FaultProxy("127.0.0.1", redis_server.port) as proxy:
        cache = RedisCache(proxy.url("redis") + "/7", key_prefix="trk-silent")
        try:
            listener, handle = _tracked(cache, within=0.3)
            time.sleep(0.3)  # several PINGs answered: the connection is trusted
            assert listener.assisted
            proxy.set_faults(drop=True)
            cut = time.monotonic()
            until(lambda: not listener.assisted, 1, "the loss")
            assert time.monotonic() - cut < 0.3
            assert handle.vouched_until < cut + 0.3
            proxy.heal()
            until(lambda: listener.assisted, 5, "tracking back")
        finally:
            cache.close()


def test_a_stopped_server_backs_off_and_close_is_prompt(caplog: pytest.LogCaptureFixture) -> None:
    server = start_server("redis-server")
    try:
        cache = RedisCache(server.url, key_prefix="trk-stop")
        listener, _ = _tracked(cache)
        attempts: list[float] = []
        tracker = cache._tracker
        assert tracker is not None
        connect = tracker._connect

        def counted() -> Any:
            attempts.append(time.monotonic())
            return connect()

        tracker._connect = counted
        server.kill()
        until(lambda: not listener.assisted, 1, "the loss")
        time.sleep(1.5)
        gaps = [b - a for a, b in itertools.pairwise(attempts)]
        assert 3 <= len(attempts) <= 12, attempts  # backs off: 20 ms doubling, at most 1 s
        assert max(gaps) <= 1.1
        warnings = [r for r in caplog.records if "invalidation tracking" in r.getMessage()]
        assert len(warnings) <= 2  # "lost" and "cannot start": once per streak, not per try
        server.restart()
        until(lambda: listener.assisted, 3, "tracking back after the restart")
        server.kill()
        began = time.monotonic()
        cache.close()
        assert time.monotonic() - began < 0.5
        assert not _threads(cache)
    finally:
        server.stop()


def test_close_stops_the_thread_and_revive_starts_it_again(cache: RedisCache) -> None:
    listener, handle = _tracked(cache)
    assert len(_threads(cache)) == 1
    second = Recorder()
    other = cache.track_invalidations(second, within=0.5)  # one connection for both
    assert other is not None
    until(lambda: second.assisted, 5, "the second listener")
    assert len(_threads(cache)) == 1
    began = time.monotonic()
    cache.close()
    assert time.monotonic() - began < 0.1  # the reader is woken, not waited for
    assert not _threads(cache)
    assert not listener.assisted
    assert not second.assisted
    handle.revive()
    until(lambda: listener.assisted and second.assisted, 5, "tracking again")
    other.stop()
    handle.stop()
    until(lambda: not _threads(cache), 2, "the last subscription to stop the thread")


def test_a_forked_child_tracks_on_its_own_connection(cache: RedisCache, url: str) -> None:
    listener, handle = _tracked(cache)
    parent_id = handle.client_id

    def child() -> None:
        assert not listener.assisted, "the child inherited the assistance"
        assert not _threads(cache)
        handle.revive()
        until(lambda: listener.assisted, 5, "tracking in the child")
        assert handle.client_id not in (None, parent_id)
        key = cache.make_key("from-child")
        with redis.Redis.from_url(url) as client:
            client.set(key, 1)
        until(lambda: listener.told(key) is not None, 1, "a push in the child")
        cache.close()

    in_forked_child(child)
    assert listener.assisted  # the parent's tracking is untouched
    assert handle.client_id == parent_id
    key = cache.make_key("in-parent")
    cache.set(key, 1)
    until(lambda: listener.told(cache.make_key(key)) is not None, 1, "a push in the parent")


def test_a_bad_within_is_refused(cache: RedisCache) -> None:
    for within in (0, -1, float("inf"), float("nan"), "1", True):
        with pytest.raises(ValueError, match="within must be a positive number of seconds"):
            cache.track_invalidations(Recorder(), within=within)  # type: ignore[arg-type]


def test_a_cluster_does_not_track() -> None:
    # Per-node tracking with tagged wire keys and moving slots: refused, the bound applies.
    cache = memokit.create_cache({"BACKEND": "redis-cluster", "LOCATION": "redis://127.0.0.1:1"})
    assert cache.track_invalidations(Recorder()) is None  # type: ignore[attr-defined]


@pytest.mark.cluster
def test_sentinel_tracking_follows_a_failover(redis_sentinel: Any) -> None:
    redis_sentinel.wait_synced()
    cache = memokit.create_cache(
        {
            "BACKEND": "redis-sentinel",
            "LOCATION": redis_sentinel.urls,
            "KEY_PREFIX": f"trk-{uuid.uuid4().hex[:8]}",
            # Reads on the primary: with reads on replicas nothing is tracked.
            "OPTIONS": {
                "SERVICE_NAME": redis_sentinel.service,
                "socket_timeout": 0.5,
                "READ_FROM_REPLICAS": False,
            },
        }
    )
    assert isinstance(cache, RedisCache)
    try:
        listener, _ = _tracked(cache)
        old = redis_sentinel.primary()
        key = cache.make_key("before")
        old.client.set(key, 1)
        until(lambda: listener.told(key) is not None, 1, "a push from the first primary")
        redis_sentinel.sentinels[0].client.execute_command(
            "SENTINEL", "FAILOVER", redis_sentinel.service
        )
        until(lambda: redis_sentinel.primary_port() != old.port, 20, "the failover")
        switched = time.monotonic()
        new = redis_sentinel.primary()

        def pushed_from_new() -> bool:
            probe = cache.make_key(f"after-{time.monotonic()}")
            with contextlib.suppress(redis.RedisError):
                new.client.set(probe, 1)  # READONLY until the promotion completes
            end = time.monotonic() + 0.1
            while time.monotonic() < end:
                if listener.told(probe) is not None and listener.assisted:
                    return True
                time.sleep(0.005)
            return False

        until(pushed_from_new, 20, "pushes from the new primary")
        # It left the demoted primary within a few heartbeats (a third of within each).
        assert time.monotonic() - switched < 3
    finally:
        cache.close()
        redis_sentinel.wait_synced()


def test_a_refused_connection_is_logged_once_without_its_secret(
    redis_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    cache = RedisCache(
        f"redis://user:tr4ck-s3cret@127.0.0.1:{redis_server.port}/7", key_prefix="trk-secret"
    )
    try:
        listener = Recorder()
        assert cache.track_invalidations(listener) is not None
        until(lambda: any("tracking" in r.getMessage() for r in caplog.records), 5, "a warning")
        time.sleep(0.2)  # several attempts, one warning
        warned = [r for r in caplog.records if "tracking" in r.getMessage()]
        assert len(warned) == 1
        assert "tr4ck-s3cret" not in warned[0].getMessage()
        assert "***" in warned[0].getMessage()
        assert not listener.assisted
    finally:
        cache.close()


def test_a_listener_dropped_without_stop_ends_the_thread(cache: RedisCache) -> None:
    listener, _ = _tracked(cache, within=0.3)
    assert len(_threads(cache)) == 1
    del listener
    gc.collect()
    until(lambda: not _threads(cache), 2, "the thread to end")


def test_valkey_tracks_too(valkey_server: Any) -> None:
    cache = RedisCache(f"{valkey_server.url}/7", key_prefix="trk-valkey")
    try:
        listener, _ = _tracked(cache)
        key = cache.make_key("k")
        with redis.Redis.from_url(f"{valkey_server.url}/7") as raw:
            raw.set(key, 1)
            until(lambda: listener.told(key) is not None, 1, "the push")
            resets = listener.resets
            raw.flushdb()
            until(lambda: listener.resets > resets, 1, "the null invalidation")
    finally:
        cache.close()
