"""What only the memcached backend does: key rules, expiry on the wire, failures, pools."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pymemcache.client.base import Client

import memokit
from memokit import (
    BackendUnavailable,
    CorruptEntryWarning,
    ImproperlyConfigured,
    InvalidCacheKey,
    ValueNotStoredWarning,
)
from memokit.backends.memcached import THIRTY_DAYS, MemcachedCache
from memokit.testing import RunningServer, start_server

pytestmark = pytest.mark.server


@pytest.fixture
def location(memcached_server: Any) -> str:
    client = Client((memcached_server.host, memcached_server.port), timeout=2)
    client.flush_all(noreply=False)
    client.close()
    return str(memcached_server.url)


@pytest.fixture
def raw(memcached_server: Any, location: str) -> Iterator[Client]:
    client = Client((memcached_server.host, memcached_server.port), timeout=2)
    yield client
    client.close()


@pytest.fixture
def cache(location: str) -> Iterator[MemcachedCache]:
    made = MemcachedCache(location)
    yield made
    made.close()


@pytest.fixture
def make() -> Iterator[Callable[..., MemcachedCache]]:
    """Build caches that are closed after the test."""
    made: list[MemcachedCache] = []

    def build(*args: Any, **kwargs: Any) -> MemcachedCache:
        made.append(MemcachedCache(*args, **kwargs))
        return made[-1]

    yield build
    for cache in made:
        cache.close()


@pytest.fixture
def own_server(memcached_server: Any) -> Iterator[RunningServer]:
    """A memcached of this test's own, to kill and restart."""
    server = start_server("memcached")
    yield server
    server.stop()


def identity_key(key: Any, key_prefix: str, version: Any) -> str:
    return str(key)


BAD_KEYS = [
    "with space",
    "tab\there",
    "cr\rhere",
    "lf\nhere",
    "x\r\nflush_all\r\n",
    "nul\x00",
    "del\x7f",
    "a" * 251,
    "é" * 126,  # 126 characters, 252 bytes
]

SYNC_CALLS: dict[str, Callable[[Any, str], object]] = {
    "get": lambda c, k: c.get(k),
    "set": lambda c, k: c.set(k, 1),
    "add": lambda c, k: c.add(k, 1),
    "get_or_set": lambda c, k: c.get_or_set(k, 1),
    "touch": lambda c, k: c.touch(k),
    "delete": lambda c, k: c.delete(k),
    "has_key": lambda c, k: c.has_key(k),
    "contains": lambda c, k: k in c,
    "incr": lambda c, k: c.incr(k),
    "decr": lambda c, k: c.decr(k),
    "incr_version": lambda c, k: c.incr_version(k),
    "decr_version": lambda c, k: c.decr_version(k),
    "get_many": lambda c, k: c.get_many(["canary", k]),
    "set_many": lambda c, k: c.set_many({"other": 1, k: 1}),
    "delete_many": lambda c, k: c.delete_many(["canary", k]),
}


def test_injection_is_refused_before_any_byte_is_sent(
    location: str, raw: Client, monkeypatch: pytest.MonkeyPatch, make: Any
) -> None:
    cache = make(location, key_function=identity_key)
    cache.set("canary", "alive")
    sent: list[bytes] = []
    real_create = socket.socket.sendall

    def spy(sock: socket.socket, data: Any, *args: Any) -> Any:
        sent.append(bytes(data))
        return real_create(sock, data, *args)

    monkeypatch.setattr(socket.socket, "sendall", spy)
    for name, call in SYNC_CALLS.items():
        for key in BAD_KEYS:
            with pytest.raises(InvalidCacheKey):
                call(cache, key)
            if name != "contains":
                with pytest.raises(InvalidCacheKey):
                    asyncio.run(_call_async(cache, name, key))
    assert sent == []
    monkeypatch.undo()
    assert raw.get("canary") is not None
    assert cache.get("canary") == "alive"
    cache.close()


async def _call_async(cache: Any, sync: str, key: str) -> Any:
    method = getattr(cache, f"a{sync}")
    if sync in ("get_many", "delete_many"):
        return await method(["canary", key])
    if sync == "set_many":
        return await method({"other": 1, key: 1})
    if sync in ("set", "add", "get_or_set"):
        return await method(key, 1)
    return await method(key)


def test_round_trips(cache: MemcachedCache, monkeypatch: pytest.MonkeyPatch) -> None:
    keys = [f"k{i}" for i in range(100)]
    cache.set("warm", 1)  # the pool's connection is open before counting
    writes: list[bytes] = []
    real = socket.socket.sendall

    def counting(sock: socket.socket, data: Any, *args: Any) -> Any:
        writes.append(bytes(data))
        return real(sock, data, *args)

    monkeypatch.setattr(socket.socket, "sendall", counting)
    cache.set_many({k: i for i, k in enumerate(keys)}, 60)
    assert len(writes) == 1
    assert writes[0].count(b"set ") == 100
    writes.clear()
    assert len(cache.get_many(keys)) == 100
    assert len(writes) == 1
    assert writes[0].startswith(b"get ")
    assert writes[0].count(b"get ") == 1
    writes.clear()
    assert cache.incr("k1") == 2
    assert cache.decr("k1") == 1
    assert len(writes) == 2


def test_non_ascii_keys_within_250_bytes_work(cache: MemcachedCache) -> None:
    key = "é" * 123  # 246 bytes, 249 with ":1:"
    cache.set(key, "v")
    assert cache.get(key) == "v"
    assert cache.get_many([key]) == {key: "v"}


def test_short_name_timeouts_and_options(location: str) -> None:
    cache = memokit.create_cache(
        {
            "BACKEND": "memcached",
            "LOCATION": location,
            "OPTIONS": {"max_pool_size": 4, "use_pooling": True},  # as in Django settings
        }
    )
    assert isinstance(cache, MemcachedCache)
    assert cache._client.client_pool.max_size == 4
    created = cache._client._create_client()
    assert (created.connect_timeout, created.timeout) == (1.0, 2.0)
    cache.close()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"timeout": None}, "finite number of seconds"),
        ({"connect_timeout": -1}, "finite number of seconds"),
        ({"serde": object()}, "SERIALIZER"),
        ({"default_noreply": True}, "every reply"),
        ({"use_pooling": False}, "always pools"),
        ({"IGNORE_EXC": "no"}, "IGNORE_EXC"),
        ({"no_such_option": 1}, "no_such_option"),
    ],
)
def test_bad_options_raise_at_once(location: str, options: dict[str, Any], message: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=message):
        memokit.create_cache({"BACKEND": "memcached", "LOCATION": location, "OPTIONS": options})


def test_timeouts_on_the_wire(cache: MemcachedCache) -> None:
    now = int(time.time())
    assert cache.get_backend_timeout(None) is None  # sent as 0, memcached's "never"
    assert cache.get_backend_timeout(0) == -1
    assert cache.get_backend_timeout(-5) == -1
    assert cache.get_backend_timeout(0.2) == 1
    assert cache.get_backend_timeout(10) == 10
    assert cache.get_backend_timeout(THIRTY_DAYS) == THIRTY_DAYS
    absolute = cache.get_backend_timeout(THIRTY_DAYS + 1)
    assert absolute is not None
    assert now + THIRTY_DAYS + 1 <= absolute <= int(time.time()) + THIRTY_DAYS + 1


def test_more_than_thirty_days_is_stored_as_a_unix_time(
    cache: MemcachedCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[int] = []
    real_set = cache._client.set

    def spy(key: str, value: Any, expire: int, *args: Any, **kwargs: Any) -> Any:
        sent.append(expire)
        return real_set(key, value, expire, *args, **kwargs)

    monkeypatch.setattr(cache._client, "set", spy)
    cache.set("long", "v", THIRTY_DAYS + 1)
    assert cache.get("long") == "v"  # a relative 30 days + 1 would already be "in the past"
    assert sent[0] > time.time()


def test_over_size_value_deletes_the_old_one(cache: MemcachedCache) -> None:
    cache.set("key", "old")
    with pytest.warns(ValueNotStoredWarning, match="too large"):
        cache.set("key", b"x" * (2**20 + 1))
    assert cache.get("key") is None
    cache.set_many({"a": "old", "b": "old"})
    with pytest.warns(ValueNotStoredWarning, match="set_many lists its key"):
        assert cache.set_many({"a": b"x" * (2**20 + 1), "b": "new"}) == ["a"]
    assert cache.get_many(["a", "b"]) == {"b": "new"}
    cache.set("after", 1)  # the connection is still usable
    assert cache.get("after") == 1


def test_incr_and_decr_are_native_and_go_below_zero(cache: MemcachedCache, raw: Client) -> None:
    cache.set("n", 1, 100)
    assert cache.decr("n", 5) == -4
    assert cache.incr("n", 10) == 6
    # Stored with an offset, so that memcached's decr need not stop at 0.
    assert raw.get(":1:n") == str(6 + 2**63).encode()
    cache.set("f", 0.5)
    assert cache.incr("f") == 1.5  # not a raw int: gets/cas
    cache.set("big", 2**62 - 1)
    assert cache.incr("big") == 2**62  # leaves the raw range: stored pickled
    assert cache.incr("big") == 2**62 + 1
    cache.set("s", "text")
    with pytest.raises(TypeError):
        cache.incr("s")
    assert cache.get("s") == "text"


def test_server_down_raises_backend_unavailable_quickly(make: Any) -> None:
    cache = make(f"127.0.0.1:{_closed_port()}")
    for call in (lambda: cache.get("k"), lambda: cache.set("k", 1), lambda: cache.incr("k")):
        started = time.monotonic()
        with pytest.raises(BackendUnavailable) as raised:
            call()
        assert time.monotonic() - started < 3
        assert isinstance(raised.value.__cause__, OSError)

    async def aget() -> Any:
        return await cache.aget("k")

    with pytest.raises(BackendUnavailable):
        asyncio.run(aget())


def test_ignore_exc_turns_read_failures_into_misses(make: Any) -> None:
    cache = make(f"127.0.0.1:{_closed_port()}", ignore_exc=True)
    assert cache.get("k", "default") == "default"
    assert cache.get_many(["k"]) == {}
    assert cache.has_key("k") is False
    with pytest.raises(BackendUnavailable):
        cache.set("k", 1)


def test_server_killed_then_restarted_on_the_same_port(
    own_server: RunningServer, make: Any
) -> None:
    cache = make(own_server.url)
    cache.set("k", 1)
    own_server.kill()
    with pytest.raises(BackendUnavailable):
        cache.get("k")
    own_server.restart()
    deadline = time.monotonic() + 5
    while True:
        try:
            cache.set("k", 2)
            break
        except BackendUnavailable:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    assert cache.get("k") == 2
    cache.close()


def test_a_server_that_never_answers_costs_at_most_the_timeouts(make: Any) -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)  # the kernel accepts; nobody ever answers
        port = silent.getsockname()[1]
        cache = make(f"127.0.0.1:{port}", client_options={"timeout": 0.3, "connect_timeout": 0.3})
        for call in (lambda: cache.get("k"), lambda: cache.incr("k")):
            started = time.monotonic()
            with pytest.raises(BackendUnavailable):
                call()
            assert time.monotonic() - started < 3  # 0.3 s configured, generous margin


def test_several_servers_share_keys_out(
    memcached_server: Any, own_server: RunningServer, make: Any
) -> None:
    cache = make([memcached_server.url, own_server.url])
    data = {f"k{i}": i for i in range(50)}
    cache.set_many(data)
    assert cache.get_many(list(data)) == data
    assert cache.incr("k3", 2) == 5
    counts = []
    for server in (memcached_server, own_server):
        client = Client((server.host, server.port), timeout=2)
        counts.append(int(client.stats()[b"curr_items"]))
        client.close()
    assert all(counts)  # both servers hold some of the keys
    cache.clear()
    assert cache.get_many(list(data)) == {}
    cache.close()


def test_async_twins_do_not_block_the_loop(cache: MemcachedCache) -> None:
    async def scenario() -> Any:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.001)
                ticks += 1

        task = asyncio.create_task(ticker())
        await cache.aset("k", 1)
        for _ in range(20):
            await cache.aincr("k")
        task.cancel()
        return await cache.aget("k"), ticks

    value, ticks = asyncio.run(scenario())
    assert value == 21
    assert ticks > 0


def test_connections_are_not_shared_after_fork(cache: MemcachedCache) -> None:
    cache.set("parent", 1)
    inherited = cache._client
    pid = os.fork()
    if pid == 0:  # the child: its own connections, never the parent's socket
        code = 1
        try:
            if cache._client is not inherited:
                cache.set("child", cache.get("parent") + 1)
                code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert cache.get("child") == 2
    assert cache.get("parent") == 1


def test_incr_is_atomic_across_threads(cache: MemcachedCache) -> None:
    cache.set("n", 0)

    def work() -> None:
        for _ in range(200):
            cache.incr("n")

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert cache.get("n") == 1600


def test_corrupt_payload_is_a_warned_miss(cache: MemcachedCache, raw: Client) -> None:
    raw.set(":1:k", b"\x80\x05garbage", noreply=False)  # wait: no race with the read
    with pytest.warns(CorruptEntryWarning, match="cannot be read"):
        assert cache.get("k") is None
    assert raw.get(":1:k") is None  # removed


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_an_unreadable_payload_is_never_quoted_by_incr(cache: MemcachedCache, raw: Client) -> None:
    # The last one carries memokit's raw-int flag (16), set by another client.
    for payload, flags in ((b"SECRETDATA", 0), (b"\x80\x04SECRETDATA", 0), (b"SECRETDATA", 16)):
        raw.set(":1:x", payload, noreply=False, flags=flags)
        with pytest.raises(memokit.UnreadableEntry) as raised:
            cache.incr("x")
        chain: BaseException | None = raised.value
        while chain is not None:
            assert "SECRET" not in str(chain)
            chain = chain.__cause__ or chain.__context__


@pytest.mark.parametrize("tier", [None, {"BOUND": 0.05}], ids=["plain", "tier-one"])
@pytest.mark.parametrize(
    "options", [{}, {"SECRET": "s" * 40}, {"SERIALIZER": "json"}], ids=["pickle", "signed", "json"]
)
def test_a_foreign_item_with_the_raw_int_flag_is_a_miss(
    memcached_server: RunningServer, options: dict[str, Any], tier: Any
) -> None:
    # memokit flags its raw integers (16); another client can set that flag on any
    # bytes. Those must be one unreadable entry (a miss, reported, removed), as any
    # foreign payload is, not a ValueError quoting them from every read.
    settings: dict[str, Any] = {
        "BACKEND": "memcached",
        "LOCATION": memcached_server.url,
        "KEY_PREFIX": f"flag-{uuid.uuid4().hex[:8]}",
        "OPTIONS": options,
    }
    if tier:
        settings["TIER"] = tier
    cache = memokit.create_cache(settings)
    raw = Client((memcached_server.host, memcached_server.port), timeout=2)

    def plant(key: str) -> None:
        raw.set(cache.make_key(key), b"junk", flags=16, noreply=False)

    @memokit.cached(cache=cache)
    def f(i: int) -> int:
        return i

    try:
        cache.set("k", [1])
        assert cache.get("k") == [1]  # tier one holds it
        assert f(1) == 1
        plant("k")
        plant(f.key(1))
        if tier:
            time.sleep(0.1)  # past the bound: the next reads re-check tier two
        with pytest.warns(memokit.CorruptEntryWarning):
            assert cache.get("k", "miss") == "miss"
        assert raw.get(cache.make_key("k")) is None  # removed
        with warnings.catch_warnings():
            # Reported once per key and window: the reads below are quiet misses.
            warnings.simplefilter("ignore", memokit.CorruptEntryWarning)
            plant("k")
            assert cache.get_many(["k"]) == {}
            plant("k")
            assert asyncio.run(cache.aget("k")) is None
            assert f(1) == 1  # recomputed, not a ValueError
    finally:
        raw.close()
        cache.close()
