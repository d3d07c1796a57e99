"""Counter bumps that a failover cannot undo: the bump, then ``WAIT 1``, on one connection.

Redis replicates asynchronously: a counter bump acknowledged by a primary that
dies at once may never reach a replica, and the replica promoted in its place
would make old entries valid again. So where the deployment has replicas, a
bump is followed by ``WAIT 1 <ms>`` in the same pipeline (one round trip, one
connection: ``WAIT`` covers the writes of its own connection), and a bump that
no replica acknowledged in time raises :class:`~memokit.BackendUnavailable`:
the invalidation did happen on the primary, but it is not safe yet, and the
caller (an explicit invalidation never fails open) hears of it.

A single server without replicas (``LOCATION`` names one URL) bumps as before,
with no ``WAIT``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final

import redis

from ..exceptions import BackendUnavailable
from ..framing import INT64_MAX, INT64_MIN
from ._redisconf import INCR_SCRIPT
from .base import MISSING

WAIT_CAP: Final = 1.0
"""Longest ``WAIT`` in seconds; at most half the socket timeout, so WAIT answers first."""

_MARKER: Final = "~replicated"
"""Appended to a counter's key for the write that follows a bump made in Python."""


def wait_ms(client_options: dict[str, Any]) -> int:
    """The ``WAIT`` timeout in milliseconds for a client with these options."""
    socket_timeout = float(client_options.get("socket_timeout") or 2.0)
    return max(1, int(min(WAIT_CAP, socket_timeout / 2) * 1000))


def _bump(key: str, delta: int, replicas: int, ms: int) -> list[tuple[Any, ...]]:
    return [("EVAL", INCR_SCRIPT, 1, key, delta), ("WAIT", replicas, ms)]


def _marker(key: str, replicas: int, ms: int) -> list[tuple[Any, ...]]:
    # Replication is one ordered stream: a replica that has this write has the
    # bump made before it on another connection.
    return [("SET", key + _MARKER, b"1", "PX", 60_000), ("WAIT", replicas, ms)]


Run = Callable[[list[tuple[Any, ...]]], list[Any]]
"""Sends commands in one pipeline on one connection; returns their replies (errors as values)."""
ARun = Callable[[list[tuple[Any, ...]]], Awaitable[list[Any]]]


def pipeline_runner(client: Any) -> Run:
    """A :data:`Run` over a ``redis.Redis`` client's pipeline (one connection)."""

    def run(commands: list[tuple[Any, ...]]) -> list[Any]:
        with client.pipeline(transaction=False) as pipe:
            for command in commands:
                pipe.execute_command(*command)
            return list(pipe.execute(raise_on_error=False))

    return run


def apipeline_runner(client: Any) -> ARun:
    """The async twin of :func:`pipeline_runner`."""

    async def run(commands: list[tuple[Any, ...]]) -> list[Any]:
        async with client.pipeline(transaction=False) as pipe:
            for command in commands:
                pipe.execute_command(*command)
            return list(await pipe.execute(raise_on_error=False))

    return run


class WaitedCounters:
    """The Redis backends' ``_incr_counter``: bump, then wait for one replica.

    The class using it provides ``_counter_target(key)`` (and its async twin)
    returning ``(run, key on the wire, replicas)``: a :data:`Run` on the node
    that owns ``key`` and how many replicas to wait for (0: no ``WAIT``).
    """

    def _counter_target(self, key: str) -> tuple[Run, str, int]:
        cache: Any = self
        return pipeline_runner(cache._primary), key, 1 if cache._replicas else 0

    async def _acounter_target(self, key: str) -> tuple[ARun, str, int]:
        cache: Any = self
        side = await cache._side()
        return apipeline_runner(side.primary), key, 1 if side.replicas else 0

    def _incr_counter(self, key: str, delta: int) -> Any:
        cache: Any = self
        run, wire, replicas = self._counter_target(key)
        if not replicas:
            return cache._incr(key, delta)
        ms = wait_ms(cache._client_options)
        try:
            if cache._raw_ints and INT64_MIN <= delta <= INT64_MAX:
                result = self._settle(run(_bump(wire, delta, replicas, ms)), replicas, ms)
                if result is not None:
                    return result
            result = cache._incr(key, delta)  # not a raw int: read, add, write in Python
            if result is not MISSING:
                self._settle([1, *run(_marker(wire, replicas, ms))[1:]], replicas, ms)
            return result
        except redis.RedisError as exc:
            cache._fail(exc)

    async def _aincr_counter(self, key: str, delta: int) -> Any:
        cache: Any = self
        run, wire, replicas = await self._acounter_target(key)
        if not replicas:
            return await cache._aincr(key, delta)
        ms = wait_ms(cache._client_options)
        try:
            if cache._raw_ints and INT64_MIN <= delta <= INT64_MAX:
                result = self._settle(await run(_bump(wire, delta, replicas, ms)), replicas, ms)
                if result is not None:
                    return result
            result = await cache._aincr(key, delta)
            if result is not MISSING:
                self._settle([1, *(await run(_marker(wire, replicas, ms)))[1:]], replicas, ms)
            return result
        except redis.RedisError as exc:
            cache._fail(exc)

    def _settle(self, replies: list[Any], replicas: int, ms: int) -> Any:
        """The bump's result from ``[incr reply, WAIT reply]``; None: bump it in Python."""
        reply, acknowledged = replies
        if isinstance(reply, Exception):
            raise reply
        if reply is None:
            return MISSING  # nothing was written: nothing to wait for
        if isinstance(reply, list):
            return None  # INCRBY refused the value: not a raw int
        if isinstance(acknowledged, Exception):
            raise acknowledged
        if int(acknowledged) < replicas:
            cache: Any = self
            raise BackendUnavailable(
                f"Redis {cache._display}: no replica acknowledged the invalidation within "
                f"{ms} ms (WAIT {replicas}); it is made on the primary, but a failover now "
                f"could undo it. Invalidate again once the replicas are back"
            )
        return int(reply)
