"""Several memcached servers: keys never move, a failed server costs only its keys.

The servers here are this test's own (killed, restarted, cut off behind a fault
proxy); the contract suite runs on the session's pool (``memcached-pool`` in
tests/conftest.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from freezegun import freeze_time
from pymemcache.client.base import Client
from pymemcache.client.rendezvous import RendezvousHash
from pymemcache.exceptions import MemcacheUnexpectedCloseError

import memokit
from memokit import (
    BackendUnavailable,
    ImproperlyConfigured,
    NodeUnavailable,
    cached,
    configure_breaker,
)
from memokit.backends._memcached_ring import server_name
from memokit.backends.memcached import MemcachedCache
from memokit.counters import COUNTER_VERSION
from memokit.faults import FaultProxy
from memokit.testing import RunningServer, free_port, start_server

pytestmark = [pytest.mark.server, pytest.mark.timeout(60)]

WINDOW = 0.2
"""The breaker window of these tests' caches: how long a failed server is skipped."""
SETTLE = 10.0
"""The longest wait for a server that is back to be probed and used again (seconds)."""


@pytest.fixture
def servers(memcached_server: Any) -> Iterator[list[RunningServer]]:
    """Three memcached servers of this test's own, to kill and restart."""
    with contextlib.ExitStack() as stack:
        started = []
        for _ in range(3):
            server = start_server("memcached")
            stack.callback(server.kill)  # a throw-away server: SIGTERM waits on clients
            started.append(server)
        yield started


@pytest.fixture
def make() -> Iterator[Callable[..., MemcachedCache]]:
    """Build caches over several servers (closed after the test), skipping a failed one briefly."""
    made: list[MemcachedCache] = []

    def build(location: list[str], **options: Any) -> MemcachedCache:
        options = {"timeout": 0.5, "connect_timeout": 0.5, **options}
        cache = memokit.create_cache(
            {"BACKEND": "memcached", "LOCATION": location, "OPTIONS": options}
        )
        assert isinstance(cache, MemcachedCache)
        configure_breaker(window=WINDOW, cache=cache)
        made.append(cache)
        return cache

    yield build
    for cache in made:
        cache.close()


def node_of(cache: MemcachedCache, made: str) -> str:
    """The server (``host:port``) a made key lives on."""
    return server_name(cache._client._get_client(made).server)


def keys_on(cache: MemcachedCache, server: str, count: int, prefix: str = "k") -> list[str]:
    """``count`` keys (before prefix and version) that live on ``server``."""
    found = []
    n = 0
    while len(found) < count:
        if node_of(cache, cache.make_key(f"{prefix}{n}")) == server:
            found.append(f"{prefix}{n}")
        n += 1
    return found


def raw_get(server: RunningServer | str, made: str) -> Any:
    host, _, port = (server if isinstance(server, str) else server.url).rpartition(":")
    client = Client((host, int(port)), connect_timeout=2, timeout=2)
    try:
        return client.get(made)
    finally:
        client.close()


def closed_port() -> int:
    return free_port()  # nothing listens there: connections are refused at once


# -- a failed server: its calls raise, its keys never move ----------------------------------


def test_a_failed_server_always_raises_and_its_keys_never_move(
    servers: list[RunningServer], make: Any
) -> None:
    # pymemcache's own HashClient answered calls on a failed server with misses and
    # failed writes between its retries, without raising, and after retry_attempts
    # moved the server's keys to the others until dead_timeout (60 s) brought it back.
    down = f"127.0.0.1:{closed_port()}"
    cache = make([servers[0].url, servers[1].url, down])
    key = keys_on(cache, down, 1)[0]
    made = cache.make_key(key)
    calls: dict[str, Callable[[], object]] = {
        "set": lambda: cache.set(key, "v"),
        "delete": lambda: cache.delete(key),
        "add": lambda: cache.add(key, "v"),
        "incr": lambda: cache.incr(key),
        "touch": lambda: cache.touch(key),
        "get": lambda: cache.get(key),
        "get_many": lambda: cache.get_many([key]),
        "set_many": lambda: cache.set_many({key: "v"}),
        "delete_many": lambda: cache.delete_many([key]),
    }
    with freeze_time() as frozen:  # pymemcache's retry and dead timers run on time.time()
        for _ in range(4):
            for call in calls.values():
                with pytest.raises(NodeUnavailable):
                    call()
                frozen.tick(0.4)  # past retry_timeout (1 s) every few calls
            frozen.tick(61)  # past dead_timeout: a removed server would be added back
    for server in servers[:2]:
        assert raw_get(server, made) is None  # never stored on another server


def test_retry_and_dead_options_are_refused(servers: list[RunningServer]) -> None:
    location = [server.url for server in servers]
    for name in ("retry_attempts", "retry_timeout", "dead_timeout"):
        with pytest.raises(ImproperlyConfigured, match=rf"{name}.*never takes a server out"):
            memokit.create_cache(
                {"BACKEND": "memcached", "LOCATION": location, "OPTIONS": {name: 1}}
            )


def test_hashclient_options_are_accepted_with_several_servers(
    servers: list[RunningServer], make: Any
) -> None:
    cache = make([server.url for server in servers], hasher=RendezvousHash, max_pool_size=4)
    cache.set("k", 1)
    assert cache.get("k") == 1


def test_a_failed_server_is_skipped_for_the_window_then_probed(
    servers: list[RunningServer], make: Any, caplog: pytest.LogCaptureFixture
) -> None:
    cache = make([server.url for server in servers])
    victim = servers[2]
    key = keys_on(cache, victim.url, 1)[0]
    cache.set(key, "before")
    victim.kill()
    # The window runs on time.monotonic(), frozen here so that a slow machine
    # cannot let it pass between two calls.
    with caplog.at_level(logging.WARNING, logger="memokit"), freeze_time() as frozen:
        with pytest.raises(NodeUnavailable, match=r"failed \(") as first:
            cache.get(key)
        assert isinstance(first.value, BackendUnavailable)
        assert isinstance(first.value.__cause__, OSError | MemcacheUnexpectedCloseError)
        with pytest.raises(NodeUnavailable, match="skipped"):
            cache.get(key)  # within the window: no I/O
        frozen.tick(WINDOW * 2)
        with pytest.raises(NodeUnavailable, match=r"failed \("):
            cache.get(key)  # probed after the window: still down
        victim.restart()
        with pytest.raises(NodeUnavailable, match="skipped"):
            cache.get(key)  # back, but not probed before the window ends
        frozen.tick(WINDOW * 2)
        assert cache.get(key) is None  # probed: back, and empty
        assert cache.get(key) is None
    messages = [record.getMessage() for record in caplog.records]
    assert sum("failed" in message for message in messages) == 1
    assert sum("answers again" in message for message in messages) == 1


def wait_until(condition: Callable[[], bool], seconds: float) -> None:
    """Call ``condition`` until it is true (NodeUnavailable counts as false) or time is up."""
    import time

    deadline = time.monotonic() + seconds
    while True:
        with contextlib.suppress(NodeUnavailable):
            if condition():
                return
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(WINDOW / 4)


# -- a failed server costs only its share -------------------------------------------------


def test_a_failed_server_costs_only_its_keys(servers: list[RunningServer], make: Any) -> None:
    cache = make([server.url for server in servers])
    computed: list[int] = []

    @cached(cache=cache, name="pool-share")
    def square(n: int) -> int:
        computed.append(n)
        return n * n

    counter = node_of(cache, cache.make_key(square._state.counter_names[0], COUNTER_VERSION))
    victim = next(server for server in servers if server.url != counter)
    numbers = range(60)
    assert [square(n) for n in numbers] == [n * n for n in numbers]
    on_victim = {n for n in numbers if node_of(cache, cache.make_key(square.key(n))) == victim.url}
    assert 0 < len(on_victim) < len(numbers)
    victim.kill()
    computed.clear()
    assert [square(n) for n in numbers] == [n * n for n in numbers]  # fail open
    assert set(computed) == on_victim  # the others are still hits
    assert not cache.breaker.failures  # the breaker stays closed for the other servers
    assert square.cache_info().errors.backend == len(on_victim)  # the read; nothing stored
    computed.clear()

    async def twice() -> list[int]:
        return [await asquare(n) for n in numbers]

    @cached(cache=cache, name="pool-share")  # the same entries, read by an async twin
    async def asquare(n: int) -> int:
        computed.append(n)
        return n * n

    assert asyncio.run(twice()) == [n * n for n in numbers]
    assert set(computed) == on_victim
    assert not cache.breaker.failures
    # Plain calls: the other servers' keys answer, the failed server's raise...
    keys = [f"p{n}" for n in range(30)]
    alive = [key for key in keys if node_of(cache, cache.make_key(key)) != victim.url]
    cache.set_many({key: key for key in alive})
    assert cache.get_many(alive) == {key: key for key in alive}
    with pytest.raises(NodeUnavailable):
        cache.get_many(keys)
    # ... or read as misses under IGNORE_EXC.
    lenient = make([server.url for server in servers], IGNORE_EXC=True)
    assert lenient.get_many(keys) == {key: key for key in alive}


# -- stop a server, invalidate, restart it: the old value is never served ---------------


class Data:
    def __init__(self) -> None:
        self.version = 1

    def __cache_key__(self) -> None:
        return None


def roles(cache: MemcachedCache, read: Any) -> tuple[int, dict[str, str]]:
    """An argument whose entry lives on another server than the function's counter,
    and which server holds the counter, the entry, and neither."""
    counter = node_of(cache, cache.make_key(read._state.counter_names[0], COUNTER_VERSION))
    n = next(n for n in range(1000) if node_of(cache, cache.make_key(read.key(n))) != counter)
    entry = node_of(cache, cache.make_key(read.key(n)))
    servers = cache._client.clients
    other = next(s for s in map(server_name, servers) if s not in (counter, entry))
    return n, {"counter": counter, "entry": entry, "other": other}


@pytest.mark.parametrize("role", ["counter", "entry", "other"])
def test_stop_invalidate_restart_never_serves_the_old_value(
    servers: list[RunningServer], make: Any, role: str
) -> None:
    cache = make([server.url for server in servers])
    data = Data()

    @cached(cache=cache, name=f"pool-restart-{role}")
    def read(n: int) -> str:
        return f"v{data.version}:{n}"

    n, where = roles(cache, read)
    victim = next(server for server in servers if server.url == where[role])
    assert read(n) == f"v1:{n}"
    assert read(n) == f"v1:{n}"  # a hit
    victim.kill()
    data.version = 2
    if role == "counter":
        with pytest.raises(NodeUnavailable):  # explicit invalidation never fails open
            read.invalidate_all()
    else:
        read.invalidate_all()
    assert read(n) == f"v2:{n}"  # fail open, or the entry is outdated
    victim.restart()
    probe = keys_on(cache, victim.url, 1, prefix="probe")[0]
    wait_until(lambda: cache.get(probe) is None, SETTLE)  # probed again: back in use
    for _ in range(3):
        assert read(n) == f"v2:{n}"


@pytest.mark.parametrize("role", ["counter", "entry"])
def test_a_server_cut_off_and_back_never_undoes_an_invalidation(
    servers: list[RunningServer], make: Any, role: str
) -> None:
    # Cut off, not restarted: the server keeps its entries and counters. Keys that
    # moved away meanwhile and came back would find old counters there; here they
    # never move, and an invalidation either raises or holds.
    with contextlib.ExitStack() as stack:
        proxies = [stack.enter_context(FaultProxy(s.host, s.port)) for s in servers]
        cache = make([proxy.url() for proxy in proxies])
        data = Data()

        @cached(cache=cache, name=f"pool-cut-{role}")
        def read(n: int) -> str:
            return f"v{data.version}:{n}"

        n, where = roles(cache, read)
        cut = next(proxy for proxy in proxies if proxy.url() == where[role])
        assert read(n) == f"v1:{n}"
        cut.set_faults(reset=True)
        data.version = 2
        if role == "counter":
            with pytest.raises(NodeUnavailable):
                read.invalidate_all()
            expected = 1  # nothing was invalidated, and the caller was told so
        else:
            read.invalidate_all()
            expected = 2
        assert read(n) == f"v2:{n}"  # fail open, or the entry is outdated
        cut.heal()
        probe = keys_on(cache, cut.url(), 1, prefix="probe")[0]
        wait_until(lambda: cache.get(probe) is None, SETTLE)
        if role == "entry":  # the outdated entry is still on the server that came back
            assert raw_get(where["entry"], cache.make_key(read.key(n))) is not None
        assert read(n) == f"v{expected}:{n}"


# -- round trips, counted at the socket ---------------------------------------------------


def test_batches_cost_one_round_trip_per_server(
    servers: list[RunningServer], make: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = make([server.url for server in servers])
    keys = [f"k{i}" for i in range(100)]
    cache.set_many({key: 1 for key in keys})  # every pool has its connection open now
    writes: list[bytes] = []
    real = socket.socket.sendall

    def counting(sock: socket.socket, data: Any, *args: Any) -> Any:
        writes.append(bytes(data))
        return real(sock, data, *args)

    monkeypatch.setattr(socket.socket, "sendall", counting)
    assert len(cache.get_many(keys)) == 100
    assert len(writes) == 3
    assert all(write.startswith(b"get ") and write.count(b"get ") == 1 for write in writes)
    writes.clear()
    cache.set_many({key: 2 for key in keys})
    assert len(writes) == 3
    writes.clear()
    cache.delete_many(keys)
    assert len(writes) == 3  # pymemcache's HashClient sent one delete per key
    assert sum(write.count(b"delete ") for write in writes) == 100
    writes.clear()
    on_one = keys_on(cache, servers[0].url, 5)
    cache.get_many(on_one)
    assert len(writes) == 1

    @cached(cache=cache, name="pool-hit")
    def f(n: int) -> int:
        return n

    f(1)
    writes.clear()
    assert f(1) == 1
    assert 1 <= len(writes) <= 2  # the entry and its counter: one get per server holding them
