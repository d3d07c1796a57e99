"""The fast paths of the Redis and Memcached backends behave as the slow ones did.

- bare pickles are decoded without the serializer's call: a damaged one, a frame
  (a compressing cache's payload) and a raw integer beside it in one ``get_many``;
- memcached's connections come off a free list (``FastPool``): a connection whose
  command failed is never used again, ``close`` closes the idle ones, pymemcache's
  pool options keep pymemcache's pool; a one-key ``get``, ``set``, ``incr`` or
  ``decr`` reply is parsed whole, or read on by pymemcache's readers;
- Redis ``SET`` is sent without redis-py's ``set()``: expiry and ``NX`` on the wire;
- zlib payloads read the same whether zlib-ng or the standard library wrote them.
"""

from __future__ import annotations

import asyncio
import pickle
import threading
import warnings
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from pymemcache.client.base import Client, PooledClient

import memokit
from memokit import CorruptEntryWarning, framing
from memokit.backends._memcached_pool import FastPool
from memokit.backends.base import BaseCache
from memokit.backends.memcached import MemcachedCache

pytestmark = [pytest.mark.server, pytest.mark.timeout(60)]

_unpickled: list[int] = []


def _reconstruct_and_fail(n: int) -> None:
    _unpickled.append(n)
    raise ValueError("refused on purpose")


class FailsToUnpickle:
    """A value whose unpickling runs a reconstructor that raises."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (_reconstruct_and_fail, (1,))


@pytest.fixture(params=["redis", "memcached"])
def pair(
    request: pytest.FixtureRequest,
) -> Iterator[tuple[BaseCache, BaseCache]]:
    """A plain-pickle cache and a compressing one on the same store and prefix."""
    server = request.getfixturevalue(f"{request.param}_server")
    location = f"{server.url}/5" if request.param == "redis" else server.url
    caches = [
        memokit.create_cache(
            {
                "BACKEND": request.param,
                "LOCATION": location,
                "KEY_PREFIX": "fast-paths",
                "OPTIONS": options,
            }
        )
        for options in ({}, {"COMPRESSOR": "zlib", "COMPRESS_MIN_SIZE": 0})
    ]
    yield caches[0], caches[1]
    caches[0].delete_many(["good", "bad", "framed", "n", "fails"])
    for cache in caches:
        cache.close()


def test_get_many_reports_only_the_unreadable_key(pair: tuple[BaseCache, BaseCache]) -> None:
    plain, compressing = pair
    plain.set_many({"good": {"a": 1}, "n": 7})
    compressing.set("framed", "x" * 100)  # a frame, which a plain cache reads too
    plain._set(plain.make_key("bad"), b"\x80\x05garbage", None)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        found = plain.get_many(["good", "bad", "framed", "n", "missing"])
    assert found == {"good": {"a": 1}, "framed": "x" * 100, "n": 7}
    messages = [str(w.message) for w in record if issubclass(w.category, CorruptEntryWarning)]
    assert len(messages) == 1
    assert "bad" in messages[0]
    assert "cannot unpickle" in messages[0]
    assert not plain.has_key("bad")
    assert plain.has_key("framed")


def test_async_get_many_reports_only_the_unreadable_key(
    pair: tuple[BaseCache, BaseCache],
) -> None:
    plain, compressing = pair

    async def main() -> dict[Any, Any]:
        await plain.aset_many({"good": [1, 2], "n": -3})
        await compressing.aset("framed", b"y" * 100)
        plain._set(plain.make_key("bad"), b"\x80\x05garbage", None)
        with pytest.warns(CorruptEntryWarning, match="bad"):
            return await plain.aget_many(["good", "bad", "framed", "n"])

    assert asyncio.run(main()) == {"good": [1, 2], "framed": b"y" * 100, "n": -3}


def test_a_bare_pickle_that_fails_is_unpickled_once(pair: tuple[BaseCache, BaseCache]) -> None:
    plain, _ = pair
    plain._set(plain.make_key("fails"), pickle.dumps(FailsToUnpickle(), 5), None)
    _unpickled.clear()
    with pytest.warns(CorruptEntryWarning, match="ValueError"):
        assert plain.get("fails", "default") == "default"
    assert _unpickled == [1]


# -- memcached: the free list of connections ----------------------------------------


@pytest.fixture
def mc(memcached_server: Any) -> Iterator[MemcachedCache]:
    cache = memokit.create_cache(
        {"BACKEND": "memcached", "LOCATION": memcached_server.url, "KEY_PREFIX": "fast-pool"}
    )
    assert isinstance(cache, MemcachedCache)
    yield cache
    cache.close()


def test_one_server_uses_the_free_list_and_pool_options_keep_pymemcaches(
    mc: MemcachedCache, memcached_server: Any
) -> None:
    assert type(mc._client) is FastPool
    for options in ({"max_pool_size": 4}, {"pool_idle_timeout": 30}):
        other = memokit.create_cache(
            {"BACKEND": "memcached", "LOCATION": memcached_server.url, "OPTIONS": options}
        )
        assert isinstance(other, MemcachedCache)
        assert type(other._client) is PooledClient
        other.set("k", 1)
        assert other.get("k") == 1
        other.close()


def test_a_connection_whose_command_failed_is_never_reused(mc: MemcachedCache) -> None:
    mc.set("k", 1)
    pool = mc._client
    broken = pool._idle[-1]
    broken.sock.close()  # the next send fails: EBADF
    with pytest.raises(memokit.BackendUnavailable):
        mc.get("k")
    assert broken not in pool._idle
    assert broken.sock is None  # closed
    assert mc.get("k") == 1  # on a new connection
    assert mc.get_many(["k"]) == {"k": 1}


@pytest.mark.parametrize(
    "value",
    [
        "small",
        b"\r\nEND\r\n",  # the reply's own terminator inside the value
        b"x" * 100_000,  # a reply over many reads: pymemcache's readers go on
        12345,  # a raw int (memcached's flags)
        None,
    ],
)
def test_a_get_reads_every_reply_whole(mc: MemcachedCache, value: Any) -> None:
    mc.set("k", value)
    for _ in range(3):  # the connection stays in step
        assert mc.get("k", "missing") == value
        assert mc.get("absent", "missing") == "missing"
    mc.set("after", 1)
    assert mc.get_many(["k", "after"]) == {"k": value, "after": 1}


def test_set_incr_and_decr_read_their_replies_in_step(mc: MemcachedCache) -> None:
    mc.set("n", 5)
    assert mc.incr("n", 3) == 8
    assert mc.decr("n", 10) == -2
    with pytest.raises(ValueError, match="not found"):
        mc.incr("absent")  # NOT_FOUND
    mc.set("f", 1.5)
    assert mc.incr("f") == 2.5  # CLIENT_ERROR (not a number): added in Python
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        mc.set("n", b"x" * 2_000_000)  # SERVER_ERROR object too large: the old value goes
    assert seen
    assert mc.get("n") is None
    assert mc.add("n", 1) is True
    assert mc.get_many(["n", "f"]) == {"n": 1, "f": 2.5}


def test_close_closes_the_idle_connections(mc: MemcachedCache) -> None:
    mc.set("k", 1)
    idle = list(mc._client._idle)
    assert idle
    assert all(client.sock is not None for client in idle)
    mc.close()
    assert not mc._client._idle
    assert all(client.sock is None for client in idle)
    assert mc.get("k") == 1  # a new connection


def test_threads_share_the_free_list(mc: MemcachedCache) -> None:
    created: list[Any] = []
    pool = mc._client
    make = pool._create_client

    def counting() -> Any:
        created.append(make())
        return created[-1]

    pool._create_client = counting
    mc.set("n", 0)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for i in range(100):
                mc.set(f"t{threading.get_ident()}", i)
                assert mc.get(f"t{threading.get_ident()}") == i
                mc.incr("n")
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors
    assert mc.get("n") == 600
    assert 1 <= len(created) <= 7  # at most one per thread (and the set before)


# -- redis: SET without redis-py's set() ----------------------------------------------


@pytest.fixture
def rc(redis_server: Any) -> Iterator[tuple[BaseCache, redis.Redis]]:
    url = f"{redis_server.url}/6"
    cache = memokit.create_cache({"BACKEND": "redis", "LOCATION": url, "TIMEOUT": 60})
    with redis.Redis.from_url(url) as raw:
        raw.flushdb()
        yield cache, raw
    cache.close()


def test_set_and_add_send_their_expiry_and_nx(rc: tuple[BaseCache, redis.Redis]) -> None:
    cache, raw = rc
    cache.set("timed", 1)
    cache.set("forever", 2, None)
    assert 59_000 < raw.pttl(":1:timed") <= 60_000
    assert raw.pttl(":1:forever") == -1
    assert cache.add("timed", 3) is False
    assert cache.add("new", 4, 5) is True
    assert 4_000 < raw.pttl(":1:new") <= 5_000
    assert cache.add("new-forever", 5, None) is True
    assert raw.pttl(":1:new-forever") == -1
    assert cache.get_many(["timed", "forever", "new", "new-forever"]) == {
        "timed": 1,
        "forever": 2,
        "new": 4,
        "new-forever": 5,
    }
    assert cache.set_many({"a": 1, "b": 2}, 10) == []
    assert 9_000 < raw.pttl(":1:a") <= 10_000


def test_async_set_and_add_send_their_expiry_and_nx(rc: tuple[BaseCache, redis.Redis]) -> None:
    cache, raw = rc

    async def main() -> tuple[bool, bool]:
        await cache.aset("timed", 1)
        await cache.aset("forever", 2, None)
        again = await cache.aadd("timed", 3)
        added = await cache.aadd("new", 4, None)
        assert await cache.aset_many({"a": 1}, 10) == []
        return again, added

    assert asyncio.run(main()) == (False, True)
    assert 59_000 < raw.pttl(":1:timed") <= 60_000
    assert raw.pttl(":1:forever") == raw.pttl(":1:new") == -1
    assert 9_000 < raw.pttl(":1:a") <= 10_000
    assert cache.get_many(["timed", "forever", "new"]) == {"timed": 1, "forever": 2, "new": 4}


# -- zlib: zlib-ng and the standard library read each other's payloads -----------------


def _zlib_serializer(module: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setattr(framing, "_deflate_module", lambda: module)
    monkeypatch.setattr(framing, "_BY_TAG", {})  # readers are made afresh too
    return framing.build_serializer("pickle", compressor="zlib", compress_min_size=0)


@pytest.mark.parametrize("direction", ["ng to stdlib", "stdlib to ng"])
def test_zlib_payloads_read_whichever_deflate_wrote_them(
    direction: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    zlib_ng = pytest.importorskip("zlib_ng.zlib_ng")
    modules = (zlib_ng, zlib) if direction == "ng to stdlib" else (zlib, zlib_ng)
    writer_module, reader_module = modules
    value = [{"id": i, "name": f"n{i}"} for i in range(300)]
    payload = _zlib_serializer(writer_module, monkeypatch).dumps(value)
    assert payload[3:4] == b"z"
    assert len(payload) < len(pickle.dumps(value, 5)) / 3
    reader = _zlib_serializer(reader_module, monkeypatch)
    assert reader.loads(payload) == value
    assert framing.read_plain_frame(payload) == value  # a plain-pickle cache's reader


def test_without_zlib_ng_the_standard_library_deflates(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import: Callable[..., Any] = builtins.__import__

    def without_zlib_ng(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("zlib_ng"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_zlib_ng)
    assert framing._deflate_module() is zlib
    compressor = framing.ZlibCompressor(1)
    assert compressor.decompress(compressor.compress(b"a" * 5000)) == b"a" * 5000


def test_a_raw_client_reads_what_memokit_stores(memcached_server: Any) -> None:
    # A bare pickle stays a bare pickle: nothing about the fast decode changed the format.
    cache = memokit.create_cache(
        {"BACKEND": "memcached", "LOCATION": memcached_server.url, "KEY_PREFIX": "fast-raw"}
    )
    cache.set("k", {"a": 1})
    client = Client((memcached_server.host, memcached_server.port), timeout=2)
    try:
        assert pickle.loads(client.get(cache.make_key("k"))) == {"a": 1}
    finally:
        client.close()
        cache.close()
