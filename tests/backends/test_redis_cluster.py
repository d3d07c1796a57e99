"""The Redis Cluster backend on the test run's six-node cluster: slots, round trips, clear.

Round trips are counted at the client's sockets: every ``send_packed_command``
(sync and async) is one request written, answered by one read.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import redis.asyncio.connection
from redis.crc import key_slot

import memokit
from memokit import BaseCache, cached
from memokit.backends.rediscluster import RedisClusterCache, wire_key
from memokit.counterkeys import COUNTER_VERSION, function_counter_key
from memokit.keybuilders import LOCK_SUFFIX, make_key_builder

pytestmark = [pytest.mark.server, pytest.mark.cluster, pytest.mark.timeout(60)]


class Sent:
    """Counts requests written to redis-py's sockets, sync and async."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        sync, async_ = (
            redis.connection.AbstractConnection,
            redis.asyncio.connection.AbstractConnection,
        )
        for cls in (sync, async_):
            real = cls.send_packed_command
            monkeypatch.setattr(cls, "send_packed_command", self._counting(real))

    def _counting(self, real: Any) -> Any:
        def counting(conn: Any, *args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return real(conn, *args, **kwargs)

        return counting


@pytest.fixture
def cluster_cache(redis_cluster: Any) -> Iterator[BaseCache]:
    for node in redis_cluster.primaries():
        node.client.flushdb()
    cache = memokit.create_cache({"BACKEND": "redis-cluster", "LOCATION": redis_cluster.urls[0]})
    try:
        yield cache
    finally:
        cache.close()


def _slot(cache: BaseCache, key: str, version: int | None = None) -> int:
    return key_slot(wire_key(cache.make_key(key, version)).encode())


def sample(n: int) -> int:
    return n


def test_an_entry_its_lock_and_its_function_counter_share_a_slot() -> None:
    cache = RedisClusterCache("redis://127.0.0.1:1", key_prefix="app")
    build = make_key_builder(sample)
    counter = _slot(cache, function_counter_key(sample), COUNTER_VERSION)
    for args in [(1,), ("x" * 500,), ("a(b#c",)]:
        entry = build(args, {})
        assert _slot(cache, entry) == counter
        assert _slot(cache, entry + LOCK_SUFFIX) == counter
    # Tag counters and plain keys have slots of their own.
    assert _slot(cache, "memokit.tag:user:1", COUNTER_VERSION) != counter
    assert cache.make_key("k") == "app:1:k"  # make_key keeps Django's format


def test_the_function_counters_of_10000_functions_spread_over_slots_and_nodes() -> None:
    cache = RedisClusterCache("redis://127.0.0.1:1")
    slots = collections.Counter(
        _slot(cache, f"memokit.fn:app.module{i // 100}:function_{i}", COUNTER_VERSION)
        for i in range(10_000)
    )
    # 10,000 counters over 16,384 slots: a mean of 0.61 per slot, so a per-slot
    # bound of 3x the mean would forbid two in one slot; the bound is checked on
    # what a node owns (a range of slots), here 3 nodes and 128 ranges of 128 slots.
    for ranges in (3, 128):
        width = -(-16384 // ranges)
        held = collections.Counter(slot // width for slot in slots.elements())
        mean = 10_000 / ranges
        assert max(held.values()) <= 3 * mean
        assert len(held) == ranges  # no range is left empty
    assert max(slots.values()) <= 8  # no slot is a hot spot (Poisson(0.61) tail)


def test_a_decorated_read_without_tags_is_one_round_trip(
    cluster_cache: BaseCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    @cached(cache=cluster_cache)
    def square(n: int) -> int:
        return n * n

    @cached(cache=cluster_cache)
    async def cube(n: int) -> int:
        return n * n * n

    assert square(3) == 9  # creates the counter, opens the connection
    sent = Sent(monkeypatch)
    for n in (3, 3, 3):
        assert square(n) == 9
    assert sent.count == 3

    async def main() -> int:
        assert await cube(2) == 8
        sent.count = 0
        for _ in range(3):
            assert await cube(2) == 8
        return sent.count

    assert asyncio.run(main()) == 3


def test_a_read_with_a_tag_costs_at_most_one_more_round_trip(
    cluster_cache: BaseCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    @cached(cache=cluster_cache, tags="user:{user_id}")
    def report(user_id: int) -> str:
        return f"report {user_id}"

    assert report(1) == "report 1"
    sent = Sent(monkeypatch)
    assert report(1) == "report 1"
    assert sent.count <= 2
    memokit.invalidate_tags("user:1", cache=cluster_cache)
    assert cluster_cache.get("anything") is None  # the cluster still answers
    assert report(1) == "report 1"


def _nodes_of(cache: BaseCache, keys: list[str]) -> int:
    client = cache._cluster  # type: ignore[attr-defined]
    return len(
        {client.nodes_manager.get_node_from_slot(key_slot(wire_key(k).encode())).name for k in keys}
    )


def test_get_many_100_costs_at_most_one_round_trip_per_node(
    cluster_cache: BaseCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = [f"key-{i}" for i in range(100)]
    cluster_cache.set_many({k: i for i, k in enumerate(keys)})
    assert cluster_cache.get("key-0") == 0
    nodes = _nodes_of(cluster_cache, [cluster_cache.make_key(k) for k in keys])
    assert nodes == 3
    sent = Sent(monkeypatch)
    assert cluster_cache.get_many(keys) == {k: i for i, k in enumerate(keys)}
    assert sent.count <= nodes
    sent.count = 0
    cluster_cache.set_many({k: -i for i, k in enumerate(keys)})
    assert sent.count <= nodes
    sent.count = 0
    cluster_cache.delete_many(keys[:50])
    assert sent.count <= nodes

    async def main() -> dict[str, Any]:
        await cluster_cache.aget_many(keys)  # reads the slot map, connects to each node
        sent.count = 0
        found = await cluster_cache.aget_many(keys)
        assert sent.count <= nodes
        return found

    assert asyncio.run(main()) == {k: -i for i, k in enumerate(keys) if i >= 50}


def test_async_get_many_asks_the_nodes_concurrently(cluster_cache: BaseCache) -> None:
    # Concurrently: every node's request is written before any reply is read.
    order: list[str] = []
    conn_cls = redis.asyncio.connection.AbstractConnection
    real_send, real_read = conn_cls.send_packed_command, conn_cls.read_response

    async def send(conn: Any, *args: Any, **kwargs: Any) -> Any:
        order.append("send")
        return await real_send(conn, *args, **kwargs)

    async def read(conn: Any, *args: Any, **kwargs: Any) -> Any:
        order.append("read")
        return await real_read(conn, *args, **kwargs)

    keys = [f"key-{i}" for i in range(100)]
    cluster_cache.set_many(dict.fromkeys(keys, 1))

    async def main() -> None:
        await cluster_cache.aget("key-1")
        order.clear()
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(conn_cls, "send_packed_command", send)
            patch.setattr(conn_cls, "read_response", read)
            assert len(await cluster_cache.aget_many(keys)) == 100

    asyncio.run(main())
    assert order[:3] == ["send", "send", "send"]


def test_clear_empties_every_primary(cluster_cache: BaseCache, redis_cluster: Any) -> None:
    cluster_cache.set_many({f"key-{i}": i for i in range(50)})
    assert sum(n.client.dbsize() for n in redis_cluster.primaries()) == 50
    cluster_cache.clear()
    assert sum(n.client.dbsize() for n in redis_cluster.primaries()) == 0

    async def main() -> None:
        await cluster_cache.aset("a", 1)
        await cluster_cache.aclear()

    asyncio.run(main())
    assert sum(n.client.dbsize() for n in redis_cluster.primaries()) == 0


def test_a_cluster_that_cannot_be_reached_fails_open() -> None:
    from memokit.testing import free_port

    cache = memokit.create_cache(
        {"BACKEND": "redis-cluster", "LOCATION": f"redis://127.0.0.1:{free_port()}"}
    )
    with pytest.raises(memokit.BackendUnavailable):
        cache.get("k")
    calls = []

    @cached(cache=cache)
    def f(n: int) -> int:
        calls.append(n)
        return n

    assert f(1) == 1  # computed: the cache fails open (and logs it)
    assert calls == [1]


def test_a_unix_socket_location_is_refused() -> None:
    with pytest.raises(memokit.ImproperlyConfigured, match="redis://host:port"):
        memokit.create_cache({"BACKEND": "redis-cluster", "LOCATION": "unix:///tmp/r.sock"})


def test_a_key_template_spreads_a_hot_functions_entries_over_the_nodes(
    cluster_cache: BaseCache,
) -> None:
    @cached(cache=cluster_cache, key="price:{sku}")
    def price(sku: str) -> int:
        return len(sku)

    @cached(cache=cluster_cache)
    def plain(sku: str) -> int:
        return len(sku)

    skus = [f"sku-{i}" for i in range(30)]
    assert [price(s) for s in skus] == [plain(s) for s in skus]
    spread = [cluster_cache.make_key(price.key(s)) for s in skus]
    together = [cluster_cache.make_key(plain.key(s)) for s in skus]
    assert _nodes_of(cluster_cache, spread) == 3
    assert _nodes_of(cluster_cache, together) == 1
