"""What only the Redis backend does: wire format, round trips, failures, pools, replicas."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

import memokit
from memokit import BackendError, BackendUnavailable, CorruptEntryWarning, ImproperlyConfigured
from memokit.backends.redis import RedisCache
from memokit.testing import RunningServer, start_server

pytestmark = pytest.mark.server


@pytest.fixture
def url(redis_server: Any) -> str:
    location = f"{redis_server.url}/0"
    with redis.Redis.from_url(location) as client:
        client.flushdb()
    return location


@pytest.fixture
def raw(url: str) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(url) as client:
        yield client


@pytest.fixture
def cache(url: str) -> Iterator[RedisCache]:
    made = RedisCache(url)
    yield made
    made.close()


@pytest.fixture
def make() -> Iterator[Callable[..., RedisCache]]:
    """Build caches that are closed after the test."""
    made: list[RedisCache] = []

    def build(*args: Any, **kwargs: Any) -> RedisCache:
        made.append(RedisCache(*args, **kwargs))
        return made[-1]

    yield build
    for cache in made:
        cache.close()


@pytest.fixture
def own_server(redis_server: Any) -> Iterator[RunningServer]:
    """A redis-server of this test's own, to kill and restart."""
    server = start_server("redis-server")
    yield server
    server.stop()


def test_short_name_and_options_pass_through(url: str) -> None:
    cache = memokit.create_cache(
        {"BACKEND": "redis", "LOCATION": url, "OPTIONS": {"socket_timeout": 0.5, "db": 3}}
    )
    assert isinstance(cache, RedisCache)
    kwargs = cache._primary.connection_pool.connection_kwargs
    assert kwargs["socket_timeout"] == 0.5
    assert kwargs["socket_connect_timeout"] == 1.0  # memokit's finite default
    cache.close()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"retry_on_timeout": True}, "never retries"),
        ({"retry": object()}, "never retries"),
        ({"socket_timeout": None}, "finite number of seconds"),
        ({"socket_connect_timeout": 0}, "finite number of seconds"),
        ({"READ_FROM_REPLICAS": "yes"}, "READ_FROM_REPLICAS"),
        ({"IGNORE_EXC": 1}, "IGNORE_EXC"),
        ({"decode_responses": True}, "decodes them itself"),
        ({"no_such_option": 1}, "no_such_option"),
    ],
)
def test_bad_options_raise_at_once(url: str, options: dict[str, Any], message: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=message):
        memokit.create_cache({"BACKEND": "redis", "LOCATION": url, "OPTIONS": options})


def test_bad_location_raises_without_the_password() -> None:
    with pytest.raises(ImproperlyConfigured) as raised:
        RedisCache("http://user:s3cret@localhost")
    assert "s3cret" not in str(raised.value)


def test_ints_are_stored_raw_and_everything_else_pickled(cache: RedisCache, raw: Any) -> None:
    cache.set("n", 42)
    cache.set("b", True)
    cache.set("s", "42")
    cache.set("big", 2**64)
    assert raw.get(":1:n") == b"42"
    assert raw.get(":1:b")[:1] == b"\x80"
    assert raw.get(":1:s")[:1] == b"\x80"
    assert raw.get(":1:big")[:1] == b"\x80"
    assert cache.get_many(["n", "b", "s", "big"]) == {"n": 42, "b": True, "s": "42", "big": 2**64}


def test_incr_is_atomic_on_the_server_and_keeps_the_ttl(cache: RedisCache, raw: Any) -> None:
    cache.set("n", 1, 100)
    raw.incrby(":1:n", 10)  # another client, with the raw command
    assert cache.incr("n") == 12
    assert 99_000 < raw.pttl(":1:n") <= 100_000
    assert raw.get(":1:n") == b"12"


def test_incr_of_values_incrby_cannot_add_to(cache: RedisCache, raw: Any) -> None:
    cache.set("f", 1.5, 100)
    assert cache.incr("f") == 2.5
    cache.set("top", 2**63 - 1, 100)
    assert cache.incr("top") == 2**63  # overflows 64 bits: stored pickled
    assert cache.incr("top", -1) == 2**63 - 1
    assert raw.pttl(":1:top") > 99_000
    cache.set("s", "text")
    with pytest.raises(TypeError):
        cache.incr("s")
    assert cache.get("s") == "text"
    with pytest.raises(ValueError, match="Key 'missing' not found"):
        cache.incr("missing")
    assert raw.exists(":1:missing") == 0  # INCRBY did not create it


def test_incr_with_a_huge_delta(cache: RedisCache) -> None:
    cache.set("n", 1)
    assert cache.incr("n", 2**70) == 2**70 + 1


def test_a_non_string_key_type_is_a_backend_error(cache: RedisCache, raw: Any) -> None:
    raw.rpush(":1:list", "x")
    with pytest.raises(BackendError, match="WRONGTYPE"):
        cache.get("list")


def test_touch_none_on_a_persistent_key_and_timeouts_on_the_wire(
    cache: RedisCache, raw: Any
) -> None:
    cache.set("k", 1, None)
    assert raw.pttl(":1:k") == -1
    assert cache.touch("k", None) is True
    cache.set("k", 1, 0.25)
    assert 0 < raw.pttl(":1:k") <= 250
    assert cache.get_backend_timeout(10) == 10
    assert cache.get_backend_timeout(0.0001) == 0.001
    assert cache.get_backend_timeout(-5) == 0
    assert cache.get_backend_timeout(None) is None


def test_clear_is_flushdb(cache: RedisCache, raw: Any) -> None:
    raw.set("not-ours", 1)
    cache.set("ours", 1)
    cache.clear()
    assert raw.dbsize() == 0


class Counter:
    """Counts what redis-py writes to its sockets, and the commands the server ran."""

    def __init__(self, raw: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        self.writes = 0
        self.raw = raw
        real = redis.connection.AbstractConnection.send_packed_command

        def counting(conn: Any, *args: Any, **kwargs: Any) -> Any:
            self.writes += 1
            return real(conn, *args, **kwargs)

        monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", counting)

    def reset(self) -> None:
        self.raw.config_resetstat()
        self.writes = 0

    def commands(self) -> dict[str, int]:
        stats = self.raw.info("commandstats")
        return {
            name.removeprefix("cmdstat_"): value["calls"]
            for name, value in stats.items()
            if not name.startswith("cmdstat_config")
        }


def test_round_trips(cache: RedisCache, raw: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    keys = [f"k{i}" for i in range(100)]
    # Open the pool's connection and load the Lua scripts before counting (a
    # script's first use on a server costs a SCRIPT LOAD round trip).
    cache.set("warm", 1)
    cache.incr("warm")
    cache.get_or_set("warm2", 1)
    counter = Counter(raw, monkeypatch)
    counter.reset()
    cache.set_many({k: i for i, k in enumerate(keys)}, 60)
    assert counter.writes == 1
    assert counter.commands() == {"set": 100}
    counter.reset()
    assert len(cache.get_many(keys)) == 100
    assert counter.writes == 1
    assert counter.commands() == {"mget": 1}
    counter.reset()
    assert cache.incr("k1") == 2
    assert cache.get_or_set("k2", 0) == 2
    assert cache.get_or_set("new", 7) == 7
    assert counter.writes == 4  # incr 1, hit 1, miss 2
    counter.reset()
    cache.set_many({k: 1 for k in keys}, None)
    assert counter.commands() == {"mset": 1}


def test_get_or_set_lets_a_racing_writer_win(cache: RedisCache, raw: Any) -> None:
    real_get = cache._get

    def get_then_race(key: str) -> Any:
        result = real_get(key)
        raw.set(key, b"5")  # another writer stores a raw int
        return result

    cache._get = get_then_race  # type: ignore[method-assign]
    assert cache.get_or_set("key", 1) == 5


def test_server_down_raises_backend_unavailable_quickly(make: Any) -> None:
    port = _closed_port()
    cache = make(f"redis://:hunter2@127.0.0.1:{port}/0")
    for call in (lambda: cache.get("k"), lambda: cache.set("k", 1), lambda: cache.incr("k")):
        started = time.monotonic()
        with pytest.raises(BackendUnavailable) as raised:
            call()
        assert time.monotonic() - started < 3
        assert isinstance(raised.value.__cause__, redis.ConnectionError)
        assert "hunter2" not in str(raised.value)
    assert "hunter2" not in repr(cache)
    assert "hunter2" not in cache.location


def test_ignore_exc_turns_read_failures_into_misses(make: Any) -> None:
    cache = make(f"redis://127.0.0.1:{_closed_port()}", ignore_exc=True)
    assert cache.get("k", "default") == "default"
    assert cache.get_many(["k"]) == {}
    assert cache.has_key("k") is False
    with pytest.raises(BackendUnavailable):
        cache.set("k", 1)

    async def reads() -> Any:
        return await cache.aget("k", "d"), await cache.aget_many(["k"]), await cache.ahas_key("k")

    assert asyncio.run(reads()) == ("d", {}, False)


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

    async def again() -> Any:
        await cache.aset("a", 3)
        return await cache.aget("a")

    assert asyncio.run(again()) == 3
    cache.close()


def test_a_server_that_never_answers_costs_at_most_the_timeouts(make: Any) -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)  # the kernel accepts; nobody ever answers
        port = silent.getsockname()[1]
        cache = make(
            f"redis://127.0.0.1:{port}",
            client_options={"socket_timeout": 0.3, "socket_connect_timeout": 0.3},
        )
        for call in (lambda: cache.get("k"), lambda: cache.incr("k")):
            started = time.monotonic()
            with pytest.raises(BackendUnavailable):
                call()
            assert time.monotonic() - started < 3  # 0.3 s configured, generous margin

        async def aget() -> Any:
            return await cache.aget("k")

        started = time.monotonic()
        with pytest.raises(BackendUnavailable):
            asyncio.run(aget())
        assert time.monotonic() - started < 3


def test_async_pools_are_per_event_loop(cache: RedisCache) -> None:
    async def scenario(value: int) -> Any:
        await cache.aset("k", value)
        assert await cache.aincr("k") == value + 1
        return await cache.aget("k")

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert asyncio.run(scenario(1)) == 2
        assert asyncio.run(scenario(10)) == 11  # a new loop: a new pool, no error
    assert len(cache._async_sides) == 1  # the first loop's pool was forgotten


def test_pool_is_recreated_after_fork(cache: RedisCache) -> None:
    cache.set("parent", 1)
    pid = os.fork()
    if pid == 0:  # the child: its own connections, never the parent's socket
        code = 1
        try:
            cache.set("child", cache.get("parent") + 1)
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert cache.get("child") == 2
    assert cache.get("parent") == 1


def test_reads_go_to_replicas_and_writes_to_the_primary(
    redis_server: Any, own_server: RunningServer, make: Any
) -> None:
    # Two independent servers stand in for a primary and its replica, so that
    # where each command went can be seen from the data.
    primary, replica = f"{redis_server.url}/5", f"{own_server.url}/5"
    with redis.Redis.from_url(primary) as p, redis.Redis.from_url(replica) as r:
        p.flushdb()
        r.set(":1:k", b"7")
        p.set(":1:k", b"1")
        cache = make([primary, replica])
        assert cache.get("k") == 7
        assert cache.get_many(["k"]) == {"k": 7}
        assert cache.has_key("k")
        assert cache.incr("k") == 2  # bookkeeping always on the primary
        assert p.get(":1:k") == b"2"
        assert cache.get_or_set("k", 0) in (2, 7)
        pinned = make(f"{primary};{replica}", read_from_replicas=False)
        assert pinned.get("k") == 2

        async def aget() -> Any:
            return await cache.aget("k"), await pinned.aget("k")

        assert asyncio.run(aget()) == (7, 2)
        cache.close()
        pinned.close()


def test_incr_is_atomic_across_threads(cache: RedisCache) -> None:
    cache.set("n", 0)
    cache.set("f", 0.0)

    def work() -> None:
        for _ in range(200):
            cache.incr("n")
            cache.incr("f")  # the WATCH path

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert cache.get("n") == 1600
    assert cache.get("f") == 1600.0


def test_corrupt_payload_is_a_warned_miss(cache: RedisCache, raw: Any) -> None:
    raw.set(":1:k", b"\x80\x05garbage")
    with pytest.warns(CorruptEntryWarning, match="cannot be read"):
        assert cache.get("k") is None
    assert raw.get(":1:k") is None  # removed


class DelayProxy:
    """A TCP proxy that delays the server's replies, to cancel calls mid-reply."""

    def __init__(self, target_port: int, delay: float) -> None:
        self.target_port = target_port
        self.delay = delay
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    async def _pipe(self, reader: Any, writer: Any, delayed: bool) -> None:
        try:
            while data := await reader.read(65536):
                if delayed and self.delay:
                    await asyncio.sleep(self.delay)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _handle(self, client_reader: Any, client_writer: Any) -> None:
        server_reader, server_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        await asyncio.gather(
            self._pipe(client_reader, server_writer, False),
            self._pipe(server_reader, client_writer, True),
        )

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


def test_cancelled_calls_never_give_a_later_call_their_reply(
    redis_server: Any, raw: Any, make: Any
) -> None:
    # CVE-2023-28858: a reply left on a connection after a cancelled call must
    # not be read as the answer to the next call on that connection.
    async def scenario() -> Any:
        proxy = DelayProxy(redis_server.port, 0)
        port = await proxy.start()
        cache = make(f"redis://127.0.0.1:{port}/0")
        try:
            await cache.aset_many({"a": "value-a", "b": "value-b"})
            # Replies now take 1 s and calls are cancelled after 0.1 s: a wide
            # window, so a busy machine cannot let a reply arrive before the cancel.
            proxy.delay = 1.0
            task = asyncio.create_task(cache.aget("a"))
            await asyncio.sleep(0.1)  # sent, reply on its way
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            proxy.delay = 0
            assert await cache.aget("b") == "value-b"
            proxy.delay = 1.0
            many = asyncio.create_task(cache.aset_many({"c": 1, "d": 2}))
            await asyncio.sleep(0.1)
            many.cancel()
            with pytest.raises(asyncio.CancelledError):
                await many
            proxy.delay = 0
            assert await cache.aget_many(["a", "b"]) == {"a": "value-a", "b": "value-b"}
            await cache.aclose()
        finally:
            await proxy.stop()

    asyncio.run(scenario())


def test_incr_that_times_out_after_sending_is_applied_once(
    redis_server: Any, raw: Any, make: Any
) -> None:
    # D5: the reply is late, the call times out, nothing retries: the server
    # ran INCRBY exactly once.
    raw.set(":1:n", b"1")

    async def incr_late() -> None:
        proxy = DelayProxy(redis_server.port, 0)
        port = await proxy.start()
        try:
            cache = make(f"redis://127.0.0.1:{port}/0", client_options={"socket_timeout": 0.2})
            await cache.aset("warm-up", 0)  # connect and load the script while replies are quick
            assert await cache.aincr("warm-up") == 1
            proxy.delay = 0.5  # from now on every reply is late
            with pytest.raises(BackendUnavailable):
                await cache.aincr("n")
            await asyncio.sleep(0.8)  # the late reply has arrived and been dropped
            await cache.aclose()
        finally:
            await proxy.stop()

    asyncio.run(incr_late())
    assert raw.get(":1:n") == b"2"


def test_a_wrong_password_is_never_shown(redis_server: Any, make: Any) -> None:
    cache = make(f"redis://user:Sw0rdfish@127.0.0.1:{redis_server.port}/0")
    with pytest.raises(BackendUnavailable) as raised:
        cache.get("k")
    assert "Sw0rdfish" not in str(raised.value)
    assert "Sw0rdfish" not in repr(cache)
    assert "Sw0rdfish" not in str(raised.value.__cause__)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _chain_text(exc: BaseException | None) -> str:
    """Every message in an exception's cause/context chain, as a traceback would show."""
    parts = []
    while exc is not None:
        parts.append(f"{type(exc).__name__}: {exc}")
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    return "\n".join(parts)


@pytest.mark.parametrize("payload", [b"SECRETDATA", b"\x80\x04SECRETDATA"])
def test_an_unreadable_payload_is_never_quoted_by_incr(
    cache: RedisCache, raw: redis.Redis, payload: bytes
) -> None:
    raw.set(":1:x", payload)
    with pytest.raises(memokit.UnreadableEntry) as raised:
        cache.incr("x")
    assert "SECRET" not in _chain_text(raised.value)
    raw.set(":1:x", payload)
    with pytest.raises(memokit.UnreadableEntry) as araised:
        asyncio.run(cache.aincr("x"))
    assert "SECRET" not in _chain_text(araised.value)


def test_a_key_encoding_other_than_utf8_is_refused(url: str) -> None:
    # redis-py with hiredis packs the sync client's commands as UTF-8 whatever
    # ``encoding`` says, and its asyncio client by ``encoding``: with latin-1, a key
    # set by ``set`` was a miss for ``aget`` (two names for one key).
    with pytest.raises(ImproperlyConfigured, match=r"OPTIONS\['encoding'\].*UTF-8"):
        RedisCache(url, client_options={"encoding": "latin-1"})
    for name in ("utf-8", "UTF8", "utf_8"):
        cache = RedisCache(url, client_options={"encoding": name})
        cache.set("clé", [1])
        assert asyncio.run(cache.aget("clé")) == [1]
        assert asyncio.run(cache.aget_many(["clé"])) == {"clé": [1]}
        asyncio.run(cache.aset("clé", [2]))
        assert cache.get_many(["clé"]) == {"clé": [2]}
        cache.close()


class _Interrupted(BaseException):
    """What a signal handler raises between sending a command and reading its reply."""


@pytest.mark.parametrize("read", ["get", "get_many"])
def test_an_interrupted_read_never_answers_the_next_one(
    cache: RedisCache, monkeypatch: pytest.MonkeyPatch, read: str
) -> None:
    # The direct reads borrow a pooled connection: one given back with a reply still
    # owed would answer the next GET with the interrupted command's reply.
    cache.set_many({"a": "A", "b": "B"})
    connection_class = cache._primary.connection_pool.connection_class
    real = connection_class.read_response
    calls: list[int] = []

    def interrupted(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise _Interrupted
        return real(self, *args, **kwargs)

    monkeypatch.setattr(connection_class, "read_response", interrupted)
    with pytest.raises(_Interrupted):
        cache.get("a") if read == "get" else cache.get_many(["a"])
    assert cache.get("b") == "B"
    assert cache.get_many(["b"]) == {"b": "B"}
