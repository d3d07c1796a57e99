"""The Redis Sentinel backend (``BACKEND: "redis-sentinel"``), on redis-py's Sentinel clients.

``LOCATION`` names the sentinels (``redis://host:26379``, one or several) and
``OPTIONS["SERVICE_NAME"]`` the primary they watch (``sentinel monitor <name> ...``).
The primary's address is asked of the sentinels when a connection opens, so a
failover needs no restart: connections to the old primary fail (a
``BackendUnavailable``: decorated calls fail open for the failover's few
seconds), are dropped, and the next ones go where the sentinels point.

Plain reads follow today's ``READ_FROM_REPLICAS`` rule, default ``True`` here
too: ``get``, ``get_many``, ``has_key`` (and the reads of ``@cached``) go to a
replica the sentinels name, falling back to the primary when none is up.
Counter bumps wait for one replica (``WAIT 1``) whenever the sentinels know of
one (``memokit.backends._rediswait``).

Everything else is :class:`~memokit.backends.redis.RedisCache`: the same
commands, scripts, errors and fork handling.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping
from typing import Any, ClassVar

import redis
import redis.asyncio
import redis.asyncio.sentinel
import redis.sentinel

from ..exceptions import ImproperlyConfigured
from ._deadline import with_deadlines
from ._redisconf import GET_OR_ADD_SCRIPT, INCR_SCRIPT, OWNED, PERSIST_SCRIPT
from ._rediswait import ARun, Run, apipeline_runner, pipeline_runner
from ._remote import split_options
from .redis import RedisCache, _AsyncSide, _disconnect_at_shutdown

_OWNED: frozenset[str] = OWNED | {"SERVICE_NAME"}
# redis-py leaves these unannotated.
_SENTINEL: Any = redis.sentinel.Sentinel
_ASYNC_SENTINEL: Any = redis.asyncio.sentinel.Sentinel
_REPLICAS_FOR = 5.0
"""Seconds the number of replicas the sentinels reported is trusted before asking again."""


def _address(url: str) -> tuple[str, int]:
    scheme = url.partition("://")[0].lower()
    if scheme != "redis":
        raise ImproperlyConfigured(
            f"LOCATION of the Redis Sentinel backend names sentinels as redis://host:port, "
            f"not {scheme}://"
        )
    parsed = redis.connection.parse_url(url)  # type: ignore[no-untyped-call]  # unannotated
    return parsed.get("host", "127.0.0.1"), int(parsed.get("port", 26379))


class RedisSentinelCache(RedisCache):
    """A cache on the primary (and replicas) a set of Redis Sentinels watches."""

    option_names: ClassVar[frozenset[str]] = _OWNED

    def __init__(
        self, location: str | list[str] = "redis://127.0.0.1:26379", *, service_name: Any = None,
        **kwargs: Any,
    ) -> None:  # fmt: skip
        if not isinstance(service_name, str) or not service_name:
            raise ImproperlyConfigured(
                f"OPTIONS['SERVICE_NAME'] must name the primary the sentinels watch (the "
                f"<name> of 'sentinel monitor <name> ...'), for example 'mymaster', "
                f"not {service_name!r}"
            )
        self._service = service_name
        self._replica_count: tuple[float, int] = (0.0, 0)
        super().__init__(location, **kwargs)

    @classmethod
    def options_to_kwargs(cls, options: Mapping[str, Any]) -> dict[str, Any]:
        """memokit's own OPTIONS (``SERVICE_NAME`` too) become arguments; the rest go
        to redis-py's connections to the primary and replicas."""
        own, client = split_options(cls.__name__, options, _OWNED)
        own["client_options"] = client
        return own

    def _sentinel_kwargs(self) -> dict[str, Any]:
        # The sentinels are asked with the same finite timeouts as the servers.
        return {k: v for k, v in self._client_options.items() if k.startswith("socket_")}

    def _use_pools(self, pools: list[redis.ConnectionPool]) -> None:
        # The pools were built to check the OPTIONS (no I/O); the sentinels'
        # pools ask them for the primary's address at each new connection.
        manager = _SENTINEL(
            [_address(url) for url in self._servers],
            sentinel_kwargs=self._sentinel_kwargs(),
            **self._client_options,
        )
        self._manager = manager
        deadlines = with_deadlines(redis.sentinel.SentinelManagedConnection)
        self._primary = manager.master_for(self._service, connection_class=deadlines)
        self._replicas = (
            [manager.slave_for(self._service, connection_class=deadlines)]
            if self._read_from_replicas
            else []
        )
        self._incr_script = self._primary.register_script(INCR_SCRIPT)
        self._get_or_add_script = self._primary.register_script(GET_OR_ADD_SCRIPT)
        self._persist_script = self._primary.register_script(PERSIST_SCRIPT)

    # -- counter bumps: WAIT 1 while the sentinels know of a replica -----------------

    def _replicas_known(self, found: list[Any] | None) -> int:
        if found is not None:
            self._replica_count = (time.monotonic() + _REPLICAS_FOR, len(found))
        return 1 if self._replica_count[1] else 0

    def _counter_target(self, key: str) -> tuple[Run, str, int]:
        found = None
        if time.monotonic() >= self._replica_count[0]:
            try:
                found = self._manager.discover_slaves(self._service)
            except redis.RedisError as exc:
                self._fail(exc)
        return pipeline_runner(self._primary), key, self._replicas_known(found)

    async def _acounter_target(self, key: str) -> tuple[ARun, str, int]:
        side = await self._side()
        found = None
        if time.monotonic() >= self._replica_count[0]:
            try:
                found = await side.manager.discover_slaves(self._service)  # type: ignore[attr-defined]
            except redis.RedisError as exc:
                self._fail(exc)
        return apipeline_runner(side.primary), key, self._replicas_known(found)

    # -- async: one Sentinel client per event loop ---------------------------------

    async def _side(self) -> _AsyncSide:
        loop = asyncio.get_running_loop()
        ident = (os.getpid(), loop)
        side = self._async_sides.get(ident)
        if side is not None:
            return side
        manager = _ASYNC_SENTINEL(
            [_address(url) for url in self._servers],
            sentinel_kwargs=self._sentinel_kwargs(),
            **self._client_options,
        )
        primary = manager.master_for(self._service)
        replicas = [manager.slave_for(self._service)] if self._read_from_replicas else []
        guard = _disconnect_at_shutdown([primary, *replicas, *manager.sentinels])
        await guard.__anext__()
        side = _AsyncSide(
            primary=primary,
            replicas=replicas,
            incr=primary.register_script(INCR_SCRIPT),
            get_or_add=primary.register_script(GET_OR_ADD_SCRIPT),
            persist=primary.register_script(PERSIST_SCRIPT),
            guard=guard,
        )
        side.manager = manager  # type: ignore[attr-defined]  # for discover_slaves
        with self._async_lock:
            for old in [i for i in self._async_sides if i[1].is_closed() or i[0] != ident[0]]:
                del self._async_sides[old]
            self._async_sides[ident] = side
        return side

    def close(self, **kwargs: Any) -> None:
        """Close the pooled connections (sentinels too); the next call opens new ones."""
        super().close(**kwargs)
        for sentinel in self._manager.sentinels:
            sentinel.connection_pool.disconnect()
