"""The Redis backend, on redis-py (``pip install memokit[redis]``, ``[hiredis]`` for speed).

One key per entry. Integers that fit in 64 bits are stored as their decimal
text, so that ``INCRBY`` can add to them on the server (as Django does);
everything else is serialised. ``LOCATION`` is a ``redis://`` URL, or a list
whose first URL is the primary (every write, ``incr`` and ``get_or_set``) and
whose others are replicas for plain reads (``get``, ``get_many``, ``has_key``).

The sync client keeps one connection pool per server per process; a child
after ``fork`` gets new ones and never touches the inherited ones
(_afterfork.py). The async twins use ``redis.asyncio``
with one pool per event loop, because its connections are bound to the loop
that opened them; a pool is disconnected when its loop shuts down.

Nothing is retried: a command that timed out after it was sent may have run,
and running ``INCRBY`` twice would count twice. Connect and read timeouts are
finite by default (``SOCKET_CONNECT_TIMEOUT`` and ``SOCKET_TIMEOUT`` below).

Expiry is sent as ``PX`` milliseconds; a timeout reaching past
``capabilities.latest_expiry`` (Redis counts in signed 64-bit milliseconds) is
stored as "never expires". ``set_many`` returns the keys whose command the
server refused (and removes their old values), and no error message quotes a
value: redis-py's pipeline errors echo the command, which is cut out.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import random
import threading
import time
from collections.abc import Mapping
from typing import Any, ClassVar, Final, NoReturn, Unpack

import redis
import redis.asyncio
from redis.commands.core import Script
from redis.exceptions import WatchError

from .._secrets import redact
from ..exceptions import BackendError, BackendUnavailable, ImproperlyConfigured
from ..framing import INT64_MAX, INT64_MIN, raw_ints_safe
from ..serializers import (
    PickleSerializer,
)
from ..timeouts import DEFAULT_TIMEOUT, Timeout
from ._afterfork import renew_in_children
from ._deadline import with_deadlines
from ._redisasync import AsyncSide, disconnect_at_shutdown
from ._redisconf import (
    GET_OR_ADD_SCRIPT,
    INCR_SCRIPT,
    OWNED,
    PERSIST_SCRIPT,
    check_client_options,
    check_servers,
    display,
    found_payloads,
    known_secrets,
    milliseconds,
    queue_sets,
    refused_keys,
    scrub,
    send_set,
)
from ._redisconf import (
    LATEST_EXPIRY as LATEST_EXPIRY,  # public here, as before the split
)
from ._redisread import ReadsInOrder, aread, read
from ._redisrecheck import RechecksUnchanged
from ._redisscripts import arun_script, run_script
from ._redistracking import TracksInvalidations
from ._rediswait import WaitedCounters
from ._remote import (
    check_flag,
    keeps_cancellation,
    parameter_names,
    refused_options,
    split_location,
    split_options,
)
from .base import MISSING, BaseCache, Capabilities, CommonSettings

DEFAULT_SOCKET_CONNECT_TIMEOUT: Final = 1.0
"""Seconds to wait for a TCP connection to the server."""
DEFAULT_SOCKET_TIMEOUT: Final = 2.0
"""Seconds to wait for the server's answer to a command."""

_TIMEOUTS = {
    "socket_connect_timeout": DEFAULT_SOCKET_CONNECT_TIMEOUT,
    "socket_timeout": DEFAULT_SOCKET_TIMEOUT,
}


class RedisCache(ReadsInOrder, RechecksUnchanged, TracksInvalidations, WaitedCounters, BaseCache):
    """A cache on one Redis server (plus optional read replicas)."""

    capabilities: ClassVar[Capabilities] = Capabilities(
        local_clock=False,
        atomic_incr=True,
        cross_process=True,
        persistent=True,
        blocking_io=True,
        latest_expiry=LATEST_EXPIRY,
    )
    option_names: ClassVar[frozenset[str]] = OWNED

    def __init__(
        self,
        location: str | list[str] = "redis://127.0.0.1:6379",
        *,
        read_from_replicas: bool = True,
        ignore_exc: bool = False,
        client_options: Mapping[str, Any] | None = None,
        **settings: Unpack[CommonSettings],
    ) -> None:
        servers = split_location(location)
        client_options = dict(client_options or {})
        self._secrets = known_secrets(servers, client_options)
        check_servers(servers, self._secrets)
        # The public ``location`` never holds a password: it may end up in logs.
        super().__init__(display(servers), **settings)
        self._servers = servers
        self._read_from_replicas = check_flag(read_from_replicas, "READ_FROM_REPLICAS")
        self._ignore_exc = check_flag(ignore_exc, "IGNORE_EXC")
        self._client_options = check_client_options(client_options, _TIMEOUTS)
        self._raw_ints = raw_ints_safe(self.serializer)
        # Bare pickles (the default): _decode reads them without the serializer's call.
        self._bare_pickles = type(self.serializer) is PickleSerializer and self._raw_ints
        self._display = self.location
        self._refusal_quiet_until = 0.0
        pools: list[redis.ConnectionPool] = []
        try:
            for url in servers:
                pools.append(self._new_pool(url))
            for pool in pools:
                # redis-py reads the options only when it first connects; build
                # one connection object now (no I/O) so a typo raises here.
                pool.connection_class(**pool.connection_kwargs)
        except TypeError as exc:
            classes = {pool.connection_class for pool in pools} or {redis.Connection}
            accepted = parameter_names(
                [redis.ConnectionPool.__init__]
                + [k.__init__ for c in classes for k in c.__mro__ if "__init__" in vars(k)]
            )
            error = refused_options(
                type(self).__name__, "redis-py", self._client_options, OWNED, accepted, exc
            )
            raise ImproperlyConfigured(redact(str(error), self._secrets)) from None
        except ValueError as exc:
            raise ImproperlyConfigured(
                f"LOCATION/OPTIONS for Redis {self._display}: {redact(str(exc), self._secrets)}"
            ) from None
        self._use_pools(pools)
        self._async_sides: dict[tuple[int, asyncio.AbstractEventLoop], AsyncSide] = {}
        self._async_lock = threading.Lock()
        renew_in_children(self)

    def _new_pool(self, url: str) -> redis.ConnectionPool:
        pool = redis.ConnectionPool.from_url(url, **self._client_options)
        # The socket timeout bounds a whole reply, not each read (_deadline.py).
        pool.connection_class = with_deadlines(pool.connection_class)
        return pool

    def _use_pools(self, pools: list[redis.ConnectionPool]) -> None:
        clients = [redis.Redis(connection_pool=pool) for pool in pools]
        self._primary = clients[0]
        self._replicas = clients[1:]
        self._incr_script: Script = self._primary.register_script(INCR_SCRIPT)
        self._get_or_add_script: Script = self._primary.register_script(GET_OR_ADD_SCRIPT)
        self._persist_script: Script = self._primary.register_script(PERSIST_SCRIPT)

    def _renew_clients(self) -> None:
        # In a child after fork: the inherited pools are dropped untouched (_afterfork.py).
        self._use_pools([self._new_pool(url) for url in self._servers])
        self._async_lock = threading.Lock()  # may have been held at the fork too
        self._async_sides = {}

    @classmethod
    def options_to_kwargs(cls, options: Mapping[str, Any]) -> dict[str, Any]:
        """memokit's own OPTIONS become arguments; the rest go to redis-py's pool."""
        own, client = split_options(cls.__name__, options, OWNED)
        own["client_options"] = client
        return own

    def __repr__(self) -> str:
        return f"{type(self).__name__}(location={self._display!r})"

    def get_backend_timeout(self, timeout: Timeout = DEFAULT_TIMEOUT) -> float | None:
        """Return the seconds sent to Redis (as ``PX`` milliseconds): None is no expiry."""
        seconds = self._seconds(timeout)
        if seconds is not None and seconds <= 0:
            return 0
        px = milliseconds(seconds)
        return None if px is None else px / 1000

    # -- errors ------------------------------------------------------------------

    def _fail(self, exc: Exception) -> NoReturn:
        if isinstance(exc, redis.ConnectionError | redis.TimeoutError | OSError):
            raise BackendUnavailable(
                f"Redis {self._display} is unavailable: {scrub(exc, self._secrets)}"
            ) from exc
        raise BackendError(f"Redis {self._display} failed: {scrub(exc, self._secrets)}") from exc

    def _reader(self) -> redis.Redis:
        if self._replicas and self._read_from_replicas:
            return random.choice(self._replicas)
        return self._primary

    # -- sync primitives -----------------------------------------------------------

    def _get(self, key: str) -> Any:
        try:
            payload = read(self._reader(), "GET", key)
        except redis.RedisError as exc:
            if self._ignore_exc:
                return MISSING
            self._fail(exc)
        return MISSING if payload is None else payload

    def _get_many(self, keys: list[str]) -> dict[str, Any]:
        if not keys:
            return {}  # MGET refuses no keys
        try:
            payloads = read(self._reader(), "MGET", *keys)
        except redis.RedisError as exc:
            if self._ignore_exc:
                return {}
            self._fail(exc)
        return found_payloads(keys, payloads)

    def _has_key(self, key: str) -> bool:
        try:
            return bool(self._reader().exists(key))
        except redis.RedisError as exc:
            if self._ignore_exc:
                return False
            self._fail(exc)

    def _set(self, key: str, payload: Any, timeout: float | None) -> None:
        try:
            send_set(self._primary, key, payload, milliseconds(timeout))
        except redis.RedisError as exc:
            self._fail(exc)

    def _set_many(self, items: dict[str, Any], timeout: float | None) -> list[str]:
        px = milliseconds(timeout)
        try:
            with self._primary.pipeline(transaction=False) as pipe:
                queue_sets(pipe, items, px)
                replies = pipe.execute(raise_on_error=False)
            failed = refused_keys(items, px, replies)
            if failed:
                # As memcached: an old value never survives a failed update.
                self._primary.delete(*failed)
                self._log_refusal(replies)
        except redis.RedisError as exc:
            self._fail(exc)
        return failed

    def _log_refusal(self, replies: list[Any]) -> None:
        # A refused SET (OOM over maxmemory, READONLY) is the server's condition, not
        # the value's: logged as a backend failure, once per window; set_many lists the keys.
        now = time.monotonic()
        if now < self._refusal_quiet_until:
            return
        self._refusal_quiet_until = now + self._report_window()
        exc = next(reply for reply in replies if isinstance(reply, Exception))
        logging.getLogger("memokit").warning(
            "memokit: cache %s refused commands of a set_many (%s: %s); those keys were "
            "not stored and set_many returns them",
            self._display,
            type(exc).__name__,
            scrub(exc, self._secrets),
        )

    def _failed_keys(self, originals: Mapping[str, Any], failed: list[str]) -> list[Any]:
        return [originals[m] for m in failed]  # logged as a backend condition, not per key

    def _add(self, key: str, payload: Any, timeout: float | None) -> bool:
        px = milliseconds(timeout)
        try:
            return bool(send_set(self._primary, key, payload, px, "NX"))
        except redis.RedisError as exc:
            self._fail(exc)

    def _touch(self, key: str, timeout: float | None) -> bool:
        try:
            px = milliseconds(timeout)
            if px is None:
                return bool(run_script(self._primary, self._persist_script, [key], []))
            return bool(self._primary.pexpire(key, px))
        except redis.RedisError as exc:
            self._fail(exc)

    def _delete(self, key: str) -> bool:
        try:
            return bool(self._primary.delete(key))
        except redis.RedisError as exc:
            self._fail(exc)

    def _delete_many(self, keys: list[str]) -> None:
        try:
            self._primary.delete(*keys)
        except redis.RedisError as exc:
            self._fail(exc)

    def _clear(self) -> None:
        try:
            self._primary.flushdb()
        except redis.RedisError as exc:
            self._fail(exc)

    def _count(self) -> int:
        try:
            return int(self._primary.dbsize())
        except redis.RedisError as exc:
            self._fail(exc)

    def _clear_some(self, limit: int) -> int:
        # clear() is FLUSHDB: every key of the database, whoever wrote it.
        try:
            keys = list(itertools.islice(self._primary.scan_iter(count=limit), limit))
            return int(self._primary.delete(*keys)) if keys else 0
        except redis.RedisError as exc:
            self._fail(exc)

    def _incr(self, key: str, delta: int | float) -> Any:
        try:
            if self._raw_ints and type(delta) is int and INT64_MIN <= delta <= INT64_MAX:
                reply = run_script(self._primary, self._incr_script, [key], [delta])
                if reply is None:
                    return MISSING
                if not isinstance(reply, list):
                    return int(reply)
            return self._incr_in_python(key, delta)
        except redis.RedisError as exc:
            self._fail(exc)

    def _incr_in_python(self, key: str, delta: int | float) -> Any:
        # A value INCRBY cannot add to (a float, a big int, None ...): read it,
        # add in Python, write it back keeping the TTL, all under WATCH, so a
        # concurrent change makes us start again instead of losing an update.
        with self._primary.pipeline(transaction=True) as pipe:
            while True:
                try:
                    pipe.watch(key)  # type: ignore[no-untyped-call]  # unannotated in redis-py
                    payload = pipe.get(key)
                    if payload is None:
                        return MISSING
                    value = self._decode(payload) + delta
                    pipe.multi()
                    pipe.set(key, self._encode(value), keepttl=True)
                    pipe.execute()
                    return value
                except WatchError:
                    continue

    def _add_or_get(self, key: str, payload: Any, timeout: float | None) -> Any:
        # One round trip: the script returns the live value, or stores ours.
        px = milliseconds(timeout) or ""
        try:
            current = run_script(self._primary, self._get_or_add_script, [key], [payload, px])
        except redis.RedisError as exc:
            self._fail(exc)
        return MISSING if current is None else current

    def close(self, **kwargs: Any) -> None:
        """Close the pooled connections; the next call opens new ones."""
        for client in (self._primary, *self._replicas):
            client.connection_pool.disconnect()
        super().close(**kwargs)  # invalidation tracking too (TracksInvalidations)

    # -- async: redis.asyncio, one pool per event loop -----------------------------

    async def _side(self) -> AsyncSide:
        loop = asyncio.get_running_loop()
        ident = (os.getpid(), loop)
        side = self._async_sides.get(ident)
        if side is not None:
            return side
        clients = [
            redis.asyncio.Redis.from_url(url, **self._client_options) for url in self._servers
        ]
        guard = disconnect_at_shutdown(clients)
        await guard.__anext__()
        primary = clients[0]
        side = AsyncSide(
            primary=primary,
            replicas=clients[1:],
            incr=primary.register_script(INCR_SCRIPT),
            get_or_add=primary.register_script(GET_OR_ADD_SCRIPT),
            persist=primary.register_script(PERSIST_SCRIPT),
            guard=guard,
        )
        with self._async_lock:
            # Forget the pools of loops that are gone (their guard has run).
            for old in [i for i in self._async_sides if i[1].is_closed() or i[0] != ident[0]]:
                del self._async_sides[old]
            self._async_sides[ident] = side
        return side

    def _areader(self, side: AsyncSide) -> redis.asyncio.Redis:
        if side.replicas and self._read_from_replicas:
            return random.choice(side.replicas)
        return side.primary

    @keeps_cancellation
    async def _aget(self, key: str) -> Any:
        side = await self._side()
        try:
            payload = await aread(self._areader(side), "GET", key)
        except redis.RedisError as exc:
            if self._ignore_exc:
                return MISSING
            self._fail(exc)
        return MISSING if payload is None else payload

    @keeps_cancellation
    async def _aget_many(self, keys: list[str]) -> dict[str, Any]:
        if not keys:
            return {}  # MGET refuses no keys
        side = await self._side()
        try:
            payloads = await aread(self._areader(side), "MGET", *keys)
        except redis.RedisError as exc:
            if self._ignore_exc:
                return {}
            self._fail(exc)
        return found_payloads(keys, payloads)

    @keeps_cancellation
    async def _ahas_key(self, key: str) -> bool:
        side = await self._side()
        try:
            return bool(await self._areader(side).exists(key))
        except redis.RedisError as exc:
            if self._ignore_exc:
                return False
            self._fail(exc)

    @keeps_cancellation
    async def _aset(self, key: str, payload: Any, timeout: float | None) -> None:
        side = await self._side()
        px = milliseconds(timeout)
        try:
            await send_set(side.primary, key, payload, px)
        except redis.RedisError as exc:
            self._fail(exc)

    @keeps_cancellation
    async def _aset_many(self, items: dict[str, Any], timeout: float | None) -> list[str]:
        side = await self._side()
        px = milliseconds(timeout)
        try:
            async with side.primary.pipeline(transaction=False) as pipe:
                queue_sets(pipe, items, px)
                replies = await pipe.execute(raise_on_error=False)
            failed = refused_keys(items, px, replies)
            if failed:
                await side.primary.delete(*failed)
                self._log_refusal(replies)
        except redis.RedisError as exc:
            self._fail(exc)
        return failed

    @keeps_cancellation
    async def _aadd(self, key: str, payload: Any, timeout: float | None) -> bool:
        side = await self._side()
        px = milliseconds(timeout)
        try:
            return bool(await send_set(side.primary, key, payload, px, "NX"))
        except redis.RedisError as exc:
            self._fail(exc)

    @keeps_cancellation
    async def _atouch(self, key: str, timeout: float | None) -> bool:
        side = await self._side()
        try:
            px = milliseconds(timeout)
            if px is None:
                return bool(await arun_script(side.primary, side.persist, [key], []))
            return bool(await side.primary.pexpire(key, px))
        except redis.RedisError as exc:
            self._fail(exc)

    @keeps_cancellation
    async def _adelete(self, key: str) -> bool:
        side = await self._side()
        try:
            return bool(await side.primary.delete(key))
        except redis.RedisError as exc:
            self._fail(exc)

    @keeps_cancellation
    async def _adelete_many(self, keys: list[str]) -> None:
        side = await self._side()
        try:
            await side.primary.delete(*keys)
        except redis.RedisError as exc:
            self._fail(exc)

    @keeps_cancellation
    async def _aclear(self) -> None:
        side = await self._side()
        try:
            await side.primary.flushdb()
        except redis.RedisError as exc:
            self._fail(exc)

    @keeps_cancellation
    async def _aincr(self, key: str, delta: int | float) -> Any:
        side = await self._side()
        try:
            if self._raw_ints and type(delta) is int and INT64_MIN <= delta <= INT64_MAX:
                reply = await arun_script(side.primary, side.incr, [key], [delta])
                if reply is None:
                    return MISSING
                if not isinstance(reply, list):
                    return int(reply)
            return await self._aincr_in_python(side, key, delta)
        except redis.RedisError as exc:
            self._fail(exc)

    async def _aincr_in_python(self, side: AsyncSide, key: str, delta: int | float) -> Any:
        async with side.primary.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(key)
                    payload = await pipe.get(key)
                    if payload is None:
                        return MISSING
                    value = self._decode(payload) + delta
                    pipe.multi()  # type: ignore[no-untyped-call]  # unannotated in redis-py
                    pipe.set(key, self._encode(value), keepttl=True)
                    await pipe.execute()
                    return value
                except WatchError:
                    continue

    @keeps_cancellation
    async def _aadd_or_get(self, key: str, payload: Any, timeout: float | None) -> Any:
        px = milliseconds(timeout) or ""
        side = await self._side()
        try:
            current = await arun_script(side.primary, side.get_or_add, [key], [payload, px])
        except redis.RedisError as exc:
            self._fail(exc)
        return MISSING if current is None else current

    async def aclose(self, **kwargs: Any) -> None:
        """Close the sync pools and this event loop's pools."""
        self.close(**kwargs)
        ident = (os.getpid(), asyncio.get_running_loop())
        side = self._async_sides.get(ident)
        if side is not None:
            for client in (side.primary, *side.replicas):
                await client.connection_pool.disconnect()
