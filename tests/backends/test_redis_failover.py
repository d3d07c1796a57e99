"""Invalidations a failover cannot undo (WAIT 1), and failovers under load.

A counter bump on a deployment with replicas returns only once a replica holds
it; when none acknowledges, the invalidation raises. Under load, a primary is
killed and a replica promoted: decorated calls keep answering (failing open in
the window), never with a value an invalidation made before the kill replaced.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from redis.crc import key_slot

import memokit
from memokit import BaseCache, cached
from memokit.backends.rediscluster import wire_key
from memokit.counterkeys import COUNTER_VERSION
from memokit.switches import use_cache

pytestmark = [pytest.mark.server, pytest.mark.timeout(90)]


def _waits(clients: list[redis.Redis]) -> int:
    """``WAIT`` commands the servers ran since they started."""
    total = 0
    for client in clients:
        total += int(client.info("commandstats").get("cmdstat_wait", {}).get("calls", 0))
    return total


# -- a single server: no replicas, no WAIT -------------------------------------------


def test_a_single_server_bumps_without_wait(redis_server: Any) -> None:
    cache = memokit.create_cache({"BACKEND": "redis", "LOCATION": f"{redis_server.url}/0"})
    raw = redis.Redis.from_url(f"{redis_server.url}/0")
    try:
        before = _waits([raw])
        memokit.invalidate_tags("single", cache=cache)
        assert _waits([raw]) == before
    finally:
        cache.close()
        raw.close()


def test_an_invalidation_no_replica_acknowledges_raises(redis_server: Any) -> None:
    # LOCATION names a "replica" that replicates nothing: WAIT 1 times out at 0.
    from memokit.testing import start_server

    other = start_server("redis-server")
    cache = memokit.create_cache(
        {
            "BACKEND": "redis",
            "LOCATION": [f"{redis_server.url}/0", f"{other.url}/0"],
            "OPTIONS": {"socket_timeout": 0.4},
        }
    )

    @cached(cache=cache, tags="unacknowledged")
    def f() -> int:
        return 1

    try:
        assert f() == 1  # creates the counters (a fresh counter needs no WAIT: lost, it is
        # made fresh again, and no old entry carries a fresh value)
        with pytest.raises(memokit.BackendUnavailable, match="no replica acknowledged"):
            memokit.invalidate_tags("unacknowledged", cache=cache)
        with pytest.raises(memokit.BackendUnavailable, match="no replica acknowledged"):
            f.invalidate_all()

        async def main() -> None:
            with pytest.raises(memokit.BackendUnavailable, match="no replica acknowledged"):
                await memokit.ainvalidate_tags("unacknowledged", cache=cache)

        import asyncio

        asyncio.run(main())
    finally:
        cache.close()
        other.stop()


# -- the cluster -------------------------------------------------------------------


@pytest.fixture
def cluster_cache(redis_cluster: Any) -> Iterator[BaseCache]:
    for node in redis_cluster.primaries():
        node.client.flushdb()
    cache = memokit.create_cache(
        {
            "BACKEND": "redis-cluster",
            "LOCATION": redis_cluster.urls,
            "OPTIONS": {"socket_timeout": 0.5, "socket_connect_timeout": 0.3},
        }
    )
    memokit.configure_breaker(window=0.2, cache=cache)
    try:
        yield cache
    finally:
        cache.close()


def _owner(cluster: Any, cache: BaseCache, counter: str) -> Any:
    """The node that holds ``counter`` now (a primary), as the cache's client maps it."""
    slot = key_slot(wire_key(cache.make_key(counter, COUNTER_VERSION)).encode())
    port = cache._cluster.nodes_manager.get_node_from_slot(slot).port  # type: ignore[attr-defined]
    return next(n for n in cluster.nodes if n.port == port)


def _replica_of(cluster: Any, primary: Any) -> Any:
    info = primary.client.info("replication")
    return next(n for n in cluster.nodes if n.port == int(info["slave0"]["port"]))


@pytest.mark.cluster
def test_cluster_bumps_wait_for_a_replica_and_raise_when_none_answers(
    redis_cluster: Any, cluster_cache: BaseCache
) -> None:
    @cached(cache=cluster_cache)
    def f() -> int:
        return 1

    f()
    primary = _owner(redis_cluster, cluster_cache, "memokit.fn:" + _identity(f))
    before = _waits([primary.client])
    f.invalidate_all()
    assert _waits([primary.client]) == before + 1
    replica = _replica_of(redis_cluster, primary)
    os.kill(replica.process.pid, signal.SIGSTOP)  # alive, but acknowledges nothing
    try:
        with pytest.raises(memokit.BackendUnavailable, match="no replica acknowledged"):
            f.invalidate_all()
    finally:
        os.kill(replica.process.pid, signal.SIGCONT)


def _identity(f: Any) -> str:
    from memokit.identity import function_identity

    return function_identity(f.__wrapped__)


def _until(check: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:  # noqa: S110 - a node that is down or failing over: ask again
            pass
        time.sleep(0.05)
    raise AssertionError(f"{what} within {seconds} s")


class Load:
    """Threads calling a decorated function until stopped; they record what they saw.

    ``invalidated()`` is the data generation whose invalidation has returned: a call
    started after that must answer with it (or a later one), never an older one.
    """

    def __init__(self, call: Callable[[int], int], invalidated: Callable[[], int]) -> None:
        self.call = call
        self.invalidated = invalidated
        self.stop = threading.Event()
        self.wrong: list[tuple[int, int, int]] = []
        self.errors: list[BaseException] = []
        self.answers = 0
        self.threads = [threading.Thread(target=self._run, args=(i,)) for i in range(2)]

    def _run(self, seed: int) -> None:
        n = seed
        while not self.stop.is_set():
            n = (n + 1) % 20
            before = self.invalidated()
            try:
                value = self.call(n)
            except BaseException as exc:
                self.errors.append(exc)
                return
            self.answers += 1
            if value < n * 100 + before:
                self.wrong.append((n, value, before))

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(10)


@pytest.mark.cluster
def test_cluster_failover_under_load_never_undoes_an_invalidation(
    redis_cluster: Any, cluster_cache: BaseCache
) -> None:
    generation = [1]
    invalidated = [1]

    @cached(cache=cluster_cache)
    def value(n: int) -> int:
        return n * 100 + generation[0]

    for n in range(20):
        assert value(n) == n * 100 + 1
    primary = _owner(redis_cluster, cluster_cache, "memokit.fn:" + _identity(value))
    try:
        with Load(value, lambda: invalidated[0]) as load:
            time.sleep(0.2)
            generation[0] = 2
            value.invalidate_all()  # returned: a replica holds the bump
            primary.kill()  # at once
            invalidated[0] = 2
            _until(lambda: len(redis_cluster.primaries()) == 3, 20, "a replica was promoted")
            _until(lambda: cluster_cache.get("probe", 0) == 0, 20, "the cluster answered")
            answered = load.answers
            _until(lambda: load.answers > answered + 50, 20, "calls went on")
        assert load.errors == []
        assert load.wrong == []
        for n in range(20):
            assert value(n) == n * 100 + 2  # old entries never come back
        # An invalidation after the failover is seen by another client too.
        generation[0] = 3
        value.invalidate_all()
        other = memokit.create_cache(
            {"BACKEND": "redis-cluster", "LOCATION": redis_cluster.alive()[0].url}
        )
        try:
            with use_cache(other):
                assert [value(n) for n in range(20)] == [n * 100 + 3 for n in range(20)]
        finally:
            other.close()
    finally:
        primary.start()  # back as a replica of the promoted node
        redis_cluster.wait_ok()
        redis_cluster.wait_synced()


# -- Sentinel ------------------------------------------------------------------------


@pytest.fixture
def sentinel_cache(redis_sentinel: Any) -> Iterator[BaseCache]:
    redis_sentinel.primary().client.flushdb()
    cache = memokit.create_cache(
        {
            "BACKEND": "redis-sentinel",
            "LOCATION": redis_sentinel.urls,
            "OPTIONS": {
                "SERVICE_NAME": redis_sentinel.service,
                "socket_timeout": 0.5,
                "socket_connect_timeout": 0.3,
            },
        }
    )
    memokit.configure_breaker(window=0.2, cache=cache)
    try:
        yield cache
    finally:
        cache.close()


@pytest.mark.cluster
def test_sentinel_bumps_wait_for_a_replica(redis_sentinel: Any, sentinel_cache: BaseCache) -> None:
    @cached(cache=sentinel_cache, tags="sentinel-tag")
    def f() -> int:
        return 1

    f()
    primary = redis_sentinel.primary()
    before = _waits([primary.client])
    f.invalidate_all()
    assert _waits([primary.client]) == before + 1

    async def main() -> None:
        await memokit.ainvalidate_tags("sentinel-tag", cache=sentinel_cache)

    import asyncio

    asyncio.run(main())
    assert _waits([primary.client]) == before + 2


@pytest.mark.cluster
def test_sentinel_reads_go_to_replicas(redis_sentinel: Any, sentinel_cache: BaseCache) -> None:
    sentinel_cache.set("k", "v")
    primary = redis_sentinel.primary()
    replicas = [n for n in redis_sentinel.servers if n is not primary]
    _until(lambda: all(r.client.exists(":1:k") for r in replicas), 5, "replicated")
    primary.client.config_resetstat()
    for _ in range(10):
        assert sentinel_cache.get("k") == "v"
    assert "cmdstat_get" not in primary.client.info("commandstats")


@pytest.mark.cluster
def test_sentinel_failover_under_load_never_undoes_an_invalidation(
    redis_sentinel: Any, sentinel_cache: BaseCache
) -> None:
    generation = [1]
    invalidated = [1]

    @cached(cache=sentinel_cache)
    def value(n: int) -> int:
        return n * 100 + generation[0]

    for n in range(20):
        assert value(n) == n * 100 + 1
    primary = redis_sentinel.primary()
    try:
        with Load(value, lambda: invalidated[0]) as load:
            time.sleep(0.2)
            generation[0] = 2
            value.invalidate_all()  # returned: a replica holds the bump
            primary.kill()  # at once
            invalidated[0] = 2
            _until(lambda: redis_sentinel.primary_port() != primary.port, 20, "a failover")
            _until(lambda: sentinel_cache.get("probe", 0) == 0, 20, "the new primary answered")
            answered = load.answers
            _until(lambda: load.answers > answered + 50, 20, "calls went on")
        assert load.errors == []
        assert load.wrong == []
        for n in range(20):
            assert value(n) == n * 100 + 2  # old entries never come back
        generation[0] = 3
        value.invalidate_all()  # after the failover, through the same cache: no restart
        assert [value(n) for n in range(20)] == [n * 100 + 3 for n in range(20)]
    finally:
        primary.start()  # the sentinels make it a replica of the new primary
        redis_sentinel.wait_synced()


@pytest.mark.parametrize("name", [None, "", 3])
def test_sentinel_needs_a_service_name(name: Any) -> None:
    options = {} if name is None else {"SERVICE_NAME": name}
    with pytest.raises(memokit.ImproperlyConfigured, match="SERVICE_NAME"):
        memokit.create_cache(
            {"BACKEND": "redis-sentinel", "LOCATION": "redis://127.0.0.1:26379", "OPTIONS": options}
        )


def test_sentinel_locations_are_redis_urls() -> None:
    with pytest.raises(memokit.ImproperlyConfigured, match="redis://host:port"):
        memokit.create_cache(
            {
                "BACKEND": "redis-sentinel",
                "LOCATION": "rediss://127.0.0.1:26379",
                "OPTIONS": {"SERVICE_NAME": "mymaster"},
            }
        )
